"""Issue 17, item 2: ociforge vs go-containerregistry's `crane` (built by
scripts/build-go-tools.sh), to Debian's docker-registry on 127.0.0.1:

  1  first push of spark-4.1.1 to an empty repository: `crane push LAYOUT REF` (an OCI
     layout exported by ociforge, untimed) vs `ociforge push` from the store (with its
     default SBOM referrer, and with --no-sbom, like for like with crane);
  2  re-push of the unchanged image (same registry);
  3  first push of the four baselines into one empty repository: one `crane push` per
     image vs one `ociforge push` of the four;
  4  deriving the iceberg variant from cached layers: `crane append` of the variant's
     four layer blobs (the same gzip blobs ociforge made) onto spark-4.1.1 in the
     registry, then `crane mutate` for its labels, vs `ociforge assemble spark-4.1.1
     --with iceberg` (store only) and that plus `ociforge push` of the variant.

A fresh empty registry for each timed first push; contenders alternate; median of
`runs`; wall time including process start; every timed command under
`flock /tmp/bench.lock`. Goals: first push ≤ 0.8× crane, re-push ≤ 0.5 s, four
images ≤ 0.6× crane.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_buildah import loadavg, locked_time
from common import OCIFORGE, RESULTS_DIR, machine
from push import Registry
from seeds_setup import BASELINES, CRANE, Seeds

ONE = "4.1.1"


def ociforge(store: Path, seeds: Seeds, *args: str) -> list[str]:
    return [OCIFORGE, "--store", str(store), "--project", str(seeds.project), "-q", *args]


def crane(*args: str) -> list[str]:
    return [str(CRANE), "--insecure", *args]


def layouts(seeds: Seeds, store: Path, work: Path) -> dict[str, Path]:
    """One OCI layout per baseline (untimed), read once so the page cache is warm."""
    out = {}
    for v in BASELINES:
        lay = work / f"layout-{v}"
        subprocess.run(ociforge(store, seeds, "assemble", f"spark-{v}", "--oci-layout",
                                str(lay)), check=True)
        for blob in (lay / "blobs" / "sha256").iterdir():
            with open(blob, "rb") as f:
                while f.read(1 << 23):
                    pass
        out[v] = lay
    return out


def manifest(store: Path, name: str) -> dict[str, Any]:
    index = json.loads((store / "index.json").read_text())
    for m in index["manifests"]:
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == name:
            doc: dict[str, Any] = json.loads(
                (store / "blobs" / "sha256" / m["digest"].split(":")[1]).read_text())
            return doc
    raise SystemExit(f"{store}: no image {name}")


def variant_blobs(seeds: Seeds, store: Path, work: Path) -> list[Path]:
    """The iceberg variant's own layer blobs (those above the baseline's), as files
    for `crane append`: assembled once (untimed) from the store's cached layers."""
    subprocess.run(ociforge(store, seeds, "assemble", f"spark-{ONE}", "--with", "iceberg"),
                   check=True)
    base = manifest(store, f"spark-{ONE}")["layers"]
    layers = manifest(store, f"spark-{ONE}-iceberg")["layers"]
    if layers[:len(base)] != base:
        raise SystemExit(f"spark-{ONE}-iceberg does not stack on spark-{ONE}")
    paths = []
    for i, layer in enumerate(layers[len(base):]):
        p = work / f"variant-layer-{i}.tar.gz"
        os.link(store / "blobs" / "sha256" / layer["digest"].split(":")[1], p)
        paths.append(p)
    return paths


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def bench_crane(seeds: Seeds, scratch: Path, runs: int = 3) -> dict[str, Any]:
    store = scratch / "store"
    subprocess.run(["cp", "-al", str(seeds.store), str(store)], check=True)
    lays = layouts(seeds, store, scratch)
    blobs = variant_blobs(seeds, store, scratch)
    names = [f"spark-{v}" for v in BASELINES]
    t: dict[str, list[float]] = {k: [] for k in (
        "crane_push_one", "ociforge_push_one", "ociforge_push_one_nosbom",
        "crane_repush", "ociforge_repush", "ociforge_repush_nosbom",
        "crane_push_four", "ociforge_push_four", "ociforge_push_four_nosbom",
        "crane_append_mutate", "ociforge_assemble_with", "ociforge_assemble_with_push")}
    loads: list[dict[str, Any]] = []

    def timed(key: str, argvs: list[list[str]]) -> None:
        before = loadavg()
        (store / "ociforge" / "registry" / "blob-locations.json").unlink(missing_ok=True)
        cpu: dict[str, float] = {}
        reg_cpu0 = process_cpu(reg.proc.pid)
        t[key].append(locked_time(argvs, cpu=cpu))
        loads.append({"case": key, "before": before, "after": loadavg(),
                      "at": time.strftime("%H:%M:%S", time.gmtime()),
                      "seconds": round(t[key][-1], 3),
                      "client_cpu_s": round(cpu["client"], 3),
                      "registry_cpu_s": round(process_cpu(reg.proc.pid) - reg_cpu0, 3)})
        print(f"  {key:<30} {t[key][-1]:7.3f} s  cpu client {cpu['client']:.2f} s "
              f"registry {loads[-1]['registry_cpu_s']:.2f} s  load {before}", file=sys.stderr)

    sbom_first = {}
    for v in BASELINES:  # each image's SBOM, made once and cached per layer (untimed)
        sbom_first[v] = round(locked_time([ociforge(store, seeds, "sbom", f"spark-{v}",
                                                    "-o", os.devnull)]), 3)

    for i in range(runs):
        order = ("crane", "ociforge", "nosbom") if i % 2 == 0 else ("nosbom", "ociforge",
                                                                    "crane")
        for tool in order:
            reg = Registry(scratch / f"reg-{tool}-{i}")
            try:
                ref = f"{reg.host}/spark"
                if tool == "crane":
                    timed("crane_push_one", [crane("push", str(lays[ONE]), f"{ref}:{ONE}")])
                    timed("crane_repush", [crane("push", str(lays[ONE]), f"{ref}:{ONE}")])
                    timed("crane_append_mutate", [
                        crane("append", "-b", f"{ref}:{ONE}", "-t", f"{ref}:{ONE}-iceberg",
                              *[a for b in blobs for a in ("-f", str(b))]),
                        crane("mutate", f"{ref}:{ONE}-iceberg", "-l",
                              "io.ociforge.variant=iceberg", "-t", f"{ref}:{ONE}-iceberg")])
                else:
                    flag = ["--no-sbom"] if tool == "nosbom" else []
                    sfx = "_nosbom" if tool == "nosbom" else ""
                    push = ociforge(store, seeds, "push", f"spark-{ONE}", "--to", ref, *flag)
                    timed(f"ociforge_push_one{sfx}", [push])
                    timed(f"ociforge_repush{sfx}", [push])
                    if tool == "ociforge":
                        with_ = ociforge(store, seeds, "assemble", f"spark-{ONE}", "--with",
                                         "iceberg")
                        timed("ociforge_assemble_with", [with_])
                        timed("ociforge_assemble_with_push", [with_, ociforge(
                            store, seeds, "push", f"spark-{ONE}-iceberg", "--to", ref)])
            finally:
                reg.stop()
            reg = Registry(scratch / f"reg4-{tool}-{i}")
            try:
                ref = f"{reg.host}/spark"
                if tool == "crane":
                    timed("crane_push_four", [crane("push", str(lays[v]), f"{ref}:{v}")
                                              for v in BASELINES])
                else:
                    flag = ["--no-sbom"] if tool == "nosbom" else []
                    sfx = "_nosbom" if tool == "nosbom" else ""
                    timed(f"ociforge_push_four{sfx}", [ociforge(store, seeds, "push", *names,
                                                                "--to", ref, *flag)])
            finally:
                reg.stop()
    med = {k: _median(v) for k, v in t.items() if v}
    rows = [
        row("first push, spark-4.1.1", med["ociforge_push_one"], med["crane_push_one"], 0.8),
        row("first push, spark-4.1.1, --no-sbom", med["ociforge_push_one_nosbom"],
            med["crane_push_one"], 0.8),
        row("re-push, unchanged", med["ociforge_repush"], med["crane_repush"], None,
            abs_goal=0.5),
        row("re-push, unchanged, --no-sbom", med["ociforge_repush_nosbom"],
            med["crane_repush"], None, abs_goal=0.5),
        row("first push, four baselines", med["ociforge_push_four"], med["crane_push_four"],
            0.6),
        row("first push, four baselines, --no-sbom", med["ociforge_push_four_nosbom"],
            med["crane_push_four"], 0.6),
        row("iceberg variant: assemble --with (store)", med["ociforge_assemble_with"],
            med["crane_append_mutate"], None),
        row("iceberg variant: assemble --with + push", med["ociforge_assemble_with_push"],
            med["crane_append_mutate"], None),
    ]
    doc = {"benchmark": "crane", "title": "ociforge vs crane (issue 17, 2)", "runs": runs,
           "machine": machine(), "crane": subprocess.run(
               [str(CRANE), "version"], capture_output=True, text=True).stdout.strip(),
           "registry": "docker-registry (Debian, distribution 2.8) on 127.0.0.1",
           "rows": rows, "runs_s": {k: [round(x, 3) for x in v] for k, v in t.items()},
           "loads": loads, "sbom_first_s": sbom_first,
           "cpu_s": {k: {"client": _median([x["client_cpu_s"] for x in loads if x["case"] == k]),
                         "registry": _median([x["registry_cpu_s"] for x in loads
                                              if x["case"] == k])}
                     for k in t if t[k]}}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "crane.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n== ociforge vs crane\n{'case':<44}{'ociforge':>9}{'crane':>8}{'ratio':>7}  goal")
    for r in rows:
        print(f"{r['case']:<44}{r['ociforge_s']:>9.3f}{r['crane_s']:>8.3f}"
              f"{r['ratio']:>7.2f}  {r['goal_text']}")
    return doc


def row(case: str, o: float, c: float, goal: float | None,
        abs_goal: float | None = None) -> dict[str, Any]:
    met: bool | None = None
    text = "–"
    if goal is not None:
        met, text = o / c <= goal, f"≤ {goal}×"
    elif abs_goal is not None:
        met, text = o <= abs_goal, f"≤ {abs_goal} s"
    if met is not None:
        text += " met" if met else " MISSED"
    return {"case": case, "ociforge_s": o, "crane_s": c, "ratio": round(o / c, 3),
            "goal": goal, "abs_goal_s": abs_goal, "met": met, "goal_text": text}


def profile_pushes(seeds: Seeds, scratch: Path) -> dict[str, str]:
    """cProfile (all threads) of the first pushes (--no-sbom), one image and four, each
    to a fresh registry (untimed): results/profiles/crane-push-{one,four}.txt."""
    from profile_cli import profile_cli
    store = scratch / "profile-store"
    subprocess.run(["cp", "-al", str(seeds.store), str(store)], check=True)
    out = {}
    for label, names in (("one", [f"spark-{ONE}"]), ("four", [f"spark-{v}" for v in BASELINES])):
        reg = Registry(scratch / f"profile-reg-{label}")
        try:
            path = RESULTS_DIR / "profiles" / f"crane-push-{label}.txt"
            profile_cli(ociforge(store, seeds, "push", *names, "--to", f"{reg.host}/spark",
                                 "--no-sbom")[1:], path, top=30)
            out[label] = str(path.relative_to(RESULTS_DIR.parent.parent))
        finally:
            reg.stop()
    return out


def main(ns: Any) -> None:
    """`python bench/run.py crane`: setup (networked only when something is missing),
    then the four cases, `--runs` times each (median)."""
    from common import workdir
    from seeds_setup import prepare
    seeds = prepare(full=False)
    with workdir("crane") as scratch:
        doc = bench_crane(seeds, scratch, ns.runs)
        if any(r["met"] is False for r in doc["rows"]):
            doc["profiles"] = profile_pushes(seeds, scratch)
            (RESULTS_DIR / "crane.json").write_text(json.dumps(doc, indent=2) + "\n")


def markdown(doc: dict[str, Any]) -> str:
    """The docs/benchmarks.md section, from results/crane.json."""
    m = doc["machine"]
    loads = [x["before"][0] for x in doc["loads"]] + [x["after"][0] for x in doc["loads"]]
    lines = [
        f"Measured {m['date']} on {m['nproc']} × {m['cpu']}, crane {doc['crane']}, "
        f"{doc['registry']}; median of {doc['runs']} runs, contenders alternating, wall "
        f"time including process start; 1-min load average {min(loads)}–{max(loads)} "
        "across the timed commands (each one's before/after is in the JSON).", "",
        "| case | ociforge | crane | ratio | goal |", "|---|---:|---:|---:|---|"]
    for r in doc["rows"]:
        goal = r["goal_text"].replace("MISSED", "**missed**")
        lines.append(f"| {r['case']} | {r['ociforge_s']:.3f} s | {r['crane_s']:.3f} s | "
                     f"{r['ratio']:.2f} | {goal} |")
    lines += ["", "CPU seconds per timed command (medians; client = the tool's processes, "
              "registry = the docker-registry process during the command):", "",
              "| command | wall | client CPU | registry CPU |", "|---|---:|---:|---:|"]
    for key, c in doc.get("cpu_s", {}).items():
        wall = _median(doc["runs_s"][key])
        lines.append(f"| {key} | {wall:.3f} s | {c['client']:.2f} s | {c['registry']:.2f} s |")
    first = doc.get("sbom_first_s", {})
    if first:
        lines += ["", "The SBOMs were made once before timing (cached per layer in the store "
                  "afterwards): " + ", ".join(f"spark-{v} {s_:.2f} s" for v, s_ in
                                              first.items()) + "."]
    return "\n".join(lines) + "\n"
