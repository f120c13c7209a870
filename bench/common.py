"""Shared benchmark plumbing: test data, timing, machine facts, result tables and JSON.

Timing rule for every comparison: the data is read once untimed (warm page cache),
then each contender runs `--runs` times, interleaved (A, B, A, B, …) so drift in disk
or CPU state hurts both alike, and the median is reported. Before each timed run the
previous output is deleted and `sync` runs (untimed), so no earlier write-back competes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
CACHE_DIR = Path(os.environ.get("OCIFORGE_BENCH_CACHE", Path.home() / ".cache" / "ociforge-bench"))
TMP_PARENT = Path(os.environ.get("OCIFORGE_BENCH_TMP", tempfile.gettempdir()))
# The matrix declares linux/amd64 and linux/arm64; every comparison here is with tools
# building one platform (the host's), so ociforge builds that one too unless the caller
# asks otherwise.
os.environ.setdefault("OCIFORGE_PLATFORMS", "linux/amd64")

SPARK_SDIST = "pyspark-4.1.1.tar.gz"
SPARK_SHA256 = "77f78984aa84fbe865c717dd37b49913b4e5c97d76ef6824f932f1aefa6621ec"
SIMPLE_INDEX = "https://pypi.org/simple/pyspark/"

# The console script next to this interpreter, not a shim (pyenv's bash shim alone adds
# ~0.1 s per call, which is the host's cost, not ociforge's).
OCIFORGE = str(Path(sys.executable).with_name("ociforge"))

TAR_CMD = "tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - -C {src} ."


# -- test data ----------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _sdist_url() -> str:
    """The sdist's URL from PyPI's simple API (PEP 691 JSON)."""
    req = urllib.request.Request(
        SIMPLE_INDEX, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        files = json.load(resp)["files"]
    return next(f["url"] for f in files if f["filename"] == SPARK_SDIST)


def spark_sdist() -> Path:
    """The pyspark 4.1.1 sdist, downloaded once into the cache and checked by sha256."""
    path = CACHE_DIR / SPARK_SDIST
    if path.exists() and sha256_file(path) == SPARK_SHA256:
        return path
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    print(f"downloading {SPARK_SDIST} (~455 MB) into {CACHE_DIR}", file=sys.stderr)
    with urllib.request.urlopen(_sdist_url(), timeout=600) as resp, open(part, "wb") as out:
        shutil.copyfileobj(resp, out, 1 << 20)
    if sha256_file(part) != SPARK_SHA256:
        part.unlink()
        raise SystemExit(f"{SPARK_SDIST}: sha256 mismatch (expected {SPARK_SHA256})")
    part.replace(path)
    return path


def spark_tree() -> Path:
    """The extracted sdist (the Spark 4.1.1 distribution tree, ~477 MB, mostly jars)."""
    root = CACHE_DIR / "pyspark-4.1.1"
    marker = CACHE_DIR / ".pyspark-4.1.1.extracted"
    if marker.exists() and root.is_dir():
        return root
    sdist = spark_sdist()
    shutil.rmtree(root, ignore_errors=True)
    print(f"extracting {sdist.name}", file=sys.stderr)
    with tarfile.open(sdist) as tar:
        tar.extractall(CACHE_DIR, filter="data")
    marker.touch()
    return root


@dataclass(frozen=True)
class TreeStats:
    files: int
    bytes: int


def tree_stats(root: Path) -> TreeStats:
    files = size = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                files += 1
                size += p.stat().st_size
    return TreeStats(files, size)


def warm_cache(root: Path) -> None:
    """Read every file once so each contender starts from the same warm page cache."""
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                with open(p, "rb") as f:
                    while f.read(1 << 20):
                        pass


@contextmanager
def workdir(tag: str) -> Iterator[Path]:
    """A scratch directory on the benchmark filesystem, removed afterwards."""
    TMP_PARENT.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"ociforge-bench-{tag}-", dir=TMP_PARENT))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def reset_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# -- running and timing -------------------------------------------------------------------

def sh(cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a shell pipeline under bash with pipefail; raise on failure."""
    return subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, text=True,
                          capture_output=True, **kw)


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True)


@dataclass
class Contender:
    """One way of doing the job: `action` is timed; `reset` (untimed) runs before it."""

    name: str
    action: Callable[[], None]
    reset: Callable[[], None] = lambda: None
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def race(contenders: list[Contender], runs: int) -> None:
    """Interleaved runs; each contender's `times` gets one entry per run."""
    for i in range(runs):
        for c in contenders:
            c.reset()
            os.sync()  # no write-back of an earlier run's output competes with this one
            t0 = time.perf_counter()
            c.action()
            c.times.append(time.perf_counter() - t0)
            print(f"  run {i + 1}/{runs} {c.name:<34} {c.times[-1]:7.3f} s", file=sys.stderr)
        for c in contenders:
            c.reset()


# -- machine facts ------------------------------------------------------------------------

def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, text=True, capture_output=True, check=False)
    except OSError:
        return "not installed"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) \
        else ""


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def mem_total_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def machine() -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "mem_gib": mem_total_gib(),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "tools": {
            "tar": _first_line(["tar", "--version"]),
            "pigz": _first_line(["pigz", "--version"]),
            "zstd": _first_line(["zstd", "--version"]),
            "skopeo": _first_line(["skopeo", "--version"]),
        },
    }


# -- results ------------------------------------------------------------------------------

@dataclass
class Row:
    """ociforge vs one competitor (or vs an absolute target, where competitor is None)."""

    case: str
    ociforge: str
    ociforge_value: float
    competitor: str | None
    competitor_value: float | None
    unit: str = "s"
    target: float | None = None  # on the ratio, or on the value when there is no competitor
    mb_per_s: float | None = None
    competitor_mb_per_s: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.competitor_value is None:
            return None
        return self.ociforge_value / self.competitor_value

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        value = self.ratio if self.ratio is not None else self.ociforge_value
        return value <= self.target

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _met(row: Row) -> str:
    if row.met is None:
        return "-"
    op = "ratio" if row.ratio is not None else row.unit
    return f"{'yes' if row.met else 'NO'} (≤ {row.target:g} {op})"


def print_table(title: str, rows: list[Row]) -> None:
    head = (f"{'case':<22} {'ociforge':<22} {'value':>8} {'MB/s':>5} {'competitor':<22} "
            f"{'value':>8} {'MB/s':>5} {'ratio':>5}  target met")
    print(f"\n== {title}\n{head}\n{'-' * len(head)}")
    for r in rows:
        print(f"{r.case:<22} {r.ociforge:<22} {_fmt(r.ociforge_value):>8} "
              f"{_fmt(r.mb_per_s, 0):>5} {r.competitor or '-':<22} "
              f"{_fmt(r.competitor_value):>8} {_fmt(r.competitor_mb_per_s, 0):>5} "
              f"{_fmt(r.ratio, 2):>5}  {_met(r)}")


def write_results(name: str, title: str, rows: list[Row], contenders: list[Contender],
                  extra: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    doc = {
        "benchmark": name,
        "title": title,
        "machine": machine(),
        "rows": [r.to_json() for r in rows],
        "runs_s": {c.name: [round(t, 4) for t in c.times] for c in contenders},
        **extra,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {path.relative_to(REPO_ROOT)}")
    return path


def mb(n: float) -> float:
    return n / 1e6


def write_doc(name: str, doc: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """A suite's result document as bench/results/NAME.json, and its table on stdout."""
    path = REPO_ROOT / "bench" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(markdown(doc))
