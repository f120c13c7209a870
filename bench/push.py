#!/usr/bin/env python3
"""`ociforge push` vs `skopeo copy oci:LAYOUT docker://…` to a local registry.

    python bench/push.py [--size-mb 500] [--runs 3]

Same image for both (about --size-mb of gzip layers of random bytes, so nothing
compresses away), same registry binary (Debian's docker-registry), same run. Each
timed push goes to a freshly started, empty registry, so neither tool can skip or
mount anything; contenders alternate (ociforge, skopeo, ociforge, …) and the median
wall time, process start included, is reported with peak RSS. Then an unchanged
re-push of the same image is timed for both. Writes bench/results/push.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results" / "push.json"
MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """docker-registry on 127.0.0.1 with its own empty storage."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        base.mkdir(parents=True)
        config = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
                  "storage": {"filesystem": {"rootdirectory": str(base / "data")}},
                  "http": {"addr": f"127.0.0.1:{self.port}", "secret": secrets.token_hex(8)}}
        (base / "config.yml").write_text(json.dumps(config))
        self.proc = subprocess.Popen(["docker-registry", "serve", str(base / "config.yml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of a child process; fails loudly."""
    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv[:4])}… failed: {err.read().decode()[-1000:]}")
    return wall, usage.ru_maxrss * 1024


def ociforge(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ociforge.cli", "--store", str(store), *args]


def build(work: Path, sizes: list[int], compression: str = "gzip"
          ) -> tuple[Path, Path, int]:
    """A store and an OCI layout holding `bench-push` (one layer of random bytes per
    size in MiB), and its total blob size."""
    project = work / "proj"
    (project / "layers").mkdir(parents=True)
    (project / "recipes").mkdir()
    (project / "files").mkdir()
    rng = random.Random(42)
    names = []
    for i, mb in enumerate(sizes):
        name = f"bench-rand{i}"
        with open(project / "files" / f"{name}.bin", "wb") as f:
            for _ in range(mb):
                f.write(rng.randbytes(MiB))
        (project / "layers" / f"{name}.yaml").write_text(
            f"source:\n  kind: files\n  files:\n    - {{src: files/{name}.bin, "
            f"dest: /data/{name}.bin}}\n")
        names.append(name)
    (project / "recipes" / "bench.yaml").write_text(
        f"images:\n  bench-push:\n    layers: {json.dumps(names)}\n"
        "    config:\n      cmd: [/bin/true]\n")
    store, layout = work / "store", work / "layout"
    subprocess.run(ociforge(store, "--project", str(project), "-q", "assemble", "bench-push",
                            "--compression", compression, "--oci-layout", str(layout)),
                   check=True)
    index = json.loads((store / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((store / "blobs" / "sha256" / digest[7:]).read_text())
    total = sum(d["size"] for d in [manifest["config"], *manifest["layers"]])
    return store, layout, total


def skopeo_digest(ref: str) -> str:
    p = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                       capture_output=True, text=True, check=True)
    return str(json.loads(p.stdout)["Digest"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--rss-layer-mb", type=int, default=0,
                    help="Also push one uncompressed layer this large, for peak RSS.")
    args = ap.parse_args()
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (scripts/install-test-deps.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="ocf-bench-push-"))
    try:
        # A realistic spread: one big layer, one medium, a few small ones.
        store, layout, total = build(work, [int(args.size_mb * f)
                                            for f in (0.6, 0.3, 0.04, 0.04, 0.02)])
        # Read both copies once, untimed, so the page cache is warm for everyone.
        for p in [*(store / "blobs" / "sha256").iterdir(), *(layout / "blobs" / "sha256")
                  .iterdir()]:
            with open(p, "rb") as f:
                while f.read(8 * MiB):
                    pass
        results: dict[str, list[tuple[float, int]]] = {"ociforge": [], "skopeo": [],
                                                       "ociforge-repush": [],
                                                       "skopeo-repush": []}
        digests = set()
        for i in range(args.runs):
            for tool in ("ociforge", "skopeo") if i % 2 == 0 else ("skopeo", "ociforge"):
                reg = Registry(work / f"reg-{tool}-{i}")
                ref = f"{reg.host}/bench/push:v1"
                (store / "ociforge" / "registry" / "blob-locations.json").unlink(
                    missing_ok=True)
                if tool == "ociforge":
                    # --no-sbom: like for like with skopeo copy, which attaches nothing.
                    argv = ociforge(store, "-q", "push", "bench-push", "--to", ref,
                                    "--jobs", str(args.jobs), "--no-sbom")
                else:
                    argv = ["skopeo", "copy", "-q", "--dest-tls-verify=false",
                            f"oci:{layout}:latest", f"docker://{ref}"]
                subprocess.run(["sync"], check=True)
                results[tool].append(timed(argv))
                results[f"{tool}-repush"].append(timed(argv))
                digests.add(skopeo_digest(ref))
                reg.stop()
        if len(digests) != 1:
            raise RuntimeError(f"the tools pushed different manifests: {digests}")
        rss = rss_case(work / "rss", args.rss_layer_mb) if args.rss_layer_mb else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(key: str) -> tuple[float, float]:
        walls = [w for w, _ in results[key]]
        return statistics.median(walls), max(r for _, r in results[key]) / MiB

    rows: list[dict[str, Any]] = []
    for case, a, b in (("first push", "ociforge", "skopeo"),
                       ("re-push, unchanged", "ociforge-repush", "skopeo-repush")):
        (ta, ra), (tb, rb) = med(a), med(b)
        rows.append({"case": case, "ociforge_s": round(ta, 3), "skopeo_s": round(tb, 3),
                     "ratio": round(ta / tb, 3), "ociforge_peak_rss_mib": round(ra, 1),
                     "skopeo_peak_rss_mib": round(rb, 1),
                     "ociforge_mb_s": round(total / 1e6 / ta, 1) if "re-push" not in case
                     else None})
    print(f"\nimage: {total / 1e6:.0f} MB in 6 blobs; {args.runs} runs each, median; "
          f"same manifest digest from both: {digests.pop()[:19]}")
    print(f"{'case':<22}{'ociforge s':>11}{'skopeo s':>10}{'ratio':>7}{'RSS MiB':>17}")
    for r in rows:
        print(f"{r['case']:<22}{r['ociforge_s']:>11.2f}{r['skopeo_s']:>10.2f}"
              f"{r['ratio']:>7.2f}{r['ociforge_peak_rss_mib']:>8.0f} /"
              f"{r['skopeo_peak_rss_mib']:>7.0f}")
    if rss:
        print(f"one {rss['layer_mib']} MiB layer: ociforge {rss['ociforge_s']:.1f} s, "
              f"peak RSS {rss['ociforge_peak_rss_mib']:.0f} MiB; skopeo {rss['skopeo_s']:.1f} s, "
              f"{rss['skopeo_peak_rss_mib']:.0f} MiB")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "push", "image_bytes": total,
                                   "runs": args.runs, "jobs": args.jobs, "rows": rows,
                                   "large_layer": rss, "cpus": os.cpu_count()},
                                  indent=1) + "\n")


def rss_case(work: Path, layer_mb: int) -> dict[str, Any]:
    """Peak RSS while pushing one large uncompressed layer: memory must stay flat."""
    work.mkdir()
    store, layout, _ = build(work, [layer_mb], compression="none")
    out: dict[str, Any] = {"layer_mib": layer_mb}
    for tool in ("ociforge", "skopeo"):
        reg = Registry(work / f"reg-{tool}")
        ref = f"{reg.host}/bench/large:v1"
        argv = (ociforge(store, "-q", "push", "bench-push", "--to", ref, "--no-sbom")
                if tool == "ociforge"
                else ["skopeo", "copy", "-q", "--dest-tls-verify=false",
                      f"oci:{layout}:latest", f"docker://{ref}"])
        wall, peak = timed(argv)
        out[f"{tool}_s"], out[f"{tool}_peak_rss_mib"] = round(wall, 2), round(peak / MiB, 1)
        reg.stop()
    return out


if __name__ == "__main__":
    main()
