#!/usr/bin/env python3
"""The registry layer cache at matrix scale: the shipped recipes (recipes/spark.yaml:
the Spark matrix) built by a 4-runner fleet vs one runner alone.

    python bench/fleet_matrix.py [--images N] [--no-one] [--timeout S]

Every runner starts with an empty store of its own; all share the downloads cache
(~/.cache/ociforge/downloads, as CI runners share a download mirror), so what is
measured is building and moving layers, not fetching from the internet. The fleet:
`plan --jobs 4 --github-matrix` (sizes from the test cache's Spark store, read only)
splits the selection's layers; four `layers build` processes start at once with
`--cache` on one docker-registry behind a counting proxy on loopback
(tests/fault_proxy.py: every request and response body byte). Checked: every distinct
layer (input key) built exactly once across the fleet. One runner alone: `layers build`
of every layer, no cache (it moves no byte to a registry). Writes bench/results/fleet-matrix.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from push import Registry, ociforge  # noqa: E402

from fault_proxy import FaultProxy, Faults  # noqa: E402

REPO_ROOT = HERE.parent
RESULTS = REPO_ROOT / "bench" / "results" / "fleet-matrix.json"
TEST_CACHE = Path(os.environ.get("OCIFORGE_TEST_CACHE") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ociforge-test")


def images(n: int | None) -> list[str]:
    from ociforge.recipes import Project

    names = list(Project.load(REPO_ROOT).images)
    return names[:n] if n else names


def run_all(argvs: list[list[str]], timeout: float) -> tuple[float, list[str]]:
    """Start every command at once; wall seconds until the last ends, and each stdout."""
    start = time.monotonic()
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in argvs]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(err[-2000:])
        outs.append(out)
    return time.monotonic() - start, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, help="only the first N images of the recipes")
    ap.add_argument("--no-one", action="store_true", help="skip the one-runner build")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    work = Path(os.environ.get("OCIFORGE_BENCH_TMP", "/tmp")) / f"fleet-matrix-{os.getpid()}"
    work.mkdir(parents=True)
    selected = images(args.images)
    sizes_from = TEST_CACHE / "spark-store"
    plan = json.loads(subprocess.run(
        ociforge(sizes_from if sizes_from.is_dir() else work / "planner", "--project",
                 str(REPO_ROOT), "plan", *selected, "--jobs", "4", "--github-matrix"),
        capture_output=True, text=True, check=True).stdout)
    jobs = [e["layers"].split() for e in plan["include"]]
    every = [ln for j in jobs for ln in j]
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "nproc": os.cpu_count(),
        "load_before": os.getloadavg(), "images": len(selected), "layers": len(every),
        "jobs": jobs}
    reg = Registry(work / "reg")
    proxy = FaultProxy(reg.port, Faults(stream_uploads=True)).start()
    try:
        wall, outs = run_all([ociforge(work / f"runner-{i}", "--project", str(REPO_ROOT),
                                       "--cache", f"{proxy.host}/ci/cache", "--json",
                                       "layers", "build", *layers)
                              for i, layers in enumerate(jobs)], args.timeout)
        reports = [d for out in outs for d in json.loads(out)]
        # Layers with the same inputs (releases sharing an add-on jar) are one build.
        keys = sorted({d["key"] for d in reports})
        built = sorted(d["key"] for d in reports if d["built"])
        result["fleet"] = {
            "wall_s": round(wall, 1), "bytes_sent": proxy.bytes_in,
            "bytes_received": proxy.bytes_out, "requests": len(proxy.log),
            "built": len(built), "distinct_keys": len(keys), "built_once": built == keys,
            "same_as": {d["name"]: d["same_as"] for d in reports if "same_as" in d},
            "store_bytes": [sum(p.stat().st_size for p in (work / f"runner-{i}").rglob("*")
                                if p.is_file()) for i in range(len(jobs))]}
        assert sorted(d["name"] for d in reports) == sorted(every), "a planned layer missing"
        assert built == keys, f"{len(built)} builds of {len(keys)} distinct layers"
    finally:
        proxy.stop()
        reg.stop()
    # The fleet's stores and registry hold the whole matrix (~11 GB each): freed before
    # the one-runner pass so that both passes fit on the disk.
    for tree in [work / "reg", *(work / f"runner-{i}" for i in range(len(jobs)))]:
        remove_unmounted(tree)
    if not args.no_one:
        wall, outs = run_all([ociforge(work / "one", "--project", str(REPO_ROOT), "--json",
                                       "layers", "build", *every)], args.timeout)
        result["one"] = {"wall_s": round(wall, 1), "bytes_sent": 0, "bytes_received": 0,
                         "built": sum(1 for d in json.loads(outs[0]) if d["built"])}
        result["fleet_over_one"] = round(result["fleet"]["wall_s"] / wall, 3)
    result["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    remove_unmounted(work)


def remove_unmounted(tree: Path) -> None:
    """Remove TREE unless something is still mounted under it (/dev, /proc of a build)."""
    mounts = [m.split()[1] for m in Path("/proc/mounts").read_text().splitlines()
              if m.split()[1].startswith(str(tree))]
    if mounts:
        print(f"left {tree}: still mounted there: {mounts}", file=sys.stderr)
    else:
        shutil.rmtree(tree, ignore_errors=True)


if __name__ == "__main__":
    main()
