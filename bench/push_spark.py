"""`ociforge push` vs `skopeo copy` for the real Spark images, to a local registry.

Two cases, each on a fresh empty docker-registry per timed run, contenders
alternating, medians reported:
  1. first push of one Spark image (spark-4.1.1);
  2. first push of every Spark image in the store into one repository — ociforge in
     one command, skopeo one `skopeo copy` per image, as a CI script would do (skopeo
     skips blobs the repository already has, so shared layers go up once for both).
The images come from a store where they are assembled (default: the test cache's
store, filled by scripts/prebuild-spark.sh) and are exported once to an OCI layout
for skopeo.

    python bench/push_spark.py [--store DIR] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from push import MiB, Registry, ociforge, skopeo_digest, timed

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ["4.1.1", "4.1.0", "3.5.8", "3.5.7"]


def default_store() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("OCIFORGE_TEST_CACHE") or Path(cache) / "ociforge-test") \
        / "spark-store"


def warm(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(8 * MiB):
                pass


def run_case(store: Path, layout: Path, work: Path, names: list[str], runs: int,
             jobs: int) -> dict[str, Any]:
    walls: dict[str, list[float]] = {"ociforge": [], "skopeo": []}
    rss: dict[str, list[int]] = {"ociforge": [], "skopeo": []}
    digests: dict[str, set[str]] = {n: set() for n in names}
    for i in range(runs):
        for tool in ("ociforge", "skopeo") if i % 2 == 0 else ("skopeo", "ociforge"):
            reg = Registry(work / f"reg-{tool}-{len(names)}-{i}")
            try:
                (store / "ociforge" / "registry" / "blob-locations.json").unlink(
                    missing_ok=True)
                subprocess.run(["sync"], check=True)
                if tool == "ociforge":
                    # --no-sbom: like for like with skopeo copy, which attaches nothing.
                    w, r = timed(ociforge(store, "-q", "push", *names, "--to",
                                          f"{reg.host}/spark", "--jobs", str(jobs),
                                          "--no-sbom"))
                else:
                    w, r = 0.0, 0
                    for name in names:
                        tag = name.removeprefix("spark-")
                        wi, ri = timed(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                                        f"oci:{layout}:{tag}",
                                        f"docker://{reg.host}/spark:{name}"])
                        w, r = w + wi, max(r, ri)
                walls[tool].append(w)
                rss[tool].append(r)
                for name in names:
                    digests[name].add(skopeo_digest(f"{reg.host}/spark:{name}"))
            finally:
                reg.stop()
    for name, ds in digests.items():
        if len(ds) != 1:
            raise RuntimeError(f"{name}: the tools pushed different manifests: {ds}")
    o, s = statistics.median(walls["ociforge"]), statistics.median(walls["skopeo"])
    return {"images": names, "ociforge_s": round(o, 3), "skopeo_s": round(s, 3),
            "ratio": round(o / s, 3), "ociforge_runs_s": walls["ociforge"],
            "skopeo_runs_s": walls["skopeo"],
            "ociforge_peak_rss_mib": round(max(rss["ociforge"]) / MiB, 1),
            "skopeo_peak_rss_mib": round(max(rss["skopeo"]) / MiB, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=default_store())
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=4)
    args = ap.parse_args()
    names = [f"spark-{v}" for v in VERSIONS]
    work = Path(tempfile.mkdtemp(prefix="ocf-bench-push-spark-"))
    try:
        layout = work / "layout"
        subprocess.run(ociforge(args.store, "--project", str(ROOT), "-q", "assemble", *names,
                                "--oci-layout", str(layout)), check=True)
        warm([*(layout / "blobs" / "sha256").iterdir()])
        one = run_case(args.store, layout, work, names[:1], args.runs, args.jobs)
        everything = run_case(args.store, layout, work, names, args.runs, args.jobs)
        size_one = sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    out = {"benchmark": "push-spark", "runs": args.runs, "jobs": args.jobs,
           "cpus": os.cpu_count(), "load": os.getloadavg(),
           "distinct_blob_bytes_all_images": size_one,
           "one_image": one, "all_images": everything}
    (ROOT / "bench" / "results" / "push-spark.json").write_text(json.dumps(out, indent=2))
    print(f"{'case':<28}{'ociforge s':>11}{'skopeo s':>10}{'ratio':>7}  RSS MiB o/s")
    for label, r in (("first push, spark-4.1.1", one), ("first push, 4 Spark images",
                                                        everything)):
        print(f"{label:<28}{r['ociforge_s']:>11.2f}{r['skopeo_s']:>10.2f}{r['ratio']:>7.2f}"
              f"  {r['ociforge_peak_rss_mib']:.0f}/{r['skopeo_peak_rss_mib']:.0f}")


if __name__ == "__main__":
    main()
