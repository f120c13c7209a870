#!/usr/bin/env python3
"""Re-push of an unchanged Spark image with its SBOM attached (issue 17, item 4).

    python bench/repush_sbom.py [--store DIR] [--image spark-4.1.1] [--runs 10]

The image is pushed once (untimed) to a docker-registry on 127.0.0.1, SBOM included;
then re-pushes are timed, wall time of the whole `ociforge push` process:
  - with the SBOM (the default), its document kept in the store by the first push;
  - with the SBOM, that kept document removed first (what every re-push cost before
    the store kept it, collect + render, with today's lighter imports);
  - `--no-sbom`;
  - with the SBOM, by ociforge as of git revision --baseline (default `main`; its
    package extracted with `git archive`), for a before/after in the same run.
The store is a hard-linked copy of DIR (the test cache's Spark store by default), so
the original is not written to. Writes bench/results/repush-sbom.json.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_doc
from push import Registry, ociforge, timed
from push_spark import default_store

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 0.4
LOCK = Path(os.environ.get("OCIFORGE_BENCH_LOCK", "/tmp/bench.lock"))


@contextlib.contextmanager
def bench_lock() -> Iterator[None]:
    """Held while timing (the `flock` lock of every bench), so two benchmarks never
    time at once on a shared machine."""
    with open(LOCK, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


def linked_copy(src: Path, dest: Path) -> None:
    """Blobs hard-linked (never written in place), metadata copied."""
    dest.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(src / "blobs"), str(dest / "blobs")], check=True)
    for name in ("index.json", "oci-layout"):
        shutil.copy2(src / name, dest / name)
    shutil.copytree(src / "ociforge", dest / "ociforge", symlinks=True,
                    ignore=shutil.ignore_patterns("tmp", "locks"))


def baseline_env(rev: str, dest: Path) -> dict[str, str]:
    """An environment whose `python -m ociforge.cli` is ociforge as of `rev`."""
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "ociforge"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return {**os.environ, "PYTHONPATH": str(dest)}


def measure(store_dir: Path, image: str, runs: int, baseline: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="ocf-bench-repush-"))
    load_before = os.getloadavg()
    try:
        store = work / "store"
        linked_copy(store_dir, store)
        old_env = baseline_env(baseline, work / "baseline")
        reg = Registry(work / "registry")
        try:
            push = ociforge(store, "-q", "push", image, "--to", f"{reg.host}/spark")
            first = subprocess.run([*push, "--json"], capture_output=True, text=True,
                                   check=True)
            attached = json.loads(first.stdout)["attached"][0]
            docs = store / "ociforge" / "sbom" / "documents"
            walls: dict[str, list[float]] = {"sbom": [], "sbom-regenerated": [],
                                             "no-sbom": [], "baseline-sbom": []}
            with bench_lock():
                load_before = os.getloadavg()
                for _ in range(runs):
                    for case in walls:
                        if case == "sbom-regenerated":
                            shutil.rmtree(docs, ignore_errors=True)
                        argv = [*push, "--no-sbom"] if case == "no-sbom" else push
                        if case == "baseline-sbom":  # -P: not ./ociforge of the cwd
                            argv, env = [argv[0], "-P", *argv[1:]], old_env
                        else:
                            env = None
                        walls[case].append(timed(argv, env)[0])
                load_after = os.getloadavg()
        finally:
            reg.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: round(statistics.median(v), 3) for k, v in walls.items()}
    return {"benchmark": "repush-sbom", "image": image, "runs": runs,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after,
            "baseline": baseline, "sbom_digest": attached["digest"], "median_s": med,
            "runs_s": walls,
            "goal_s": GOAL_S, "met": med["sbom"] <= GOAL_S}


def markdown(doc: dict[str, Any]) -> str:
    """The docs/benchmarks.md section, from results/repush-sbom.json."""
    med = doc["median_s"]
    return (f"`python bench/repush_sbom.py --runs {doc['runs']}` ({doc['date']}, load "
            f"{doc['load_before'][0]:.2f} before, {doc['load_after'][0]:.2f} after): "
            f"`ociforge push {doc['image']}` of an unchanged image to a loopback "
            "docker-registry that has it and its SBOM, wall time of the process, median "
            f"of {doc['runs']}.\n\n"
            "| case | median |\n|---|---:|\n"
            f"| with the SBOM (default), document kept in the store | **{med['sbom']:.3f} s** |\n"
            f"| with the SBOM, kept document removed first (made again) "
            f"| {med['sbom-regenerated']:.3f} s |\n"
            f"| `--no-sbom` | {med['no-sbom']:.3f} s |\n"
            f"| with the SBOM, ociforge as of `{doc['baseline']}` (before) "
            f"| {med['baseline-sbom']:.3f} s |\n\n"
            f"Goal ≤ {doc['goal_s']} s with the SBOM: "
            f"{'**met**' if doc['met'] else '**not met**'}.\n")


def write(doc: dict[str, Any]) -> None:
    write_doc("repush-sbom", doc, markdown)


def suite(ns: Any) -> None:
    """`python bench/run.py repush-sbom` (SUITES)."""
    write(measure(default_store(), "spark-4.1.1", max(ns.runs, 10), "main"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=default_store())
    ap.add_argument("--image", default="spark-4.1.1")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--baseline", default="main", help="git revision to compare with")
    args = ap.parse_args()
    write(measure(args.store, args.image, args.runs, args.baseline))


if __name__ == "__main__":
    main()
