"""Throwaway ociforge projects (layers/*.yaml + recipes/*.yaml) and CLI argument lists."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import yaml
from common import OCIFORGE

LayerSpec = dict[str, Any]


def files_layer(src: Path, dest: str) -> LayerSpec:
    return {"source": {"kind": "files", "files": [{"src": str(src), "dest": dest}]}}


def archive_layer(path: Path, sha256: str, dest: str) -> LayerSpec:
    return {"source": {"kind": "archive", "url": str(path), "sha256": sha256,
                       "paths": [{"from": path.name.removesuffix(".tar.gz"), "to": dest}]}}


def write_project(root: Path, layers: dict[str, LayerSpec],
                  images: dict[str, dict[str, Any]]) -> Path:
    (root / "layers").mkdir(parents=True, exist_ok=True)
    (root / "recipes").mkdir(parents=True, exist_ok=True)
    for name, spec in layers.items():
        source = dict(spec["source"])
        if source["kind"] == "files":
            source["files"] = [{**item, "src": _bring(root, item["src"], f"{name}-{i}")}
                               for i, item in enumerate(source["files"])]
        elif source["kind"] == "archive":
            source["url"] = _bring(root, source["url"], f"{name}-{Path(source['url']).name}")
        (root / "layers" / f"{name}.yaml").write_text(yaml.safe_dump({**spec,
                                                                      "source": source}))
    (root / "recipes" / "bench.yaml").write_text(yaml.safe_dump({"images": images}))
    return root


def _bring(root: Path, src: str, name: str) -> str:
    """`src` as a path inside the project (ociforge reads nothing outside it): hard
    links under `data/` (the same inodes, so the same bytes, modes and mtimes), or a
    copy where the data is on another filesystem."""
    path = Path(src)
    if path.is_relative_to(root):
        return str(path.relative_to(root))
    dest = root / "data" / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        shutil.copytree(path, dest, copy_function=_link_or_copy, symlinks=True)
    else:
        _link_or_copy(str(path), str(dest))
    return str(dest.relative_to(root))


def _link_or_copy(src: str, dest: str) -> None:
    try:
        os.link(src, dest)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM):
            raise
        shutil.copy2(src, dest)


def ociforge(store: Path, project: Path, *args: str) -> list[str]:
    return [OCIFORGE, "--store", str(store), "--project", str(project), *args]


def parse_json(stdout: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(stdout)
    return data


def random_files(root: Path, count: int, size: int, seed: int) -> Path:
    """`count` files of `size` incompressible bytes, deterministic for a seed."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / f"random-{i:05d}.bin").write_bytes(rng.randbytes(size))
    return root


_WORDS = [
    "spark", "executor", "driver", "shuffle", "partition", "stage", "task", "broadcast",
    "accumulator", "dataframe", "catalyst", "tungsten", "kubernetes", "pod", "volume", "image",
    "layer", "manifest", "digest", "config", "scheduler", "worker", "memory", "offheap",
    "cores", "jar", "classpath", "log4j", "hadoop", "yarn", "parquet", "orc", "avro", "delta",
    "iceberg", "s3a", "gcs", "abfs", "metrics", "prometheus",
]


def text_files(root: Path, count: int, size: int, seed: int) -> Path:
    """`count` files of `size` bytes of log-like text (compresses roughly 4:1)."""
    rng = random.Random(seed)
    base = " ".join(rng.choice(_WORDS) + str(rng.randrange(1000)) for _ in range(600_000))
    block = base.encode() * (2 + size // len(base))
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        start = rng.randrange(len(base))
        (root / f"text-{i:05d}.log").write_bytes(block[start:start + size])
    return root
