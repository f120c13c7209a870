"""The real Spark baseline images, run in containerd as a kubelet would run them.

The images are built from PyPI and Debian by `scripts/prebuild-spark.sh` (run by
scripts/test.sh before pytest) into a cached store; here they are assembled again
from that cache with the network closed (index and mirror point at 127.0.0.1:9),
exported as archives, imported with `ctr images import` and run with `ctr run`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociforge.checks.containerd import Containerd
from ociforge.store import Store

from conftest import TEST_CACHE, run_cli

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
SPARK_STORE = TEST_CACHE / "spark-store"
VERSIONS = ["4.1.1", "4.1.0", "3.5.8", "3.5.7"]
# The newest releases on the day: the same checks, in the same `ociforge test` run
# (their archives are not written: the seeds' four show the archive path).
NEWEST = ["4.3.0", "4.1.4", "3.5.9"]
ALL = VERSIONS + NEWEST
OFFLINE = {"OCIFORGE_INDEX_URL": "http://127.0.0.1:9/simple",
           "OCIFORGE_DEBIAN_MIRROR": "http://127.0.0.1:9/debian",
           "OCIFORGE_DEBIAN_SECURITY_MIRROR": "http://127.0.0.1:9/debian-security",
           "OCIFORGE_DEBIAN_SNAPSHOT": "http://127.0.0.1:9/{archive}/{timestamp}/"}


def _assemble(*args: str | Path) -> dict:
    r = run_cli("assemble", *args, "--json", store=SPARK_STORE, project=PROJECT, env=OFFLINE)
    if r.rc != 0:
        pytest.fail(f"assembling from the cache failed ({r.err.strip()}); run "
                    "scripts/prebuild-spark.sh first (it downloads from PyPI and Debian)")
    return r.json()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ocf-spark-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def archives(workdir: Path) -> dict[str, Path]:
    """All four images assembled from the cache, one archive each."""
    out = {}
    for v in VERSIONS:
        out[v] = workdir / f"spark-{v}.tar"
        report = _assemble(f"spark-{v}", "--archive", out[v])
        assert report["layers"]["built"] == [], "everything should come from the cache"
    return out


@pytest.fixture(scope="module")
def check_report(workdir: Path, archives: dict[str, Path],
                 shared_containerd: Containerd) -> dict:
    """`ociforge test` on the seven images: native, structure and runtime checks (in
    the session's containerd: what other modules imported is not imported again)."""
    _assemble(*(f"spark-{v}" for v in NEWEST))
    r = run_cli("test", *(f"spark-{v}" for v in ALL), "--json", "--report-dir",
                workdir / "reports", "--containerd", str(shared_containerd.socket),
                store=SPARK_STORE, project=PROJECT, env=OFFLINE, timeout=3000)
    assert r.out, r.err
    report = r.json()
    keep = os.environ.get("OCIFORGE_KEEP_REPORT")
    if keep:  # how docs/test-report-example.md is produced
        shutil.copytree(workdir / "reports", keep, dirs_exist_ok=True)
    failures = [x for x in report["results"] if x["status"] != "passed"]
    assert r.rc == 0 and not failures, failures
    return report


def ref(version: str, uid: bool = False) -> str:
    return f"docker.io/library/spark:{version}" + ("-uid12345" if uid else "")


# -- what the images are ----------------------------------------------------------------

def _manifest_and_config(name: str) -> tuple[dict, dict]:
    img = Store(SPARK_STORE).image(name)
    return img.manifest, img.config


def test_layers_are_shared_across_versions(archives: dict[str, Path]) -> None:
    _assemble(*(f"spark-{v}" for v in NEWEST))
    layers = {v: [d["digest"] for d in _manifest_and_config(f"spark-{v}")[0]["layers"]]
              for v in ALL}
    # Base first, entrypoint last, in every image; base, JDBC and entrypoint are one blob.
    for position in (0, 1, 4):
        assert len({layers[v][position] for v in ALL}) == 1
    # Python dependencies are shared within a Spark line (4.3 takes 4.1's), distributions
    # never.
    assert layers["4.1.1"][2] == layers["4.1.0"][2] != layers["3.5.8"][2] == layers["3.5.7"][2]
    assert layers["4.3.0"][2] == layers["4.1.4"][2] == layers["4.1.1"][2]
    assert layers["3.5.9"][2] == layers["3.5.8"][2]
    assert len({layers[v][3] for v in ALL}) == 7


def test_second_version_rebuilds_only_what_differs(archives: dict[str, Path]) -> None:
    store = Store(SPARK_STORE)
    dist = next(r for r in store.iter_records() if r.name == "spark-dist-4.1.0")
    store.drop_record(dist.input_key)
    report = _assemble("spark-4.1.0")
    assert report["layers"]["built"] == ["spark-dist-4.1.0"]
    assert sorted(report["layers"]["reused"]) == ["debian-base", "jdbc-drivers",
                                                  "python-deps-4.1", "spark-entrypoint"]
    # Rebuilt from the same pinned sdist: the same bytes, the same image.
    rebuilt = next(r for r in store.iter_records() if r.name == "spark-dist-4.1.0")
    assert rebuilt.diff_id == dist.diff_id


def test_image_config(archives: dict[str, Path]) -> None:
    manifest, config = _manifest_and_config("spark-4.1.1")
    c = config["config"]
    assert c["User"] == "185:185"
    assert c["Entrypoint"] == ["/usr/bin/tini", "--", "/opt/entrypoint.sh"]
    assert c["WorkingDir"] == "/opt/spark/work-dir"
    env = dict(e.split("=", 1) for e in c["Env"])
    assert env["SPARK_HOME"] == "/opt/spark"
    assert env["JAVA_HOME"] == "/usr/lib/jvm/java-17-openjdk-amd64"
    assert env["PATH"].startswith("/opt/spark/bin:")
    assert "py4j-0.10.9.9-src.zip" in env["PYTHONPATH"]
    assert c["Labels"]["org.opencontainers.image.version"] == "4.1.1"
    assert c["Labels"]["io.ociforge.spark.version"] == "4.1.1"
    assert "org.opencontainers.image.source" in c["Labels"]
    assert manifest["annotations"]["org.opencontainers.image.version"] == "4.1.1"


# -- running them (through `ociforge test`) ---------------------------------------------

def _result(report: dict, image: str, name: str) -> dict:
    hits = [r for r in report["results"] if r["image"] == image and r["name"] == name]
    assert len(hits) == 1, f"{image}: no single result {name!r}"
    return hits[0]


RUNTIME = ["spark-submit --version", "pi job", "pi job as 12345:0 read-only", "python imports",
           "python imports as 12345:0 read-only", "java trust store", "history server",
           "unknown mode refused"]
NATIVE = ["user non-root", "no setuid/setgid files", "no world-writable paths", "no secrets",
          "writable /opt/spark/work-dir", "file /opt/spark/jars/postgresql-42.5.5.jar",
          "file /opt/entrypoint.sh", "Metadata Test"]


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("check", RUNTIME + NATIVE)
def test_image_passes(check_report: dict, version: str, check: str) -> None:
    result = _result(check_report, f"spark-{version}", check)
    assert result["status"] == "passed", result


@pytest.mark.parametrize("version", ["4.3.0", "4.1.4", "4.1.1", "4.1.0"])
def test_connect_server_accepts_a_pyspark_client(check_report: dict, version: str) -> None:
    assert _result(check_report, f"spark-{version}", "connect server")["status"] == "passed"


def test_report_files(check_report: dict, workdir: Path) -> None:
    reports = workdir / "reports"
    assert json.loads((reports / "report.json").read_text())["summary"]["failed"] == 0
    assert (reports / "junit.xml").read_text().startswith("<?xml")
    assert "metadataTest" in (reports / "spark-4.1.1.cst.yaml").read_text()


def test_sizes_recorded(archives: dict[str, Path]) -> None:
    """spark-4.1.1 stays under 1.2 GB uncompressed while carrying pandas, pyarrow, grpcio."""
    r = run_cli("inspect", "spark-4.1.1", "--json", store=SPARK_STORE)
    info = r.json()
    store = Store(SPARK_STORE)
    records = [layer.record for layer in store.image("spark-4.1.1").layers]
    assert all(records)
    uncompressed = sum(rec.size for rec in records if rec)
    assert uncompressed < 1_200_000_000
    assert info["size"] < uncompressed
    assert os.path.getsize(archives["4.1.1"]) >= info["size"]
