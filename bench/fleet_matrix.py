#!/usr/bin/env python3
"""The registry layer cache at matrix scale: the shipped recipes (recipes/spark.yaml:
the Spark matrix, every image on linux/amd64 and linux/arm64) built by a 4-runner
fleet vs one runner alone, then published by stitching vs skopeo.

    python bench/fleet_matrix.py [--images N] [--no-one] [--sample IMAGE…] [--timeout S]

Every runner starts with an empty store of its own; all share the downloads cache
(~/.cache/ociforge/downloads, as CI runners share a download mirror), so what is
measured is building and moving layers, not fetching from the internet.
1. The fleet: `plan --jobs 4` (sizes from the test cache's Spark store, read only)
   splits the selection's layers, per platform (`NAME@linux/arm64`); four `layers
   build` processes start at once with `--cache` on one docker-registry behind a
   counting proxy on loopback (tests/fault_proxy.py: every request and body byte).
   Checked: every distinct layer (input key) built exactly once across the fleet.
2. A fifth runner, empty store, publishes every image to a new repository through
   the proxy: checked that no layer blob is downloaded or uploaded and nothing built.
3. A sample pulled back from that repository into an empty store passes `ociforge
   test` (native, structure and runtime checks in a containerd of its own).
4. One runner alone: `layers build` of every entry, no cache (no byte moved).
5. Publish by stitching from an empty store (plain, and `push --plan`) vs `skopeo
   copy --all` of the same images from an OCI layout (the one-runner store is one),
   each to an empty repository of the same registry, no proxy in between.
Writes bench/results/fleet-matrix.json.
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

from ociforge.plan import token  # noqa: E402

from fault_proxy import FaultProxy, Faults  # noqa: E402

REPO_ROOT = HERE.parent
RESULTS = REPO_ROOT / "bench" / "results" / "fleet-matrix.json"
SAMPLE = ("spark-4.1.4", "spark-3.5.9-iceberg")
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
    ap.add_argument("--no-one", action="store_true",
                    help="skip the one-runner build and the skopeo comparison")
    ap.add_argument("--sample", nargs="*", default=list(SAMPLE),
                    help="images pulled back from the publish and checked with `ociforge test`")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    work = Path(os.environ.get("OCIFORGE_BENCH_TMP", "/tmp")) / f"fleet-matrix-{os.getpid()}"
    work.mkdir(parents=True)
    selected = images(args.images)
    sizes_from = TEST_CACHE / "spark-store"
    planner = sizes_from if sizes_from.is_dir() else work / "planner"
    plan_json = subprocess.run(ociforge(planner, "--project", str(REPO_ROOT), "--json", "plan",
                                        *selected, "--jobs", "4"),
                               capture_output=True, text=True, check=True).stdout
    (work / "plan.json").write_text(plan_json)
    jobs = [j["layers"] for j in json.loads(plan_json)["jobs"]]
    every = [ln for j in jobs for ln in j]
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "nproc": os.cpu_count(),
        "load_before": os.getloadavg(), "images": len(selected), "layers": len(every),
        "jobs": jobs}
    reg = Registry(work / "reg")
    proxy = FaultProxy(reg.port, Faults(stream_uploads=True)).start()
    try:
        result["fleet"] = fleet(work, proxy, jobs, args.timeout)
        result["publish"] = publish_counted(work, proxy, selected, jobs)
        result["sample"] = check_sample(work, proxy, args.sample, args.timeout)
        # The runners' stores hold the whole matrix (~8 GB): freed before the
        # one-runner pass so that everything fits on the disk.
        for tree in [*(work / f"runner-{i}" for i in range(len(jobs))), work / "pub-counted",
                     work / "pulled"]:
            remove_unmounted(tree)
        if not args.no_one:
            wall, outs = run_all([ociforge(work / "one", "--project", str(REPO_ROOT), "--json",
                                           "layers", "build", *every)], args.timeout)
            result["one"] = {"wall_s": round(wall, 1), "bytes_sent": 0, "bytes_received": 0,
                             "built": sum(1 for d in json.loads(outs[0]) if d["built"])}
            result["fleet_over_one"] = round(result["fleet"]["wall_s"] / wall, 3)
            result["stitch_vs_skopeo"] = stitch_vs_skopeo(work, reg, selected, args.timeout)
    finally:
        proxy.stop()
        reg.stop()
    result["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    remove_unmounted(work)


def store_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.rglob("*") if p.is_file())


def layer_digests(store: Path) -> set[str]:
    """Every layer blob digest a store's layer records name."""
    out: set[str] = set()
    for path in (store / "ociforge" / "layers").glob("*.json"):
        out |= {b["digest"] for b in json.loads(path.read_text())["blobs"].values()}
    return out


def fleet(work: Path, proxy: FaultProxy, jobs: list[list[str]], timeout: float
          ) -> dict[str, Any]:
    """Four runners at once, each building its job's layers with the cache on."""
    wall, outs = run_all([ociforge(work / f"runner-{i}", "--project", str(REPO_ROOT),
                                   "--cache", f"{proxy.host}/ci/cache", "--json",
                                   "layers", "build", *layers)
                          for i, layers in enumerate(jobs)], timeout)
    reports = [d for out in outs for d in json.loads(out)]
    # Layers with the same inputs (releases sharing an add-on jar) are one build.
    keys = sorted({d["key"] for d in reports})
    built = sorted(d["key"] for d in reports if d["built"])
    assert sorted(token(d["name"], d["platform"]) for d in reports) == \
        sorted(ln for j in jobs for ln in j), "a planned layer was not built"
    assert built == keys, f"{len(built)} builds of {len(keys)} distinct layers"
    return {"wall_s": round(wall, 1), "bytes_sent": proxy.bytes_in,
            "bytes_received": proxy.bytes_out, "requests": len(proxy.log),
            "built": len(built), "distinct_keys": len(keys), "built_once": built == keys,
            "same_as": {d["name"]: d["same_as"] for d in reports if "same_as" in d},
            "store_bytes": [store_bytes(work / f"runner-{i}") for i in range(len(jobs))]}


def publish_counted(work: Path, proxy: FaultProxy, selected: list[str],
                    jobs: list[list[str]]) -> dict[str, Any]:
    """A fifth runner, empty store, warm cache: every image to a new repository, every
    request counted — no layer blob may be downloaded or uploaded."""
    layers = set().union(*(layer_digests(work / f"runner-{i}") for i in range(len(jobs))))
    uploads_before = set(proxy.digest_of_upload)  # upload sessions, by uuid
    proxy.log.clear()
    sent, received = proxy.bytes_in, proxy.bytes_out
    argv = ociforge(work / "pub-counted", "--project", str(REPO_ROOT), "--cache",
                    f"{proxy.host}/ci/cache", "--json", "push", *selected, "--to",
                    f"{proxy.host}/ci/release")
    start = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=True)
    wall = time.monotonic() - start
    report = json.loads(r.stdout)
    gets = sum(1 for e in proxy.log if e.method == "GET" and "/blobs/sha256:" in e.path
               and e.path.rsplit("/", 1)[-1] in layers)
    ups = {d for u, d in proxy.digest_of_upload.items() if u not in uploads_before} & layers
    kept = [p for p in (work / "pub-counted" / "blobs" / "sha256").iterdir()
            if "sha256:" + p.name in layers]
    out = {"wall_s": round(wall, 2), "images": len(report["images"]),
           "requests": len(proxy.log), "bytes_sent": proxy.bytes_in - sent,
           "bytes_received": proxy.bytes_out - received, "blobs": report["blobs"],
           "layer_blob_gets": gets, "layer_blob_uploads": len(ups),
           "layer_blobs_in_store": len(kept),
           "sboms": sum(1 for a in report["attached"] if "skipped" not in a),
           "stderr": r.stderr[-2000:]}
    assert gets == 0 and not ups and not kept, out
    return out


def check_sample(work: Path, proxy: FaultProxy, sample: list[str], timeout: float
                 ) -> dict[str, Any]:
    """Pull SAMPLE back from the published repository into an empty store and run
    `ociforge test` on them (native, structure and runtime checks in containerd)."""
    out: dict[str, Any] = {}
    for name in sample:  # `push` tags each image with its name
        subprocess.run(ociforge(work / "pulled", "-q", "pull", f"{proxy.host}/ci/release:{name}",
                                "--name", name), check=True, timeout=timeout)
    start = time.monotonic()
    r = subprocess.run(ociforge(work / "pulled", "--project", str(REPO_ROOT), "--json",
                                "test", *sample), capture_output=True, text=True,
                       timeout=timeout)
    results = json.loads(r.stdout)["results"] if r.stdout.strip() else []
    for x in results:
        counts = out.setdefault(x["image"], {})
        counts[x["status"]] = counts.get(x["status"], 0) + 1
    failed = [f"{x['image']}: {x['name']}" for x in results if x["status"] == "failed"]
    return {"rc": r.returncode, "wall_s": round(time.monotonic() - start, 1),
            "results": out, "failed": failed, "stderr": r.stderr[-1500:] if r.returncode else ""}


def stitch_vs_skopeo(work: Path, reg: Registry, selected: list[str], timeout: float
                     ) -> dict[str, Any]:
    """(b) at matrix scale, straight to the registry (no proxy in the way of either):
    publish by stitching from an empty store with the warm cache vs `skopeo copy --all`
    of the same images (every platform) from an OCI layout — the one-runner store,
    which is one (`oci-layout`, `index.json` naming each image) — each to an empty
    repository."""
    one = work / "one"
    subprocess.run(ociforge(one, "--project", str(REPO_ROOT), "-q", "assemble", *selected),
                   check=True, timeout=timeout)
    stitch, _ = run_all([ociforge(work / "pub-direct", "--project", str(REPO_ROOT), "-q",
                                  "--cache", f"{reg.host}/ci/cache", "push", *selected,
                                  "--to", f"{reg.host}/ci/stitched")], timeout)
    stitch_plan, _ = run_all([ociforge(work / "pub-plan", "--cache", f"{reg.host}/ci/cache",
                                       "-q", "push", "--plan", str(work / "plan.json"),
                                       *selected, "--to", f"{reg.host}/ci/stitched-plan")],
                             timeout)
    start = time.monotonic()
    for name in selected:
        subprocess.run(["skopeo", "copy", "-q", "--all", "--dest-tls-verify=false",
                        f"oci:{one}:{name}", f"docker://{reg.host}/ci/skopeo:{name}"],
                       check=True, stdout=subprocess.DEVNULL, timeout=timeout)
    skopeo = time.monotonic() - start
    return {"stitch_s": round(stitch, 2), "stitch_plan_s": round(stitch_plan, 2),
            "skopeo_s": round(skopeo, 1), "stitch_over_skopeo": round(stitch / skopeo, 4),
            "stitch_plan_over_skopeo": round(stitch_plan / skopeo, 4)}


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
