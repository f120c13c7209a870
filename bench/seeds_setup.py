"""Setup for the buildah and crane benchmarks (networked, untimed, done once).

Lays out under `~/.cache/ociforge-bench/seeds/` (OCIFORGE_BENCH_CACHE overrides):

- `wheelhouse/`: every wheel the Python layers' pip locks pin (python-deps-3.5, -4.1,
  and the one changed pin of scenario (e)), plus pip 26.3's own wheel, from PyPI with
  `pip download --require-hashes` (so the bytes are the locked ones), and a PEP 503
  `simple/` index over them for ociforge's `--index-url file://…`;
- `store/`: a hard-linked copy of the test cache's Spark store (never written in
  place: ociforge replaces files by rename), from which the Debian base is exported
  as `base.tar` (an OCI archive, for the Dockerfiles' `FROM oci-archive:`);
- `context/`: the Dockerfiles' build context: the pyspark sdists and JDBC .debs
  (hard links from ociforge's downloads cache: the same bytes ociforge builds from),
  the wheelhouse, the pip locks as requirements files, docker/spark/ (entrypoint,
  conf, examples) and the iceberg variant's jars by Maven file name;
- `project/`: a copy of this project (recipes, layers, locks, docker/) for ociforge,
  with the scenario edits made in copies of it at run time;
- the Go tools (crane) through scripts/build-go-tools.sh.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from common import CACHE_DIR, OCIFORGE, REPO_ROOT

SEEDS = CACHE_DIR / "seeds"
TEST_CACHE = Path(os.environ.get("OCIFORGE_TEST_CACHE")
                  or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                  / "ociforge-test")
TEST_STORE = TEST_CACHE / "spark-store"
DOWNLOADS = Path(os.environ.get("OCIFORGE_CACHE")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                 / "ociforge") / "downloads" / "sha256"
CRANE = TEST_CACHE / "go" / "bin" / "crane"

# The four baselines: Spark version -> Python layer line, py4j version.
BASELINES = {"3.5.7": ("3.5", "0.10.9.7"), "3.5.8": ("3.5", "0.10.9.7"),
             "4.1.0": ("4.1", "0.10.9.9"), "4.1.1": ("4.1", "0.10.9.9")}
# Scenario (e): one pin of the 4.1 Python layer moved (a small wheel, a middle layer).
PIN_FROM, PIN_TO = "zstandard==0.25.0", "zstandard==0.24.0"
PIP_WHEEL_PIN = "pip==26.3"
PLATFORM_ARGS = ["--python-version=3.11", "--implementation=cp", "--abi=cp311",
                 "--only-binary=:all:",
                 *[f"--platform=manylinux_2_{v}_x86_64" for v in range(36, 16, -1)],
                 "--platform=manylinux2014_x86_64", "--platform=manylinux2010_x86_64",
                 "--platform=manylinux1_x86_64"]
JDBC_DEBS = {
    "libpostgresql-jdbc-java_42.5.5-0+deb12u1_all.deb":
        "2092c08d8ff68fc59434fc32fa75714f38b74bfe4fd78f457765c73d47963832",
    "libmariadb-java_2.7.6-1_all.deb":
        "6be594486de3829457e7cf3430637b43043b0b14207807b89dc5ca9baf26ccb9",
}
ICEBERG_LOCKS = {"3.5": ["s3a-3.5", "iceberg-3.5"], "4.1": ["s3a-4.1", "iceberg-4.1"]}


@dataclass(frozen=True)
class Seeds:
    root: Path

    @property
    def wheelhouse(self) -> Path:
        return self.root / "wheelhouse"

    @property
    def index_url(self) -> str:
        return (self.wheelhouse / "simple").as_uri()

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def base_archive(self) -> Path:
        return self.root / "base.tar"

    @property
    def context(self) -> Path:
        return self.root / "context"

    @property
    def project(self) -> Path:
        return self.root / "project"


def sh(argv: list[str], **kw: object) -> None:
    print("+", " ".join(argv[:6]), "…" if len(argv) > 6 else "", file=sys.stderr)
    subprocess.run(argv, check=True, **kw)  # type: ignore[call-overload]


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def changed_lock(text: str, new_line: str) -> str:
    """The 4.1 lock with PIN_FROM's line replaced by `new_line`."""
    name = PIN_FROM.split("==")[0]
    return re.sub(rf"^{re.escape(name)}==\S+ .*$", new_line, text, flags=re.M)


def wheelhouse(seeds: Seeds) -> None:
    """Download the locked wheels (hash-checked) and write a simple index over them."""
    wh = seeds.wheelhouse
    wh.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "download", "-q",
           "--no-deps", "-d", str(wh)]
    for line in ("3.5", "4.1"):
        sh([*pip, "--require-hashes", *PLATFORM_ARGS, "-r",
            str(REPO_ROOT / "layers" / "locks" / f"python-deps-{line}.lock")])
    sh([*pip, *PLATFORM_ARGS, PIN_TO])
    sh([*pip, PIP_WHEEL_PIN])
    simple = wh / "simple"
    shutil.rmtree(simple, ignore_errors=True)
    by_project: dict[str, list[Path]] = {}
    for whl in sorted(wh.glob("*.whl")):
        project = re.sub(r"[-_.]+", "-", whl.name.split("-")[0]).lower()
        by_project.setdefault(project, []).append(whl)
    for project, files in by_project.items():
        links = "".join(
            f'<a href="../../{f.name}#sha256={hashlib.sha256(f.read_bytes()).hexdigest()}">'
            f"{f.name}</a>\n" for f in files)
        (simple / project).mkdir(parents=True)
        (simple / project / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")


def pin_line(seeds: Seeds) -> str:
    """The lock line for PIN_TO, from its wheel in the wheelhouse."""
    name, version = PIN_TO.split("==")
    whl = next(seeds.wheelhouse.glob(f"{name}-{version}-cp311-*.whl"))
    sha = hashlib.sha256(whl.read_bytes()).hexdigest()
    return f"{PIN_TO} --hash=sha256:{sha}  # {whl.name}"


def store_copy(seeds: Seeds) -> None:
    if not (seeds.store / "index.json").exists():
        shutil.rmtree(seeds.store, ignore_errors=True)
        sh(["cp", "-al", str(TEST_STORE), str(seeds.store)])


def project_copy(seeds: Seeds) -> None:
    shutil.rmtree(seeds.project, ignore_errors=True)
    for part in ("layers", "recipes", "docker"):
        shutil.copytree(REPO_ROOT / part, seeds.project / part, symlinks=True)
    (seeds.project / "recipes" / "bench-base.yaml").write_text(
        "images:\n  bench-debian-base:\n    layers: [debian-base]\n")


def base_archive(seeds: Seeds) -> None:
    """The Debian base as an OCI archive, exported by ociforge from the store."""
    if seeds.base_archive.exists():
        return
    part = seeds.base_archive.with_suffix(".part.tar")
    sh([OCIFORGE, "--store", str(seeds.store), "--project", str(seeds.project), "-q",
        "assemble", "bench-debian-base", "--archive", str(part)])
    part.replace(seeds.base_archive)


def maven_jars(lock: Path) -> list[tuple[str, str]]:
    """(file name, sha256) of each artifact of a Maven lock."""
    out = []
    for line in lock.read_text().splitlines():
        m = re.match(r"^([^#\s:]+):([^:\s]+):(\S+) sha256:([0-9a-f]{64})", line)
        if m:
            out.append((f"{m.group(2)}-{m.group(3)}.jar", m.group(4)))
    return out


def context(seeds: Seeds) -> None:
    ctx = seeds.context
    shutil.rmtree(ctx, ignore_errors=True)
    ctx.mkdir(parents=True)
    spark_lock = (REPO_ROOT / "layers" / "locks" / "spark-dist.lock").read_text()
    for version in BASELINES:
        sha = re.search(rf"pyspark-{re.escape(version)}\.tar\.gz sha256:([0-9a-f]{{64}})",
                        spark_lock)
        assert sha, version
        _link(DOWNLOADS / sha.group(1), ctx / "dist" / f"pyspark-{version}.tar.gz")
    for name, sha in JDBC_DEBS.items():
        _link(DOWNLOADS / sha, ctx / "debs" / name)
    for whl in seeds.wheelhouse.glob("*.whl"):
        _link(whl, ctx / "wheels" / whl.name)
    locks = REPO_ROOT / "layers" / "locks"
    for line in ("3.5", "4.1"):
        shutil.copy(locks / f"python-deps-{line}.lock", ctx / f"requirements-{line}.txt")
    shutil.copytree(REPO_ROOT / "docker" / "spark", ctx / "spark", symlinks=True)
    for version, (line, _py4j) in BASELINES.items():
        jars = ctx / "iceberg" / version
        for name in [*ICEBERG_LOCKS[line], f"hadoop-cloud-{version}"]:
            for filename, sha in maven_jars(locks / f"{name}.lock"):
                _link(DOWNLOADS / sha, jars / filename)
    for dockerfile in (REPO_ROOT / "bench" / "dockerfiles").glob("Dockerfile*"):
        shutil.copy(dockerfile, ctx / dockerfile.name)


def go_tools() -> None:
    if not CRANE.exists():
        sh(["bash", str(REPO_ROOT / "scripts" / "build-go-tools.sh")])


def prepare(full: bool = True) -> Seeds:
    """Everything the timed parts need; networked only where something is missing."""
    seeds = Seeds(SEEDS)
    seeds.root.mkdir(parents=True, exist_ok=True)
    if full or not seeds.wheelhouse.exists():
        wheelhouse(seeds)
    store_copy(seeds)
    project_copy(seeds)
    base_archive(seeds)
    context(seeds)
    go_tools()
    return seeds


if __name__ == "__main__":
    print(prepare().root)
