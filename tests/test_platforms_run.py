"""linux/arm64 for real, on one representative image (spark-4.1.1): its arm64 layers are
built by scripts/prebuild-spark.sh into the test cache's store (the Debian base under
qemu-user-static through binfmt_misc, which this module registers as root if missing);
here the image is assembled for both platforms with the network closed, the shared
layers are checked to be the very same blobs, the arm64 base is built again in a fresh
store to the same bytes, and the arm64 image runs in containerd under emulation, as
uid 185 and as 12345:0 with a read-only root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociforge.checks.containerd import Containerd, can_run_containers
from ociforge.digests import canonical_json
from ociforge.image import REFERENCE_ANNOTATION, StoredImage, load_image
from ociforge.oci import MT_CONFIG, MT_MANIFEST, Descriptor
from ociforge.outputs import full_reference
from ociforge.outputs.archive import write_archive
from ociforge.store import Store

from conftest import TEST_CACHE, run_cli

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
SPARK_STORE = TEST_CACHE / "spark-store"
ARM = "linux/arm64"
OFFLINE = {"OCIFORGE_INDEX_URL": "http://127.0.0.1:9/simple",
           "OCIFORGE_DEBIAN_MIRROR": "http://127.0.0.1:9/debian",
           "OCIFORGE_DEBIAN_SECURITY_MIRROR": "http://127.0.0.1:9/debian-security",
           "OCIFORGE_DEBIAN_SNAPSHOT": "http://127.0.0.1:9/{archive}/{timestamp}/"}
SHARED = ["jdbc-drivers", "spark-dist-4.1.1", "spark-entrypoint"]
NATIVE = ["debian-base", "python-deps-4.1"]
WRITABLE = ["/tmp", "/opt/spark/work-dir"]


@pytest.fixture(scope="module")
def qemu() -> None:
    """qemu-aarch64 registered with binfmt_misc (as root, by scripts/register-qemu.sh)."""
    if os.geteuid() != 0:
        pytest.fail("registering qemu-aarch64 with binfmt_misc needs root")
    p = subprocess.run(["bash", str(PROJECT / "scripts" / "register-qemu.sh")],
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        pytest.fail(f"scripts/register-qemu.sh failed: {p.stderr.strip()}")


@pytest.fixture(scope="module")
def both(qemu: None) -> dict:
    """spark-4.1.1 for linux/amd64 and linux/arm64, from the cache (nothing built)."""
    r = run_cli("assemble", "spark-4.1.1", "--platform", "linux/amd64,linux/arm64", "--json",
                store=SPARK_STORE, project=PROJECT, env=OFFLINE)
    if r.rc != 0:
        pytest.fail(f"assembling from the cache failed ({r.err.strip()}); run "
                    "scripts/prebuild-spark.sh first (it builds the arm64 layers)")
    report = r.json()
    assert report["layers"]["built"] == [], "everything should come from the cache"
    return report


def _layers(image: dict) -> dict[str, dict]:
    return {layer["name"]: layer for layer in image["layers"]}


def test_shared_layers_are_one_blob_on_both_platforms(both: dict) -> None:
    amd, arm = both["images"]
    assert (amd["platform"], arm["platform"]) == ("linux/amd64", ARM)
    a, b = _layers(amd), _layers(arm)
    assert list(a) == list(b)  # the same stack, in the same order
    for name in SHARED:
        assert a[name]["digest"] == b[name]["digest"], name
    for name in NATIVE:
        assert a[name]["digest"] != b[name]["digest"], name


def test_the_arm64_base_rebuilds_to_the_same_bytes_in_a_fresh_store(
        both: dict, tmp_path: Path) -> None:
    """The arm64 Debian base from its lock, again, in a fresh store (the `.deb`s from the
    downloads cache, the mirrors closed): the same diff_id as the cached one."""
    r = run_cli("layers", "build", "--platform", ARM, "debian-base", "--json",
                store=tmp_path / "fresh", project=PROJECT, env={**OFFLINE, "TZ": "Asia/Tokyo"},
                timeout=1800)
    assert r.rc == 0, r.err
    (built,) = r.json()
    assert built["built"]
    assert built["diff_id"] == _layers(both["images"][1])["debian-base"]["diff_id"]


# -- running it under emulation ------------------------------------------------------------


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    reason = can_run_containers()
    if reason:
        pytest.fail(reason)
    base = Path(tempfile.mkdtemp(prefix="ocf-arm-ctd-", dir="/tmp"))
    # Spark resolves the host name: a /etc/hosts that has it (as `ociforge test` does).
    (base / "hosts").write_text(f"127.0.0.1 localhost {socket.gethostname()}\n")
    daemon = Containerd(base).start()
    yield daemon
    daemon.stop()
    shutil.rmtree(base, ignore_errors=True)


def _image(store: Store, digest: str, size: int, reference: str) -> StoredImage:
    entry = {**Descriptor(MT_MANIFEST, digest, size).to_json(),
             "annotations": {REFERENCE_ANNOTATION: reference}}
    return load_image(store, "spark-4.1.1", entry, store.record_picker())


def _with_user(store: Store, image: StoredImage, user: str, reference: str) -> StoredImage:
    """The same layers with another config User (ctr 1.6 has no --user flag)."""
    config = image.config
    config["config"]["User"] = user
    cfg = canonical_json(config)
    manifest = image.manifest
    manifest["config"] = Descriptor(MT_CONFIG, store.put_bytes(cfg), len(cfg)).to_json()
    data = canonical_json(manifest)
    return _image(store, store.put_bytes(data), len(data), reference)


@pytest.fixture(scope="module")
def arm_refs(both: dict, ctd: Containerd, tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, str]:
    """The arm64 image imported into containerd for linux/arm64, as itself and as 12345:0."""
    store = Store(SPARK_STORE)
    arm = both["images"][1]
    size = store.blob_size(arm["manifest_digest"])
    assert size is not None
    work = tmp_path_factory.mktemp("arm64")
    image = _image(store, arm["manifest_digest"], size, "spark:4.1.1-arm64")
    uid = _with_user(store, image, "12345:0", "spark:4.1.1-arm64-uid12345")
    for img, layers in ((image, True), (uid, False)):
        archive = work / "image.tar"
        write_archive(store, [img], archive, layers=layers)
        p = ctd.ctr("images", "import", "--platform", ARM, str(archive), timeout=900)
        assert p.returncode == 0, p.stderr
        archive.unlink()
    return {"185": full_reference(image.reference), "12345": full_reference(uid.reference)}


def _run(ctd: Containerd, ref: str, argv: list[str], *, read_only: bool,
         timeout: int = 900) -> str:
    name = f"ocf-arm-{os.getpid()}-{time.monotonic_ns()}"
    args = ["run", "--rm", "--platform", ARM, "--mount",
            f"type=bind,src={ctd.base / 'hosts'},dst=/etc/hosts,options=rbind:ro"]
    if read_only:
        args.append("--read-only")
        for path in WRITABLE:
            args += ["--mount", f"type=tmpfs,src=tmpfs,dst={path},options=nosuid:nodev:mode=1777"]
    try:
        p = ctd.ctr(*args, ref, name, *argv, timeout=timeout)
    finally:
        ctd.remove_container(name)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{argv}: {out[-1500:]}"
    return out


@pytest.mark.parametrize("user", ["185", "12345"])
def test_the_arm64_image_runs_under_emulation(arm_refs: dict[str, str], ctd: Containerd,
                                              user: str) -> None:
    ref, read_only = arm_refs[user], user != "185"
    assert _run(ctd, ref, ["uname", "-m"], read_only=read_only).strip() == "aarch64"
    ident = _run(ctd, ref, ["id", "-u"], read_only=read_only).strip()
    assert ident == user
    assert 'version "17' in _run(ctd, ref, ["java", "-version"], read_only=read_only)
    assert "version 4.1.1" in _run(ctd, ref, ["/opt/entrypoint.sh", "spark-submit",
                                              "--version"], read_only=read_only)
    out = _run(ctd, ref, ["python3", "-c", "import pyspark, pandas, pyarrow, platform; "
                          "print(pyspark.__version__, platform.machine())"],
               read_only=read_only)
    assert "4.1.1 aarch64" in out
    started = time.monotonic()
    out = _run(ctd, ref, ["/opt/entrypoint.sh", "spark-submit", "--master", "local[2]",
                          "/opt/spark/examples/src/main/python/pi.py", "4"],
               read_only=read_only, timeout=900)
    assert "Pi is roughly 3.1" in out
    # Reported, not asserted (no timings in tests): docs/matrix.md quotes it.
    print(f"arm64 Pi job under qemu as {user}: {time.monotonic() - started:.0f} s")


# -- `ociforge test --platform linux/arm64` --------------------------------------------------

CHECKED = ["spark-4.1.1-gpu-iceberg", "jupyter-4.1.1"]


def test_arm64_images_pass_their_native_and_structure_checks(qemu: None,
                                                              tmp_path: Path) -> None:
    """The arm64 images of a GPU + Iceberg variant and of a Jupyter one, checked from
    their own manifests (nothing run): NVIDIA's arm64 RAPIDS jar, cuDF and rmm with
    cuDF's aarch64 native code, the Iceberg runtime, JupyterLab, the arm64 JAVA_HOME."""
    r = run_cli("test", *CHECKED, "--platform", ARM, "--no-runtime", "--json",
                "--report-dir", tmp_path / "reports", store=SPARK_STORE, project=PROJECT,
                env=OFFLINE, timeout=1800)
    assert r.out, r.err
    results = r.json()["results"]
    checked = [x for x in results if x["kind"] in ("native", "structure")]
    failures = [x for x in checked if x["status"] != "passed"]
    assert r.rc == 0 and not failures, failures
    passed = {(x["image"], x["name"]) for x in checked}
    site = "/usr/local/lib/python3.11/dist-packages"
    for image, check in [
            (CHECKED[0], "file /opt/spark/jars/rapids-4-spark_2.13-26.08.1-cuda12-arm64.jar"),
            (CHECKED[0], f"file {site}/cudf_cu12-26.2.0.dist-info/METADATA"),
            (CHECKED[0], f"file {site}/rmm_cu12-26.2.0.dist-info/METADATA"),
            (CHECKED[0], f"file {site}/cudf/_lib/strings_udf.cpython-311-aarch64-linux-gnu.so"),
            (CHECKED[0], "file /opt/spark/jars/iceberg-spark-runtime-4.1_2.13-1.11.0.jar"),
            (CHECKED[0], "one version per Python distribution"),
            (CHECKED[1], "file /usr/local/bin/jupyter-lab"),
            (CHECKED[1], f"file {site}/jupyterlab-4.6.6.dist-info/METADATA")]:
        assert (image, check) in passed, (image, check)
    assert {x["image"] for x in checked if x["kind"] == "structure"} == set(CHECKED)
    # GPU checks never run under emulation; they say so.
    gpu = [x for x in results if x["kind"] == "gpu"]
    assert gpu and all(x["status"] == "skipped" and "never under emulation of linux/arm64"
                       in x["message"] for x in gpu)
    # The tag keeps linux/amd64 beside the arm64 image just checked.
    assert Store(SPARK_STORE).platforms(CHECKED[0]) == ["linux/amd64", ARM]
