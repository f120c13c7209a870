"""Benchmark 5: peak RSS of a process building a 2 GiB layer.

The data (generated, deterministic): 1 GiB of random bytes in 16 files of 64 MiB and
1 GiB of log-like text in 8192 files of 128 KiB. Peak RSS comes from
`/usr/bin/time -f %M` (the kernel's ru_maxrss of the process and its waited-for
children). Each case runs once; the time is reported for information.
"""

from __future__ import annotations

import resource
import shlex
import sys
import time
from pathlib import Path

from bench_layers import build_layer
from common import (
    BENCH_DIR,
    TAR_CMD,
    Row,
    mb,
    print_table,
    reset_path,
    sh,
    tree_stats,
    warm_cache,
    workdir,
    write_results,
)
from project import files_layer, ociforge, random_files, text_files, write_project

TARGET_MB = 150.0
TIME = "/usr/bin/time"


def generate(root: Path) -> Path:
    random_files(root / "random", 16, 64 << 20, seed=2)
    text_files(root / "text", 8192, 128 << 10, seed=3)
    return root


def peak_rss(argv: list[str], log: Path) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one command."""
    t0 = time.perf_counter()
    sh(shlex.join([TIME, "-f", "%M", "-o", str(log), *argv]))
    elapsed = time.perf_counter() - t0
    return int(log.read_text().split()[-1]) * 1024 / 1e6, elapsed


def child_build(src: str, store: str, encoding: str) -> None:
    """Entry point of the measured child process (`run.py _build-layer`)."""
    build_layer(Path(src), Path(store), encoding)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    print(f"self-reported peak RSS {rss:.1f} MB", file=sys.stderr)


def _cases(data: Path, work: Path) -> dict[str, list[str]]:
    store = work / "store"
    project = write_project(work / "project", {"data": files_layer(data, "/data")},
                            {"data": {"layers": ["data"], "compression": "gzip"}})
    lib = [sys.executable, str(BENCH_DIR / "run.py"), "_build-layer", str(data), str(store)]
    pipeline = f"{TAR_CMD.format(src=data)} | zstd -q -3 -T0 > {work / 'out.zst'}"
    return {
        "library gzip": [*lib, "gzip"],
        "library zstd": [*lib, "zstd"],
        "CLI assemble gzip": ociforge(store, project, "-q", "assemble", "data"),
        "CLI assemble zstd": ociforge(store, project, "-q", "assemble", "data",
                                      "--compression", "zstd"),
        "tar | zstd -3 -T0": ["bash", "-o", "pipefail", "-c", pipeline],
    }


def bench_rss() -> list[Row]:
    with workdir("rss") as work:
        data = generate(work / "data")
        stats = tree_stats(data)
        warm_cache(data)
        rows = []
        for name, argv in _cases(data, work).items():
            rss, secs = peak_rss(argv, work / "time.log")
            reset_path(work / "store")
            reset_path(work / "out.zst")
            is_ours = not name.startswith("tar")
            print(f"  {name:<24} peak RSS {rss:7.1f} MB  {secs:6.2f} s", file=sys.stderr)
            rows.append(Row("peak RSS, 2 GiB layer", name, rss, None, None, unit="MB",
                            target=TARGET_MB if is_ours else None,
                            mb_per_s=mb(stats.bytes) / secs,
                            note=f"{secs:.1f} s" + ("" if is_ours else "; reference, max "
                                                    "of any one process of the pipeline")))
    title = f"peak RSS building a {stats.bytes / 2**30:.1f} GiB layer ({stats.files} files)"
    print_table(title, rows)
    write_results("rss", title, rows, [], {"input": {"files": stats.files,
                                                     "bytes": stats.bytes}})
    return rows
