#!/usr/bin/env python3
"""ociforge vs the tools a user would use instead, on the same data in the same run.

    python bench/run.py all            # every benchmark (~5 min on 2 cores)
    python bench/run.py gzip|zstd|archive|warm|rss
    python bench/run.py report         # Markdown table from bench/results/*.json

Each benchmark prints a table (ociforge, competitor, ratio = ociforge / competitor,
MB/s, target met) and writes bench/results/<name>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from bench_export import bench_archive, built_images
from bench_layers import bench_layer
from bench_rss import bench_rss, child_build
from bench_warm import bench_warm
from common import RESULTS_DIR, Row, machine, spark_tree

BENCHMARKS = ("gzip", "zstd", "archive", "warm", "rss")
ORDER = ("layer-gzip", "layer-zstd", "archive", "warm", "rss")


def run_selected(selected: list[str], runs: int, warm_runs: int) -> list[Row]:
    spark_tree()  # download/extract before anything is timed
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


def _met(row: dict[str, object]) -> str:
    if row["met"] is None:
        return "–"
    kind = "ratio" if row["ratio"] is not None else str(row["unit"])
    return f"{'yes' if row['met'] else '**no**'} (≤ {row['target']:g} {kind})"


def report() -> None:
    """The results as one Markdown table (pasted into docs/benchmarks.md)."""
    print("| benchmark | ociforge | value | competitor | value | ratio | MB/s | target met |")
    print("|---|---|---:|---|---:|---:|---:|---|")
    for name in ORDER:
        path = RESULTS_DIR / f"{name}.json"
        if not path.exists():
            continue
        for r in json.loads(path.read_text())["rows"]:
            unit = r["unit"]
            print(f"| {r['case']} | {r['ociforge']} | {_cell(r['ociforge_value'], 3)} {unit} "
                  f"| {r['competitor'] or '–'} | {_cell(r['competitor_value'], 3)} "
                  f"| {_cell(r['ratio'], 2)} | {_cell(r['mb_per_s'], 0)} | {_met(r)} |")
    print()
    print(json.dumps(machine(), indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("benchmark", choices=[*BENCHMARKS, "all", "report", "_build-layer"])
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--warm-runs", type=int, default=10, help="runs for `warm`")
    ns = parser.parse_args(argv)
    if ns.benchmark == "_build-layer":
        child_build(*ns.args)
        return 0
    if ns.benchmark == "report":
        report()
        return 0
    selected = list(BENCHMARKS) if ns.benchmark == "all" else [ns.benchmark]
    rows = run_selected(selected, ns.runs, ns.warm_runs)
    missed = [r for r in rows if r.met is False]
    print(f"\n{len(rows)} rows, {len(missed)} target(s) missed"
          + "".join(f"\n  missed: {r.case}: {r.ociforge}" for r in missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
