#!/usr/bin/env python3
"""Pod start: containerd pulling and unpacking a Spark image (issue 17, item 3).

    sudo python bench/podstart.py [--store DIR] [--images spark-4.1.1 spark-4.1.1-gpu]
                                  [--split-mb 512] [--runs 1]

What kubelet waits for before a Spark pod runs: containerd (the machine's `ctr` 1.6,
a private containerd started for each run, so nothing is cached) fetching the image
from a docker-registry on 127.0.0.1 and unpacking it into the overlayfs snapshotter.
Both parts are timed apart: `ctr content fetch` (download, verify, store), then
`ctr images pull` of the same reference, which finds every blob present and only
unpacks (decompress + write the files into snapshots, layer after layer).

Variants of each image, all with the same files:
  gzip        the image as the store holds it (ociforge's default compression);
  zstd        every layer re-encoded with ociforge's zstd encoder (what
              `assemble --compression zstd` writes);
  *-split     every layer whose tar exceeds --split-mb cut into consecutive parts of
              at most that size (whole files; each part repeats the directories
              above its files), in gzip and in zstd — only for images that have such
              a layer.
The variants are made here, from the store's layers, into a hard-linked copy of the
store (the original is not written to), and pushed with `ociforge push`. Needs root
(containerd), docker-registry, ctr. Writes bench/results/podstart.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_doc
from push import Registry, ociforge
from push_spark import default_store
from repush_sbom import bench_lock, linked_copy

from ociforge.checks.containerd import Containerd, can_run_containers
from ociforge.compression import LayerEncoder
from ociforge.digests import canonical_json
from ociforge.image import StoredImage, StoredLayer
from ociforge.oci import MT_CONFIG, MT_MANIFEST, Descriptor
from ociforge.store import Store

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


# -- variants -----------------------------------------------------------------------------

def _reencode(store: Store, layer: StoredLayer, compression: str) -> tuple[Descriptor, str]:
    encoder = LayerEncoder(store, [compression])
    with layer.uncompressed() as tar:
        while chunk := tar.read(4 * MiB):
            encoder.write(chunk)
    done = encoder.finish()
    return done.blobs[compression].descriptor, done.diff_id


def _split(store: Store, layer: StoredLayer, compression: str, max_bytes: int
           ) -> list[tuple[Descriptor, str]]:
    """The layer's members in order, in parts of at most `max_bytes` of tar (a bigger
    file gets a part of its own); each part repeats the directories above its files."""
    parts: list[tuple[Descriptor, str]] = []
    dirs: dict[str, tarfile.TarInfo] = {}
    state: dict[str, Any] = {}

    def close() -> None:
        if state:
            state["tar"].close()
            done = state["encoder"].finish()
            parts.append((done.blobs[compression].descriptor, done.diff_id))
            state.clear()

    with layer.uncompressed() as src, tarfile.open(fileobj=src, mode="r|") as tin:
        for member in tin:
            cost = 512 + member.size + 1024
            if state and state["bytes"] + cost > max_bytes:
                close()
            if not state:
                encoder = LayerEncoder(store, [compression])
                out = tarfile.open(fileobj=encoder, mode="w|",  # noqa: SIM115 (closed in close())
                                   format=tarfile.PAX_FORMAT)
                state.update(encoder=encoder, bytes=0, dirs=set(), tar=out)
            name = member.name.rstrip("/")
            for parent in reversed(PurePosixPath(name).parents[:-1]):
                p = str(parent)
                if p in dirs and p not in state["dirs"]:
                    state["tar"].addfile(dirs[p])
                    state["dirs"].add(p)
            if member.isdir():
                dirs[name] = member
                state["dirs"].add(name)
            state["tar"].addfile(member, tin.extractfile(member) if member.isreg() else None)
            state["bytes"] += cost
        close()
    return parts


def make_variant(store: Store, img: StoredImage, compression: str, split_bytes: int | None,
                 tag: str) -> dict[str, Any]:
    """Store image `tag`: `img` with its layers re-encoded/split; returns its shape."""
    layers: list[tuple[Descriptor, str]] = []
    history: list[Any] = []
    config = img.config
    old_history = [h for h in config.get("history", []) if not h.get("empty_layer")]
    for i, layer in enumerate(img.layers):
        record_size = layer.record.size if layer.record else layer.descriptor.size
        if split_bytes and record_size > split_bytes:
            new = _split(store, layer, compression, split_bytes)
        elif layer.compression == compression:
            new = [(layer.descriptor, layer.diff_id)]
        else:
            new = [_reencode(store, layer, compression)]
        layers += new
        if i < len(old_history):
            history += [old_history[i]] * len(new)
    config["rootfs"] = {"type": "layers", "diff_ids": [d for _, d in layers]}
    if history:
        config["history"] = history
    config_bytes = canonical_json(config)
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
                "config": Descriptor(MT_CONFIG, store.put_bytes(config_bytes),
                                     len(config_bytes)).to_json(),
                "layers": [d.to_json() for d, _ in layers]}
    data = canonical_json(manifest)
    store.tag(tag, Descriptor(MT_MANIFEST, store.put_bytes(data), len(data)))
    return {"tag": tag, "layers": len(layers), "blob_bytes": sum(d.size for d, _ in layers),
            "largest_layer_bytes": max(d.size for d, _ in layers),
            "digests": [d.digest for d, _ in layers]}


# -- timing -------------------------------------------------------------------------------

def _ctr_timed(ctrd: Containerd, *args: str) -> float:
    start = time.monotonic()
    p = ctrd.ctr(*args, timeout=1800)
    wall = time.monotonic() - start
    if p.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args[:2])} failed: {p.stderr.strip()[-800:]}")
    return wall


def pod_start(work: Path, ref: str) -> dict[str, float]:
    ctrd = Containerd(work / "containerd").start()
    try:
        subprocess.run(["sync"], check=True)
        fetch = _ctr_timed(ctrd, "content", "fetch", "--plain-http", ref)
        unpack = _ctr_timed(ctrd, "images", "pull", "--plain-http", ref)
        return {"fetch_s": round(fetch, 2), "unpack_s": round(unpack, 2),
                "total_s": round(fetch + unpack, 2)}
    finally:
        ctrd.stop()


def measure(store_dir: Path, images: list[str], variants: list[str], split_mb: int,
            runs: int) -> dict[str, Any]:
    why = can_run_containers()
    if why or shutil.which("docker-registry") is None:
        sys.exit(f"cannot run: {why or 'docker-registry is not installed'}")
    work = Path(tempfile.mkdtemp(prefix="ocf-bench-podstart-"))
    split = split_mb * MiB
    results: list[dict[str, Any]] = []
    try:
        linked_copy(store_dir, work / "store")
        store = Store(work / "store")
        reg = Registry(work / "registry")
        try:
            for name in images:
                img = store.image(name)
                big = any((lay.record.size if lay.record else 0) > split for lay in img.layers)
                for variant in variants:
                    if variant.endswith("-split") and not big:
                        continue
                    # Made and pushed under the lock too: it keeps both cores busy.
                    with bench_lock():
                        results.append(_variant(work, store, reg.host, img, variant, split,
                                                runs))
        finally:
            reg.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ctr = subprocess.run(["ctr", "--version"], capture_output=True, text=True).stdout.strip()
    return {"benchmark": "podstart", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(), "ctr": ctr, "split_mb": split_mb, "runs": runs,
            "unpigz": shutil.which("unpigz") is not None, "results": results}


def _variant(work: Path, store: Store, host: str, img: StoredImage, variant: str,
             split: int, runs: int) -> dict[str, Any]:
    compression = variant.removesuffix("-split")
    tag = f"{img.name}-{variant}"
    t0 = time.monotonic()
    shape = make_variant(store, img, compression, split if variant.endswith("-split") else None,
                         tag)
    subprocess.run(ociforge(work / "store", "-q", "push", tag, "--to",
                            f"{host}/podstart:{tag}", "--no-sbom"), check=True)
    # The registry has them now: the variant's own blobs leave the store copy (disk).
    for digest in set(shape.pop("digests")) - {lay.descriptor.digest for lay in img.layers}:
        store.blob_path(digest).unlink(missing_ok=True)
    print(f"{tag}: {shape['layers']} layers, {shape['blob_bytes'] / 1e6:.0f} MB (made and "
          f"pushed in {time.monotonic() - t0:.0f} s)", flush=True)
    out = []
    for _ in range(runs):
        load = os.getloadavg()
        r = pod_start(work, f"{host}/podstart:{tag}")
        out.append({**r, "load_1_5_15": load})
        print(f"  fetch {r['fetch_s']:.1f} s  unpack {r['unpack_s']:.1f} s  (load {load[0]:.2f})",
              flush=True)
    return {"image": img.name, "variant": variant, **shape,
            **{k: statistics.median(r[k] for r in out) for k in ("fetch_s", "unpack_s",
                                                                  "total_s")},
            "runs": out}


def markdown(doc: dict[str, Any]) -> str:
    """The docs/benchmarks.md table, from results/podstart.json."""
    loads = [r["load_1_5_15"][0] for v in doc["results"] for r in v["runs"]]
    base = {v["image"]: v["total_s"] for v in doc["results"] if v["variant"] == "gzip"}
    lines = [f"`python bench/podstart.py` ({doc['date']}, {doc['ctr']}, {doc['cpus']} CPUs, "
             f"load {min(loads):.2f}–{max(loads):.2f}; split at {doc['split_mb']} MiB of tar; "
             f"median of {doc['runs']}; unpigz {'present' if doc['unpigz'] else 'absent'}).",
             "", "| image | layers | blobs | fetch | unpack | pull + unpack | vs gzip |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for v in doc["results"]:
        ratio = v["total_s"] / base[v["image"]] if v["image"] in base else None
        lines.append(f"| {v['image']} | {v['variant']} ({v['layers']}) "
                     f"| {v['blob_bytes'] / 1e6:.0f} MB | {v['fetch_s']:.1f} s "
                     f"| {v['unpack_s']:.1f} s | {v['total_s']:.1f} s "
                     f"| {'–' if ratio is None else f'{ratio:.2f}'} |")
    return "\n".join(lines) + "\n"


def write(doc: dict[str, Any]) -> None:
    write_doc("podstart", doc, markdown)


def suite(ns: Any) -> None:
    """`python bench/run.py podstart` (SUITES): one run of each variant."""
    write(measure(default_store(), ["spark-4.1.1", "spark-4.1.1-gpu"],
                  ["gzip", "zstd", "gzip-split", "zstd-split"], 512, 1))


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # so that every `finally` stops containerd and the registry


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=default_store())
    ap.add_argument("--images", nargs="+", default=["spark-4.1.1", "spark-4.1.1-gpu"])
    ap.add_argument("--split-mb", type=int, default=512)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--variants", default="gzip,zstd,gzip-split,zstd-split")
    args = ap.parse_args()
    write(measure(args.store, args.images, args.variants.split(","), args.split_mb, args.runs))


if __name__ == "__main__":
    main()
