"""Each feature's real workload, in containerd, against servers on 127.0.0.1: the
check sets of recipes/workloads.yaml run by `ociforge test` (as uid 185 and as
12345:0 with a read-only root), with the S3 endpoint a versitygw the tests start.
What the jobs wrote is then read back from the S3 server with a client of our own.

The images come from the test cache (scripts/prebuild-spark.sh builds every layer,
the Maven add-ons from the committed locks); nothing here reaches the network. The
session's containerd (tests/conftest.py) serves the module, so an image another
module imported is not imported again.

The workloads that need no server (the 3.5 Connect server, RAPIDS explainOnly) run
in tests/test_matrix.py::test_variants_run_in_containerd, on images it imports anyway.
Celeborn has no workload: Maven Central serves no Celeborn server jars
(org.apache.celeborn:celeborn-master_2.12 / celeborn-worker_2.12 answer 404 for
every version), so no master or worker can be assembled; its client is checked at
the class level there.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from project_copy import PROJECT
from s3_server import S3Server, start_s3_server

from ociforge.checks.containerd import Containerd

from conftest import TEST_CACHE, run_cli

pytestmark = pytest.mark.slow

SPARK_STORE = TEST_CACHE / "spark-store"
OFFLINE = {"OCIFORGE_INDEX_URL": "http://127.0.0.1:9/simple",
           "OCIFORGE_DEBIAN_MIRROR": "http://127.0.0.1:9/debian",
           "OCIFORGE_MAVEN_SETTINGS": "none", "OCIFORGE_MAVEN_REPOS": "http://127.0.0.1:9/maven"}
BUCKET = "ociforge"
EVENT_LOGS = "s3a://spark-logs/events"
AS_UID = " as 12345:0 read-only"


@pytest.fixture(scope="module")
def containerd(shared_containerd: Containerd) -> Containerd:
    """The session's: images the other modules imported are not imported again."""
    return shared_containerd


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    server.create_bucket(BUCKET)
    server.create_bucket("spark-logs")
    server.put("spark-logs", "events/")  # Spark wants the event log directory to exist
    yield server
    server.stop()


def ociforge_test(ctd: Containerd, s3: S3Server | None, *args: str) -> dict[str, dict]:
    """`ociforge test … --json` on the module's containerd; (image, check) → result."""
    env = {**OFFLINE}
    if s3 is not None:
        env |= s3.env() | {"OCIFORGE_S3_BUCKET": BUCKET, "OCIFORGE_S3_EVENT_LOG_DIR": EVENT_LOGS}
    report = Path(tempfile.mkdtemp(prefix="ocf-wl-report-", dir="/tmp"))
    started = time.monotonic()
    try:
        r = run_cli("test", *args, "--containerd", str(ctd.socket), "--json", "--report-dir",
                    report, store=SPARK_STORE, project=PROJECT, env=env, timeout=3600)
    finally:
        shutil.rmtree(report, ignore_errors=True)
    if not r.out:
        pytest.fail(f"ociforge test failed ({r.err.strip()[-2000:]}); scripts/prebuild-spark.sh "
                    "builds every layer of these images into the test cache first")
    print(f"\nociforge test {' '.join(args)}: {time.monotonic() - started:.0f} s")
    return {(x["image"], x["name"]): x for x in r.json()["results"]}


def assert_passed(results: dict, image: str, check: str, *, both_users: bool = True) -> None:
    for name in [check, check + AS_UID] if both_users else [check]:
        result = results.get((image, name))
        assert result is not None, f"{image}: no result {name!r} in {sorted(results)}"
        assert result["status"] == "passed", result


def event_log(data: bytes, key: str) -> str:
    """An event log's text: Spark 4 writes rolling logs compressed with zstd (one
    frame per flush)."""
    if key.endswith(".zstd"):
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data),
                                                             read_across_frames=True)
        data = reader.read()
    return data.decode("utf-8", "replace")


def run_tag(image: str, user: str) -> str:
    """The `{run}` pattern of one image and user (the nonce is the run's own)."""
    return rf"r[0-9a-f]{{6}}_{re.sub(r'[^A-Za-z0-9]', '_', image)}_{user}"



# The full S3 set on the newest patch release of each line (what a weekly rebuild
# ships); Iceberg alone on the seeds' default release. The other releases carry the
# same Iceberg runtime as their line's newest one: their layers are checked natively
# (test_other_iceberg_releases_carry_the_runtime_once), their classes load in
# tests/test_matrix.py.
S3_IMAGES = ["spark-4.1.4-iceberg", "spark-3.5.9-iceberg"]
ICEBERG_ONLY = ["spark-4.1.1-iceberg"]
ICEBERG_NATIVE = ["spark-3.5.8-iceberg", "spark-4.1.0-iceberg", "spark-3.5.7-iceberg"]


@pytest.fixture(scope="module")
def s3_results(containerd: Containerd, s3: S3Server) -> dict[str, dict]:
    """s3a, history and iceberg on the newest 4.1 and 3.5 images; iceberg alone on
    spark-4.1.1."""
    results = ociforge_test(containerd, s3, *S3_IMAGES, "--check-set", "s3a-workload",
                            "--check-set", "history-workload", "--check-set", "iceberg-workload")
    results |= ociforge_test(containerd, s3, *ICEBERG_ONLY, "--check-set", "iceberg-workload")
    return results


def test_other_iceberg_releases_carry_the_runtime_once(containerd: Containerd) -> None:
    """The Iceberg runtime jar of the line, and no AWS SDK/netty class twice, on every
    other release's Iceberg image (native checks: nothing is imported or run)."""
    results = ociforge_test(containerd, None, *ICEBERG_NATIVE, "--check-set", "iceberg",
                            "--no-runtime")
    for image in ICEBERG_NATIVE:
        mine = {name: x for (i, name), x in results.items() if i == image}
        assert any(n.startswith("file /opt/spark/jars/iceberg-spark-runtime-") for n in mine)
        assert any(n.startswith("no class twice") for n in mine)
        assert all(x["status"] == "passed" for n, x in mine.items() if x["kind"] == "native"
                   ), mine


@pytest.mark.parametrize("image", S3_IMAGES)
def test_s3a_parquet_through_the_magic_committer(s3_results: dict, s3: S3Server,
                                                 image: str) -> None:
    """Written by one job with the magic committer (rows and a column's checksum read
    back), listed by a second one; on the server: the part files, a _SUCCESS manifest
    naming the magic committer, no multipart upload left open."""
    assert_passed(s3_results, image, "S3A Parquet write with the magic committer, read back")
    assert_passed(s3_results, image, "S3A listing of the dataset")
    for user in ("image_user", "uid12345"):
        pattern = re.compile(rf"ociforge-checks/{run_tag(image, user)}/parquet/(.*)$")
        files = [m.group(1) for k in s3.keys(BUCKET, "ociforge-checks/") if (m := pattern.match(k))]
        assert len([f for f in files if f.endswith(".parquet")]) == 4, files
        assert not [f for f in files if "__magic" in f], files
        success = next(k for k in s3.keys(BUCKET, "ociforge-checks/")
                       if pattern.match(k) and k.endswith("/_SUCCESS"))
        manifest = json.loads(s3.get(BUCKET, success))
        assert manifest["committer"] == "magic"
        assert len(manifest["filenames"]) == 4
    assert s3.pending_uploads(BUCKET) == []


@pytest.mark.parametrize("image", S3_IMAGES)
def test_history_server_lists_an_application_logged_to_s3(s3_results: dict, s3: S3Server,
                                                          image: str) -> None:
    assert_passed(s3_results, image, "application with its event log on S3")
    assert_passed(s3_results, image, "history server lists it from S3")
    logs = [k for k in s3.keys("spark-logs", "events/") if k != "events/"]
    assert not [k for k in logs if k.endswith(".inprogress")], logs
    names = {m.group(1) for k in logs
             if (m := re.search(r'"App Name":"([^"]+)"', event_log(s3.get("spark-logs", k), k)))}
    for user in ("image_user", "uid12345"):
        assert any(re.fullmatch(f"ocf-history-{run_tag(image, user)}", n) for n in names), names


@pytest.mark.parametrize("image", S3_IMAGES + ICEBERG_ONLY)
def test_iceberg_table_on_s3_snapshots_and_time_travel(s3_results: dict, s3: S3Server,
                                                       image: str) -> None:
    """CREATE, two INSERTs, SELECT, the snapshots table (two), VERSION AS OF the first
    snapshot's tag and set_current_snapshot back to it, on every Spark version."""
    assert_passed(s3_results, image, "Iceberg table on S3, two snapshots, back to the first")
    for user in ("image_user", "uid12345"):
        table = re.compile(rf"ociforge-checks/iceberg/checks/t_{run_tag(image, user)}/(.*)$")
        files = [m.group(1) for k in s3.keys(BUCKET, "ociforge-checks/iceberg/")
                 if (m := table.match(k))]
        assert [f for f in files if f.startswith("data/") and f.endswith(".parquet")]
        # One manifest list per snapshot: two INSERTs, two snapshots (a tag and going
        # back to a snapshot make none); a metadata version per commit.
        assert len([f for f in files if re.fullmatch(r"metadata/snap-\d+-.*\.avro", f)]) == 2
        versions = sorted(int(m.group(1)) for f in files
                          if (m := re.fullmatch(r"metadata/v(\d+)\.metadata\.json", f)))
        assert len(versions) >= 4
        # The table's last metadata, as Iceberg left it: back on the first snapshot.
        prefix = next(k for k in s3.keys(BUCKET, "ociforge-checks/iceberg/") if table.match(k))
        prefix = prefix[:prefix.index(table.match(prefix).group(1))]
        meta = json.loads(s3.get(BUCKET, f"{prefix}metadata/v{versions[-1]}.metadata.json"))
        first = min(meta["snapshots"], key=lambda s: s["sequence-number"])["snapshot-id"]
        assert meta["current-snapshot-id"] == first
        assert meta["refs"]["first_insert"]["snapshot-id"] == first
