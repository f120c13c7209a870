#!/usr/bin/env python3
"""ociforge vs the tools a user would use instead, on the same data in the same run.

    python bench/run.py all            # every benchmark (~5 min on 2 cores)
    python bench/run.py gzip|zstd|archive|warm|rss
    python bench/run.py buildah|crane  # issue 17 (SUITES below; `setup` prepares them)
    python bench/run.py report         # Markdown table from bench/results/*.json

Each benchmark prints a table (ociforge, competitor, ratio = ociforge / competitor,
MB/s, target met) and writes bench/results/<name>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench_export import bench_archive, built_images
from bench_layers import bench_layer
from bench_rss import bench_rss, child_build
from bench_warm import bench_warm
from common import REPO_ROOT, RESULTS_DIR, Row, spark_tree

BENCHMARKS = ("gzip", "zstd", "archive", "warm", "rss")
ORDER = ("layer-gzip", "layer-zstd", "archive", "warm", "rss")

# Benchmarks with their own setup and results file, run by `all` after the ones above:
# name -> "module:function", the function taking the parsed arguments. One line each.
SUITES: dict[str, str] = {
    "buildah": "bench_buildah:main",  # issue 17, 1: Dockerfiles with buildah bud --layers
    "crane": "bench_crane:main",  # issue 17, 2: crane push / append vs ociforge
    "repush-sbom": "repush_sbom:suite",  # issue 17, 4: re-push with the SBOM
    "podstart": "podstart:suite",  # issue 17, 3: containerd fetch + unpack (root)
}


def regenerate_docs(doc_path: Path = REPO_ROOT / "docs" / "benchmarks.md",
                    results_dir: Path = RESULTS_DIR) -> None:
    """Each suite's section of docs/benchmarks.md, between `<!-- bench:NAME -->` and
    `<!-- /bench:NAME -->`, rewritten by the suite module's `markdown(results)`."""
    text = doc_path.read_text()
    for name, target in SUITES.items():
        results = results_dir / f"{name}.json"
        begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        if not results.exists() or begin not in text:
            continue
        module = importlib.import_module(target.split(":")[0])
        body = module.markdown(json.loads(results.read_text()))
        head, rest = text.split(begin, 1)
        text = f"{head}{begin}\n{body}{end}{rest.split(end, 1)[1]}"
    doc_path.write_text(text)


def run_suite(name: str, ns: argparse.Namespace) -> None:
    module, func = SUITES[name].split(":")
    getattr(importlib.import_module(module), func)(ns)


def warn_if_busy() -> None:
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load:.1f} on {os.cpu_count()} CPUs; other work will "
              "skew the timings (ratios from one run stay comparable)", file=sys.stderr)


def run_selected(selected: list[str], runs: int, warm_runs: int) -> list[Row]:
    spark_tree()  # download/extract before anything is timed
    warn_if_busy()
    rows: list[Row] = []
    for enc in ("gzip", "zstd"):
        if enc in selected:
            rows += bench_layer(enc, runs)
    if "archive" in selected or "warm" in selected:
        with built_images() as img:
            if "archive" in selected:
                rows += bench_archive(img, runs)
            if "warm" in selected:
                rows += bench_warm(img, warm_runs)
    if "rss" in selected:
        rows += bench_rss()
    return rows


def _cell(v: float | None, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _met(row: dict[str, Any]) -> str:
    if row["met"] is None:
        return "–"
    kind = "ratio" if row["ratio"] is not None else str(row["unit"])
    return f"{'yes' if row['met'] else '**no**'} (≤ {row['target']:g} {kind})"


def _md(text: str | None) -> str:
    return "–" if not text else text.replace("|", "\\|")


def _md_row(r: dict[str, Any]) -> str:
    return (f"| {r['case']} | {_md(r['ociforge'])} | {_cell(r['ociforge_value'], 3)} {r['unit']} "
            f"| {_cell(r['mb_per_s'], 0)} | {_md(r['competitor'])} "
            f"| {_cell(r['competitor_value'], 3)} | {_cell(r.get('competitor_mb_per_s'), 0)} "
            f"| {_cell(r['ratio'], 2)} | {_met(r)} |")


def report() -> None:
    """The results as one Markdown table (pasted into docs/benchmarks.md)."""
    print("| benchmark | ociforge | value | MB/s | competitor | value | MB/s | ratio "
          "| target met |")
    print("|---|---|---:|---:|---|---:|---:|---:|---|")
    machines = {}
    for name in ORDER:
        path = RESULTS_DIR / f"{name}.json"
        if path.exists():
            doc = json.loads(path.read_text())
            machines[name] = doc["machine"]
            for r in doc["rows"]:
                print(_md_row(r))
    print()
    for name, m in machines.items():
        print(f"{name}: {m['date']}, {m['nproc']} × {m['cpu']}, "
              f"load average {m.get('loadavg_1_5_15')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("benchmark", choices=[*BENCHMARKS, *SUITES, "all", "setup", "report",
                                              "docs", "_build-layer"])
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=5, help="runs per contender (median)")
    parser.add_argument("--warm-runs", type=int, default=10, help="runs for `warm`")
    parser.add_argument("--scenarios", default="abcdefg", help="buildah: scenarios a-g to run")
    ns = parser.parse_args(argv)
    if ns.benchmark == "_build-layer":
        child_build(*ns.args)
        return 0
    if ns.benchmark == "report":
        report()
        return 0
    if ns.benchmark == "docs":  # docs/benchmarks.md sections of SUITES from results/
        regenerate_docs()
        return 0
    if ns.benchmark == "setup":  # networked: wheels, Go tools, the build context
        importlib.import_module("seeds_setup").prepare()
        return 0
    if ns.benchmark in SUITES:
        run_suite(ns.benchmark, ns)
        return 0
    selected = list(BENCHMARKS) if ns.benchmark == "all" else [ns.benchmark]
    rows = run_selected(selected, ns.runs, ns.warm_runs)
    if ns.benchmark == "all":
        for name in SUITES:
            run_suite(name, ns)
    missed = [r for r in rows if r.met is False]
    print(f"\n{len(rows)} rows, {len(missed)} target(s) missed"
          + "".join(f"\n  missed: {r.case}: {r.ociforge}" for r in missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
