"""The real Spark baseline images, run in containerd as a kubelet would run them.

The images are built from PyPI and Debian by `scripts/prebuild-spark.sh` (run by
scripts/test.sh before pytest) into a cached store; here they are assembled again
from that cache with the network closed (index and mirror point at 127.0.0.1:9),
exported as archives, imported with `ctr images import` and run with `ctr run`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociforge.outputs import load_images
from ociforge.outputs.archive import write_archive
from ociforge.store import Store

from conftest import TEST_CACHE, run_cli
from containerd import Containerd, can_run_containers
from spark_runtime import SparkRunner, derive_with_user, free_port, wait_http, wait_port

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
SPARK_STORE = TEST_CACHE / "spark-store"
VERSIONS = ["4.1.1", "4.1.0", "3.5.8", "3.5.7"]
OFFLINE = {"OCIFORGE_INDEX_URL": "http://127.0.0.1:9/simple",
           "OCIFORGE_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"}


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
def runner(workdir: Path, archives: dict[str, Path]) -> Iterator[SparkRunner]:
    reason = can_run_containers()
    if reason:
        pytest.skip(reason)
    ctd = Containerd(workdir / "ctd").start()
    try:
        for v, archive in archives.items():
            p = ctd.ctr("images", "import", str(archive), timeout=600)
            assert p.returncode == 0, p.stderr
            assert f"docker.io/library/spark:{v}" in p.stdout
        # The same layers with User 12345:0, for the arbitrary-uid runs.
        store = Store(SPARK_STORE)
        for v in ("4.1.1", "3.5.7"):
            derive_with_user(store, f"spark-{v}", "12345:0", f"spark-{v}-uid12345",
                             f"spark:{v}-uid12345")
            out = workdir / f"spark-{v}-uid.tar"
            write_archive(store, load_images(store, [f"spark-{v}-uid12345"]), out)
            p = ctd.ctr("images", "import", str(out), timeout=600)
            assert p.returncode == 0, p.stderr
        yield SparkRunner(ctd, workdir)
    finally:
        ctd.stop()


def ref(version: str, uid: bool = False) -> str:
    return f"docker.io/library/spark:{version}" + ("-uid12345" if uid else "")


# -- what the images are ----------------------------------------------------------------

def _manifest_and_config(name: str) -> tuple[dict, dict]:
    store = Store(SPARK_STORE)
    manifest = store.read_json(store.tags()[name]["digest"])
    return manifest, store.read_json(manifest["config"]["digest"])


def test_layers_are_shared_across_versions(archives: dict[str, Path]) -> None:
    layers = {v: [d["digest"] for d in _manifest_and_config(f"spark-{v}")[0]["layers"]]
              for v in VERSIONS}
    # Base first, entrypoint last, in every image; base, JDBC and entrypoint are one blob.
    for position in (0, 1, 4):
        assert len({layers[v][position] for v in VERSIONS}) == 1
    # Python dependencies are shared within a Spark line, distributions never.
    assert layers["4.1.1"][2] == layers["4.1.0"][2] != layers["3.5.8"][2] == layers["3.5.7"][2]
    assert len({layers[v][3] for v in VERSIONS}) == 4


def test_second_version_rebuilds_only_what_differs(archives: dict[str, Path]) -> None:
    store = Store(SPARK_STORE)
    dist = next(r for r in store.iter_records() if r["name"] == "spark-dist-4.1.0")
    store.drop_record(dist["input_key"])
    report = _assemble("spark-4.1.0")
    assert report["layers"]["built"] == ["spark-dist-4.1.0"]
    assert sorted(report["layers"]["reused"]) == ["debian-base", "jdbc-drivers",
                                                  "python-deps-4.1", "spark-entrypoint"]
    # Rebuilt from the same pinned sdist: the same bytes, the same image.
    rebuilt = next(r for r in store.iter_records() if r["name"] == "spark-dist-4.1.0")
    assert rebuilt["diff_id"] == dist["diff_id"]


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


# -- running them -----------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_spark_submit_version(runner: SparkRunner, version: str) -> None:
    p = runner.run(ref(version), ["/opt/entrypoint.sh", "spark-submit", "--version"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert re.search(rf"version {re.escape(version)}\b", p.stdout + p.stderr)


def _pi(p) -> float:  # type: ignore[no-untyped-def]
    assert p.returncode == 0, p.stderr[-3000:]
    m = re.search(r"PI=(\d+\.\d+)", p.stdout)
    assert m, p.stdout[-2000:]
    return float(m.group(1))


@pytest.mark.parametrize("version", VERSIONS)
def test_pi_job_as_uid_185(runner: SparkRunner, version: str) -> None:
    p = runner.run(ref(version), ["/opt/entrypoint.sh", "spark-submit", "--master", "local[2]",
                                  "/opt/smoke/pi.py"])
    assert abs(_pi(p) - 3.14) < 0.1


@pytest.mark.parametrize("version", ["4.1.1", "3.5.7"])
def test_pi_job_as_arbitrary_uid_read_only_root(runner: SparkRunner, version: str) -> None:
    p = runner.run(ref(version, uid=True),
                   ["/opt/entrypoint.sh", "spark-submit", "--master", "local[2]",
                    "/opt/smoke/pi.py"], read_only=True)
    assert abs(_pi(p) - 3.14) < 0.1
    who = runner.run(ref(version, uid=True), ["/opt/entrypoint.sh", "sh", "-c",
                                              "id -u; id -g; whoami; echo $HOME"],
                     read_only=True)
    assert who.returncode == 0, who.stderr
    assert who.stdout.split() == ["12345", "0", "spark", "/tmp"]


@pytest.mark.parametrize("version", VERSIONS)
def test_python_packages_import(runner: SparkRunner, version: str) -> None:
    code = ("import pyspark, pandas, pyarrow, numpy, json; print(json.dumps({'pyspark': "
            "pyspark.__version__, 'pandas': pandas.__version__, 'numpy': numpy.__version__}))")
    p = runner.run(ref(version), ["python3", "-c", code])
    assert p.returncode == 0, p.stderr[-2000:]
    versions = json.loads(p.stdout.strip().splitlines()[-1])
    assert versions["pyspark"] == version
    assert versions["numpy"].startswith("1." if version.startswith("3.5") else "2.")


def test_jdbc_drivers_and_java_trust_store(runner: SparkRunner) -> None:
    p = runner.run(ref("4.1.1"), ["sh", "-c", "ls /opt/spark/jars | grep -E 'postgresql|mariadb'; "
                                  "keytool -list -cacerts -storepass changeit | head -n 5"])
    assert p.returncode == 0, p.stderr
    assert "postgresql-42.5.5.jar" in p.stdout and "mariadb-java-client-2.7.6.jar" in p.stdout
    count = int(re.search(r"contains (\d+) entries", p.stdout).group(1))  # type: ignore[union-attr]
    assert count > 100


@pytest.mark.parametrize("version", ["4.1.1", "3.5.7"])
def test_history_server_answers(runner: SparkRunner, version: str) -> None:
    port = free_port()
    name = runner.start(ref(version), ["/opt/entrypoint.sh", "history"],
                        env={"SPARK_HISTORY_PORT": str(port)})
    try:
        body = wait_http(f"http://127.0.0.1:{port}/api/v1/applications", seconds=120)
        assert json.loads(body) == []
    finally:
        runner.stop(name)


def test_connect_server_accepts_a_pyspark_client(runner: SparkRunner) -> None:
    port = free_port()
    name = runner.start(ref("4.1.1"), ["/opt/entrypoint.sh", "connect"],
                        env={"SPARK_CONNECT_PORT": str(port)})
    try:
        wait_port(port, seconds=180)
        p = runner.run(ref("4.1.1"), ["python3", "/opt/smoke/connect_client.py",
                                      f"sc://127.0.0.1:{port}"], net_host=True)
        assert p.returncode == 0, p.stderr[-3000:]
        assert "COUNT=10" in p.stdout
    finally:
        runner.stop(name)


def test_entrypoint_unknown_mode_is_refused(runner: SparkRunner) -> None:
    p = runner.run(ref("4.1.1"), [], env={"SPARK_MODE": "worker"})
    assert p.returncode == 64 and "unknown SPARK_MODE 'worker'" in p.stderr


def test_sizes_recorded(archives: dict[str, Path]) -> None:
    """spark-4.1.1 stays under 1.2 GB uncompressed while carrying pandas, pyarrow, grpcio."""
    r = run_cli("inspect", "spark-4.1.1", "--json", store=SPARK_STORE)
    info = r.json()
    store = Store(SPARK_STORE)
    records = {rec["diff_id"]: rec for rec in store.iter_records()}
    _, config = _manifest_and_config("spark-4.1.1")
    uncompressed = sum(records[d]["size"] for d in config["rootfs"]["diff_ids"])
    assert uncompressed < 1_200_000_000
    assert info["size"] < uncompressed
    assert os.path.getsize(archives["4.1.1"]) >= info["size"]
