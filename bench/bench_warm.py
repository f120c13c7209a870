"""Benchmark 4: `ociforge assemble NAME` as a process when every layer is cached.

Two images from the same project: `spark` (an archive layer pinned by sha256 plus a
tiny files layer; the cache key needs no file hashing) and `big` (files layers,
whose cache key is the digest of every source file, so a warm run re-reads them).
The console script is run directly (not through a pyenv shim). Where the target is
missed, `-X importtime` and cProfile summaries say where the time goes.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from dataclasses import dataclass

from bench_export import Images
from common import Contender, Row, print_table, race, run, write_results
from project import ociforge, parse_json

TARGET_S = 0.5
PROFILE_LINES = 22


@dataclass(frozen=True)
class ImportTime:
    name: str
    self_us: int
    cumulative_us: int
    depth: int


def _assemble(img: Images, name: str, seconds: list[float]) -> Contender:
    argv = ociforge(img.store, img.project, "--json", "assemble", name)

    def action() -> None:
        report = parse_json(run(argv).stdout)
        assert not report["layers"]["built"], "layers should all be cached"
        seconds.append(report["seconds"])

    return Contender(f"assemble {name}", action)


def import_times(img: Images, name: str) -> list[ImportTime]:
    argv = [sys.executable, "-X", "importtime",
            *ociforge(img.store, img.project, "-q", "assemble", name)]
    err = run(argv).stderr
    out = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cum_us, mod = line.removeprefix("import time:").split("|")
        depth = (len(mod) - len(mod.lstrip()) - 1) // 2
        out.append(ImportTime(mod.strip(), int(self_us), int(cum_us), depth))
    return out


def top_imports(times: list[ImportTime], max_depth: int = 3, n: int = 15) -> list[ImportTime]:
    shallow = [t for t in times if t.depth <= max_depth]
    return sorted(shallow, key=lambda t: -t.cumulative_us)[:n]


def cprofile(img: Images, name: str) -> list[str]:
    argv = [sys.executable, "-m", "cProfile", "-s", "cumulative",
            *ociforge(img.store, img.project, "-q", "assemble", name)]
    out = subprocess.run(argv, check=True, text=True, capture_output=True).stdout
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return lines[start - 2:start + PROFILE_LINES]


def _bare_interpreter() -> None:
    run([sys.executable, "-c", "pass"])


def _contenders(img: Images, seconds: dict[str, list[float]]) -> list[Contender]:
    return [_assemble(img, "spark", seconds.setdefault("spark", [])),
            _assemble(img, "big", seconds.setdefault("big", [])),
            Contender("python -c pass", _bare_interpreter)]


def _rows(contenders: list[Contender], seconds: dict[str, list[float]]) -> list[Row]:
    spark, big, python = contenders
    return [
        Row("warm assemble", spark.name, spark.median, None, None, target=TARGET_S,
            note=f"in-command {statistics.median(seconds['spark']):.3f} s; archive + files"),
        Row("warm assemble", big.name, big.median, None, None, target=TARGET_S,
            note=f"in-command {statistics.median(seconds['big']):.3f} s; files layers rehashed"),
        Row("warm assemble", python.name, python.median, None, None,
            note="interpreter start alone, reference"),
    ]


def _print_profiles(imports: list[ImportTime], profiles: dict[str, list[str]]) -> None:
    print("\nslowest imports (cumulative µs, depth ≤ 3) during `assemble spark`:")
    for t in imports:
        print(f"  {t.cumulative_us:>8} {t.self_us:>8}  {'  ' * t.depth}{t.name}")
    for name, lines in profiles.items():
        print(f"\ncProfile of `assemble {name}` (top by cumulative time):")
        print("\n".join(lines))


def bench_warm(img: Images, runs: int) -> list[Row]:
    seconds: dict[str, list[float]] = {}
    contenders = _contenders(img, seconds)
    race(contenders, runs)
    rows = _rows(contenders, seconds)
    imports = top_imports(import_times(img, "spark"))
    profiles = {name: cprofile(img, name) for name in ("spark", "big")}
    title = "warm assemble (all layers cached), wall time of one process"
    print_table(title, rows)
    if not all(r.met for r in rows if r.target is not None):
        _print_profiles(imports, profiles)
    write_results("warm", title, rows, contenders, {
        "in_command_s": seconds,
        "import_times_us": [vars(t) for t in imports],
        "cprofile": profiles,
    })
    return rows
