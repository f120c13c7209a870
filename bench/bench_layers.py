"""Benchmarks 1 and 2: build one layer from the Spark tree, ociforge vs tar | pigz / zstd.

ociforge does more per byte than the competitor pipelines: it hashes the tar stream
(diff_id) and the compressed blob (digest), and fsyncs the blob before renaming it
into the store. The pipelines compute no digest and do not fsync.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from pathlib import Path

from common import (
    TAR_CMD,
    Contender,
    Row,
    mb,
    print_table,
    race,
    reset_path,
    run,
    sh,
    spark_tree,
    tree_stats,
    warm_cache,
    workdir,
    write_results,
)
from project import files_layer, ociforge, parse_json, write_project

from ociforge.compression import ZSTD_LEVEL, LayerEncoder
from ociforge.store import Store
from ociforge.tartree import Tree, write_tar

COMPETITORS = {
    "gzip": {"tar | pigz -1": "pigz -1"},
    "zstd": {"tar | zstd -1 -T0": "zstd -q -1 -T0", "tar | zstd -3 -T0": "zstd -q -3 -T0"},
}
COMPETITORS["zstd"].setdefault(f"tar | zstd -{ZSTD_LEVEL} -T0", f"zstd -q -{ZSTD_LEVEL} -T0")
# zstd: at the level ociforge uses (issue 17: ≤ 1.3× `tar | zstd -T0` at equal level).
TARGETS = {"gzip": ("tar | pigz -1", 0.5), "zstd": (f"tar | zstd -{ZSTD_LEVEL} -T0", 1.3)}


def build_layer(src: Path, store_dir: Path, encoding: str) -> int:
    """The library path the layer builder takes; returns the blob's size."""
    store = Store(store_dir)
    tree = Tree()
    tree.add_from_disk(src, "opt/spark")
    encoder = LayerEncoder(store, [encoding])
    write_tar(tree, encoder, 0)  # type: ignore[arg-type]
    return encoder.finish().blobs[encoding].size


def library_contender(src: Path, work: Path, encoding: str, sizes: dict[str, int]) -> Contender:
    store = work / "lib-store"
    name = f"library {encoding}"

    def action() -> None:
        sizes[name] = build_layer(src, store, encoding)

    return Contender(name, action, lambda: reset_path(store))


def cli_contender(src: Path, work: Path, encoding: str, sizes: dict[str, int]) -> Contender:
    store = work / "cli-store"
    project = write_project(work / "project", {"tree": files_layer(src, "/opt/spark")},
                            {"tree": {"layers": ["tree"], "compression": encoding}})
    argv = ociforge(store, project, "--json", "assemble", "tree")
    name = f"CLI assemble {encoding}"

    def action() -> None:
        sizes[name] = parse_json(run(argv).stdout)["images"][0]["size"]

    return Contender(name, action, lambda: reset_path(store))


def pipeline_contender(src: Path, work: Path, name: str, compressor: str,
                       sizes: dict[str, int]) -> Contender:
    out = work / "out.tar.x"
    cmd = f"{TAR_CMD.format(src=src)} | {compressor} > {out}"

    def action() -> None:
        sh(cmd)
        sizes[name] = out.stat().st_size

    return Contender(name, action, lambda: reset_path(out))


def rows_for(encoding: str, lib: Contender, cli: Contender, rivals: list[Contender],
             input_bytes: int) -> list[Row]:
    target_name, target = TARGETS[encoding]
    rows = []
    for rival in rivals:
        t = target if rival.name == target_name else None
        ours = [lib, cli] if rival.name == target_name else [lib]
        rows += [Row(f"layer {encoding}", c.name, c.median, rival.name, rival.median, target=t,
                     mb_per_s=mb(input_bytes) / c.median,
                     competitor_mb_per_s=mb(input_bytes) / rival.median,
                     note="" if c is lib else "process: start, key hashing, build, manifest")
                 for c in ours]
    return rows


def profile_build(src: Path, encoding: str, lines: int = 14) -> list[str]:
    """cProfile of one library build, by internal time (main thread only)."""
    with workdir("profile") as work:
        prof = cProfile.Profile()
        prof.runcall(build_layer, src, work / "store", encoding)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(lines)
    text = buf.getvalue().splitlines()
    start = next(i for i, line in enumerate(text) if "function calls" in line)
    return [line for line in text[start:] if line.strip() and "List reduced" not in line]


def bench_layer(encoding: str, runs: int) -> list[Row]:
    src = spark_tree()
    stats = tree_stats(src)
    warm_cache(src)
    sizes: dict[str, int] = {}
    with workdir(f"layer-{encoding}") as work:
        lib = library_contender(src, work, encoding, sizes)
        cli = cli_contender(src, work, encoding, sizes)
        rivals = [pipeline_contender(src, work, n, c, sizes)
                  for n, c in COMPETITORS[encoding].items()]
        contenders = [lib, cli, *rivals]
        race(contenders, runs)
    rows = rows_for(encoding, lib, cli, rivals, stats.bytes)
    title = f"layer build, {encoding} ({stats.files} files, {mb(stats.bytes):.0f} MB input)"
    print_table(title, rows)
    profile = [] if all(r.met is not False for r in rows) else profile_build(src, encoding)
    if profile:
        print(f"\ncProfile of one library {encoding} build (target missed):")
        print("\n".join(profile))
    write_results(f"layer-{encoding}", title, rows, contenders, {
        "cprofile": profile,
        "input": {"path": str(src), "files": stats.files, "bytes": stats.bytes},
        "output_bytes": sizes,
        "ociforge_zstd_level": ZSTD_LEVEL,
    })
    return rows
