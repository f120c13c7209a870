"""Benchmark 3: write a ~0.95 GB image as one archive, ociforge vs skopeo.

The image (`big`, gzip) has three `files` layers: the Spark jars directory, the
whole Spark tree and 32 MiB of random bytes. Its layers are built once, untimed;
then each contender writes the same image to a fresh file:

- `ociforge assemble big --archive OUT` (process: checks the layer cache, which for
  `files` layers re-hashes their source files, then writes the archive);
- `write_archive(store, store.images(["big"]), OUT)` (the export alone);
- `skopeo copy oci:L:latest docker-archive:OUT:big:latest` from an OCI layout that
  `ociforge assemble big --oci-layout L` wrote (hard links into the store).
  docker-archive stores layers uncompressed, so skopeo also gunzips every layer;
- `skopeo copy oci:L:latest oci-archive:OUT:latest`, the like-for-like format
  (compressed blobs copied as they are), for reference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common import (
    Contender,
    Row,
    mb,
    print_table,
    race,
    reset_path,
    run,
    sha256_file,
    spark_sdist,
    spark_tree,
    warm_cache,
    workdir,
    write_results,
)
from project import (
    archive_layer,
    files_layer,
    ociforge,
    parse_json,
    random_files,
    write_project,
)

from ociforge.outputs.archive import write_archive
from ociforge.store import Store

TARGET = 0.7
RANDOM_FILES, RANDOM_FILE_SIZE = 4, 8 << 20
ENTRYPOINT = "#!/bin/sh\nexec /opt/spark/bin/spark-submit \"$@\"\n"


@dataclass(frozen=True)
class Images:
    """A project with the `big` image (files layers) and the `spark` image (an
    archive layer pinned by sha256 plus a tiny files layer), all layers built."""

    work: Path
    store: Path
    project: Path
    layout: Path
    big_bytes: int  # the big image's blobs (layers + config + manifest)
    noise: Path


def _project(work: Path, tree: Path, noise: Path) -> Path:
    entry = work / "entrypoint"
    entry.mkdir()
    (entry / "entrypoint.sh").write_text(ENTRYPOINT)
    sdist = spark_sdist()
    layers = {
        "spark-jars": files_layer(tree / "deps" / "jars", "/opt/spark/jars"),
        "spark-tree": files_layer(tree, "/opt/spark"),
        "noise": files_layer(noise, "/opt/noise"),
        "spark-dist": archive_layer(sdist, sha256_file(sdist), "/opt/spark"),
        "entrypoint": files_layer(entry, "/opt/entrypoint"),
    }
    images = {
        "big": {"layers": ["spark-jars", "spark-tree", "noise"], "compression": "gzip"},
        "spark": {"layers": ["spark-dist", "entrypoint"], "compression": "gzip"},
    }
    return write_project(work / "project", layers, images)


def _image_bytes(store: Path, name: str) -> int:
    s = Store(store)
    img = s.image(name)
    return img.descriptor.size + sum(d.size for d in img.blobs())


@contextlib.contextmanager
def built_images() -> Iterator[Images]:
    """Build both images once (untimed), export `big` as an OCI layout for skopeo."""
    tree = spark_tree()
    with workdir("images") as work:
        noise = random_files(work / "noise", RANDOM_FILES, RANDOM_FILE_SIZE, seed=1)
        project = _project(work, tree, noise)
        store, layout = work / "store", work / "layout"
        run(ociforge(store, project, "-q", "assemble", "spark"))
        run(ociforge(store, project, "-q", "assemble", "big", "--oci-layout", str(layout)))
        yield Images(work, store, project, layout, _image_bytes(store, "big"), noise)


def _contenders(img: Images, out: Path) -> list[Contender]:
    def cli() -> None:
        report = parse_json(run(ociforge(img.store, img.project, "--json", "assemble", "big",
                                         "--archive", str(out))).stdout)
        assert not report["layers"]["built"], "layers should all be cached"

    def lib() -> None:
        store = Store(img.store)
        write_archive(store, store.images(["big"]), out)

    def skopeo(dest: str) -> None:
        run(["skopeo", "copy", f"oci:{img.layout}:latest", dest])

    reset = lambda: reset_path(out)  # noqa: E731
    return [
        Contender("write_archive()", lib, reset),
        Contender("CLI assemble --archive", cli, reset),
        Contender("skopeo docker-archive", lambda: skopeo(f"docker-archive:{out}:big:latest"),
                  reset),
        Contender("skopeo oci-archive", lambda: skopeo(f"oci-archive:{out}:latest"), reset),
    ]


def _rows(c: list[Contender], size: int) -> list[Row]:
    lib, cli, docker, oci = c

    def row(ours: Contender, rival: Contender, target: float | None, note: str) -> Row:
        return Row("archive export", ours.name, ours.median, rival.name, rival.median,
                   target=target, mb_per_s=mb(size) / ours.median,
                   competitor_mb_per_s=mb(size) / rival.median, note=note)

    return [
        row(lib, docker, TARGET, "skopeo gunzips layers for docker-archive"),
        row(cli, docker, TARGET, "process; re-hashes the files layers' sources for the key"),
        row(lib, oci, None, "like-for-like format, reference only"),
    ]


def bench_archive(img: Images, runs: int) -> list[Row]:
    warm_cache(img.layout / "blobs")
    warm_cache(spark_tree())
    out = img.work / "out.tar"
    contenders = _contenders(img, out)
    race(contenders, runs)
    rows = _rows(contenders, img.big_bytes)
    title = f"archive export of a {mb(img.big_bytes):.0f} MB image (3 gzip layers)"
    print_table(title, rows)
    write_results("archive", title, rows, contenders, {"image_bytes": img.big_bytes})
    return rows
