#!/usr/bin/env python3
"""The registry as a layer cache: a 4-runner fleet vs one runner, and publish by
stitching vs `skopeo copy` from an OCI layout.

    python bench/fleet.py [--size-mb 240] [--runs 3]

Data: five images over nine layers of random bytes (gzip; nothing compresses away),
about --size-mb in all, some layers shared by several images. Same registry binary
(Debian's docker-registry), same run, contenders interleaved.

(a) Build every layer: one runner alone (`layers build` of all nine, no cache) vs a
    fleet of four runner processes started at once, each with an empty store, each
    building its `plan --jobs 4` share with `--cache` (so each pushes what it built).
    Bytes sent = growth of the registry's storage; bytes received = what the runners
    fetched (only records: layers are never downloaded by a build).
(b) Publish every image to an empty repository of the same registry: `push --all
    --to` from an empty store with the fleet's warm cache (manifests, configs and
    SBOMs; layers mounted; row stitch_plan: `push --plan plan.json --all`, which
    loads no recipe) vs `skopeo copy oci:LAYOUT:latest docker://…` of each
    image from an OCI layout of it (one process per image, one after another).
    Goal: ≤ 0.1× skopeo's time.
`--publish-only`: (b) alone, the cache warmed by one untimed runner (each run gets a
fresh registry); the contenders alternate (stitch, skopeo, stitch …).
Every child runs with byte-compiled modules (compiled first, as an installed package
is): the figure is ociforge's, not the source compiler's.
Writes bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from push import Registry, ociforge

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results" / "fleet.json"
MiB = 1 << 20
# name -> share of --size-mb; images share the base layers.
LAYERS = {"base-0": 30, "base-1": 20, "a-0": 15, "a-1": 10, "b-0": 25, "c-0": 12,
          "c-1": 8, "d-0": 6, "e-0": 4}
IMAGES = {"img-a": ["base-0", "base-1", "a-0", "a-1"], "img-b": ["base-0", "base-1", "b-0"],
          "img-c": ["base-0", "c-0", "c-1"], "img-d": ["base-0", "base-1", "d-0", "a-0"],
          "img-e": ["e-0"]}


def make_project(root: Path, size_mb: int) -> Path:
    rng = random.Random(7)
    total = sum(LAYERS.values())
    for name, share in LAYERS.items():
        path = root / "files" / f"{name}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            for _ in range(max(1, size_mb * share // total)):
                f.write(rng.randbytes(MiB))
        (root / "layers").mkdir(exist_ok=True)
        (root / "layers" / f"{name}.yaml").write_text(
            f"source:\n  kind: files\n  files:\n    - {{src: files/{name}.bin, "
            f"dest: /data/{name}.bin}}\n")
    (root / "recipes").mkdir(exist_ok=True)
    (root / "recipes" / "fleet.yaml").write_text("images:\n" + "".join(
        f"  {n}:\n    layers: {json.dumps(ls)}\n    config:\n      cmd: [/bin/true]\n"
        for n, ls in IMAGES.items()))
    # A git checkout, as on CI: the publisher takes the plan's file digests for files
    # git finds unchanged instead of hashing them again.
    git = ["git", "-C", str(root), "-c", "user.email=b@b", "-c", "user.name=bench"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], check=True)
    return root


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_all(argvs: list[list[str]], cwd: Path | None = None) -> float:
    """Start every command at once; wall seconds until the last one ends (`cwd`: where
    `python -m ociforge.cli` finds the package, for --baseline)."""
    start = time.monotonic()
    procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)
             for a in argvs]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(err.decode()[-1000:])
    return time.monotonic() - start


def children_cpu() -> float:
    """User + system seconds of every child process that has ended so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def publish(rows: dict[str, list[float]], cpu: dict[str, list[float]], work: Path,
            project: Path, reg: Registry, cache: str, layout: Path, run: int,
            baseline: Path | None = None) -> None:
    """(b) stitching vs skopeo, to empty repositories of the same registry; the
    stitch also without the plan's file digests (every input file hashed again).
    Odd runs go in the reverse order, so no contender always follows another."""

    def stitch() -> None:
        for row, extra in (("stitch_rehash", []),
                           ("stitch", ["--file-digests", str(work / "plan.json")]),
                           ("stitch_plan", ["--plan", str(work / "plan.json")])):
            before = children_cpu()
            rows[row].append(run_all([ociforge(
                work / f"pub-{run}{row}", "--project", str(project), "--cache", cache, "-q",
                "push", "--all", "--to", f"{reg.host}/ci/{row}", *extra)]))
            cpu[row].append(children_cpu() - before)
        fetched = sum(1 for row in ("stitch", "stitch_plan")
                      for p in (work / f"pub-{run}{row}" / "blobs" / "sha256").iterdir()
                      if p.stat().st_size > MiB)
        assert fetched == 0, "the publisher downloaded layers"

    def stitch_baseline() -> None:  # the same, with another checkout's ociforge
        if baseline is None:
            return
        before = children_cpu()
        rows["stitch_baseline"].append(run_all([ociforge(
            work / f"pub-{run}base", "--project", str(project), "--cache", cache, "-q",
            "push", "--all", "--to", f"{reg.host}/ci/baseline", "--file-digests",
            str(work / "plan.json"))], cwd=baseline))
        cpu["stitch_baseline"].append(children_cpu() - before)

    def skopeo() -> None:
        start, before = time.monotonic(), children_cpu()
        for name in IMAGES:
            subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                            f"oci:{layout}-{name}:latest", f"docker://{reg.host}/ci/skopeo:{name}"],
                           check=True, stdout=subprocess.DEVNULL)
        rows["skopeo"].append(time.monotonic() - start)
        cpu["skopeo"].append(children_cpu() - before)  # skopeo's own (not the registry's)

    order = (stitch, stitch_baseline, skopeo)
    for contender in (order[::-1] if run % 2 else order):
        contender()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=240)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--publish-only", action="store_true",
                    help="(b) alone: publish by stitching vs skopeo, no fleet figures")
    ap.add_argument("--baseline", type=Path,
                    help="a checkout of another commit (`git archive REV | tar -x -C DIR`): "
                         "its stitch timed too, in the same run (row stitch_baseline)")
    args = ap.parse_args()
    for tree in (REPO_ROOT, *([args.baseline] if args.baseline else [])):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "ociforge")],
                       check=True, stdout=subprocess.DEVNULL)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    work = Path(os.environ.get("OCIFORGE_BENCH_TMP", "/tmp")) / f"fleet-bench-{os.getpid()}"
    project = make_project(work / "proj", args.size_mb)
    load_before = os.getloadavg()
    plan_json = subprocess.run(
        ociforge(work / "planner", "--project", str(project), "plan", "--all", "--jobs",
                 "4", "--json"), capture_output=True, text=True, check=True).stdout
    (work / "plan.json").write_text(plan_json)
    plan = json.loads(plan_json)
    jobs = [j["layers"] for j in plan["jobs"]]
    every = [ln for j in jobs for ln in j]
    # The layout skopeo copies from: the same images, built once, untimed.
    # (one layout per image: every image's tag is `latest`, so one layout would be
    # ambiguous to skopeo's `oci:PATH:TAG`)
    ref_store, layout = work / "ref-store", work / "layout"
    for name in IMAGES:
        subprocess.run(ociforge(ref_store, "--project", str(project), "-q", "assemble", name,
                                "--oci-layout", f"{layout}-{name}"), check=True)
    rows: dict[str, list[float]] = {"one": [], "fleet": [], "stitch": [], "skopeo": [],
                                    "stitch_rehash": [], "stitch_plan": [],
                                    "stitch_baseline": []}
    cpu: dict[str, list[float]] = {"stitch": [], "stitch_rehash": [], "stitch_plan": [],
                                   "skopeo": [], "stitch_baseline": []}
    sent: dict[str, int] = {}
    for run in range(args.runs):
        if args.publish_only:
            reg = Registry(work / f"reg-fleet-{run}")
            cache = f"{reg.host}/ci/cache"
            run_all([ociforge(work / f"warm-{run}", "--project", str(project), "--cache",
                              cache, "-q", "layers", "build", *every)])
            publish(rows, cpu, work, project, reg, cache, layout, run, args.baseline)
            reg.stop()
            continue
        # (a) one runner, no cache
        reg = Registry(work / f"reg-one-{run}")
        rows["one"].append(run_all([ociforge(work / f"one-{run}", "--project", str(project),
                                             "-q", "layers", "build", *every)]))
        reg.stop()
        # (a) the fleet
        reg = Registry(work / f"reg-fleet-{run}")
        cache = f"{reg.host}/ci/cache"
        rows["fleet"].append(run_all([
            ociforge(work / f"fleet-{run}-{i}", "--project", str(project), "--cache", cache,
                     "-q", "layers", "build", *layers) for i, layers in enumerate(jobs)]))
        sent["fleet"] = du(reg.base / "data")
        publish(rows, cpu, work, project, reg, cache, layout, run, args.baseline)
        reg.stop()
    rows = {k: v for k, v in rows.items() if v}
    med = {k: statistics.median(v) for k, v in rows.items()}
    total = sum(p.stat().st_size for p in (project / "files").iterdir())
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
        "size_mb": round(total / MiB), "layers": len(LAYERS), "images": len(IMAGES),
        "runs": rows, "median_s": med,
        "mode": "publish-only" if args.publish_only else "all",
        "commit": subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip(),
        **({"fleet_over_one": med["fleet"] / med["one"]} if "fleet" in med else {}),
        "stitch_over_skopeo": med["stitch"] / med["skopeo"],
        "stitch_rehash_over_skopeo": med["stitch_rehash"] / med["skopeo"],
        "stitch_plan_over_skopeo": med["stitch_plan"] / med["skopeo"],
        **({"stitch_baseline_over_skopeo": med["stitch_baseline"] / med["skopeo"],
            "baseline": str(args.baseline)} if "stitch_baseline" in med else {}),
        "cpu_s": {k: statistics.median(v) for k, v in cpu.items() if v},
        **({"fleet_registry_bytes": sent["fleet"]} if "fleet" in sent else {}),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
