#!/usr/bin/env python3
"""Re-push of an unchanged Spark image with its SBOM attached (issue 17, item 4).

    python bench/repush_sbom.py [--store DIR] [--image spark-4.1.1] [--runs 10]

The image is pushed once (untimed) to a docker-registry on 127.0.0.1, SBOM included;
then re-pushes are timed, wall time of the whole `ociforge push` process:
  - with the SBOM (the default), its document kept in the store by the first push;
  - with the SBOM, that kept document removed first (what every re-push cost before
    the store kept it: collect + render);
  - `--no-sbom`.
The store is a hard-linked copy of DIR (the test cache's Spark store by default), so
the original is not written to. Writes bench/results/repush-sbom.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from push import Registry, ociforge, timed
from push_spark import default_store

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 0.4


def linked_copy(src: Path, dest: Path) -> None:
    """Blobs hard-linked (never written in place), metadata copied."""
    dest.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(src / "blobs"), str(dest / "blobs")], check=True)
    for name in ("index.json", "oci-layout"):
        shutil.copy2(src / name, dest / name)
    shutil.copytree(src / "ociforge", dest / "ociforge", symlinks=True,
                    ignore=shutil.ignore_patterns("tmp", "locks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=default_store())
    ap.add_argument("--image", default="spark-4.1.1")
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ocf-bench-repush-"))
    load_before = os.getloadavg()
    try:
        store = work / "store"
        linked_copy(args.store, store)
        reg = Registry(work / "registry")
        try:
            push = ociforge(store, "-q", "push", args.image, "--to", f"{reg.host}/spark")
            first = subprocess.run([*push, "--json"], capture_output=True, text=True,
                                   check=True)
            attached = json.loads(first.stdout)["attached"][0]
            docs = store / "ociforge" / "sbom" / "documents"
            walls: dict[str, list[float]] = {"sbom": [], "sbom-regenerated": [],
                                             "no-sbom": []}
            for _ in range(args.runs):
                for case in walls:
                    if case == "sbom-regenerated":
                        shutil.rmtree(docs, ignore_errors=True)
                    argv = [*push, "--no-sbom"] if case == "no-sbom" else push
                    walls[case].append(timed(argv)[0])
        finally:
            reg.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: round(statistics.median(v), 3) for k, v in walls.items()}
    out = {"benchmark": "repush-sbom", "image": args.image, "runs": args.runs,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
           "sbom_digest": attached["digest"], "median_s": med, "runs_s": walls,
           "goal_s": GOAL_S, "met": med["sbom"] <= GOAL_S}
    results = ROOT / "bench" / "results" / "repush-sbom.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(out, indent=1) + "\n")
    print(f"re-push {args.image}, median of {args.runs} (load {load_before[0]:.2f}):")
    for k, v in med.items():
        print(f"  {k:<18}{v:>7.3f} s")
    print(f"goal ≤ {GOAL_S} s with the SBOM: {'met' if out['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
