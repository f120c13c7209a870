"""`ociforge assemble --all` for the whole matrix with every layer cached (target:
under 5 s wall for the CLI, start-up included).

Uses the test cache's store and its Maven repository of the real add-on jars (both
filled by scripts/prebuild-spark.sh, the repository served on 127.0.0.1), in a copy of
the project. The first run builds what the store lacks; the timed runs that follow
find everything cached.

    python bench/matrix.py [--store DIR] [--runs 5] [--catalog docs/images.md]

With --catalog it also writes the image catalog of the whole matrix (how
docs/images.md is made here).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from maven_cache import need_m2  # noqa: E402
from project_copy import copy_project  # noqa: E402
from push_spark import default_store  # noqa: E402

from httpserver import serve  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, default=default_store())
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--catalog", type=Path, help="also write the catalog here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ocf-bench-matrix-"))
    try:
        proj = work / "proj"
        copy_project(proj, "tools.yaml")
        with serve(need_m2()) as url:
            cmd = [sys.executable, "-m", "ociforge.cli", "--store", str(args.store),
                   "--project", str(proj), "--maven-repo", url, "assemble", "--all", "--json"]
            first = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                              text=True).stdout)
            walls, inner = [], []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                walls.append(time.perf_counter() - t0)
                report = json.loads(out)
                assert report["layers"]["built"] == [], report["layers"]
                inner.append(report["seconds"])
            if args.catalog:
                subprocess.run([*cmd[:9], "catalog", "-o", str(args.catalog.resolve())],
                               check=True)
        print(f"images: {len(first['images'])}; first run built "
              f"{len(first['layers']['built'])} layers")
        print(f"assemble --all, all cached: median wall {statistics.median(walls):.2f} s "
              f"(min {min(walls):.2f}, max {max(walls):.2f}; in-process "
              f"{statistics.median(inner):.2f} s) over {args.runs} runs; target < 5 s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
