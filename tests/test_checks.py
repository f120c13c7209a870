"""`ociforge test`: deliberately broken images fail the right check, by name; the
GPU mechanism is tested on a fake device/driver layout; reports are well-formed."""

from __future__ import annotations

import io
import json
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ociforge.checks import native
from ociforge.checks.gpu import discover
from ociforge.checks.imagefs import Node
from ociforge.checks.layerindex import LayerIndex
from ociforge.checks.model import CheckSet, for_image
from ociforge.checks.report import failed, passed, skipped, write_junit
from ociforge.image import StoredLayer
from ociforge.oci import Descriptor
from ociforge.store import Store

from conftest import make_hello_project, run_cli, write

# -- unit: the GPU injection mechanism on a fake layout (no GPU needed) ------------------


def _fake_gpu_root(root: Path, with_devices: bool = True) -> Path:
    (root / "dev").mkdir(parents=True)
    if with_devices:
        for name in ("nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"):
            (root / "dev" / name).touch()
    (root / "dev" / "null").touch()
    lib = root / "usr" / "lib" / "x86_64-linux-gnu"
    lib.mkdir(parents=True)
    for name in ("libcuda.so.550.54.15", "libcuda.so.1", "libnvidia-ml.so.1",
                 "libnvidia-ptxjitcompiler.so.1", "libc.so.6", "libcudart.so.12"):
        (lib / name).touch()
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "nvidia-smi").touch()
    return root


def test_gpu_discovery_binds_devices_driver_libraries_and_nvidia_smi(tmp_path: Path) -> None:
    host = discover(_fake_gpu_root(tmp_path))
    assert host.present
    assert host.devices == ["/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia0",
                            "/dev/nvidiactl"]
    names = [p.name for p in host.libraries]
    # The driver's user-space libraries, not the CUDA runtime (which the image carries).
    assert names == ["libcuda.so.1", "libcuda.so.550.54.15", "libnvidia-ml.so.1",
                     "libnvidia-ptxjitcompiler.so.1"]
    args = host.ctr_args()
    assert args[:2] == ["--device", "/dev/nvidia-uvm"]
    assert (f"type=bind,src={tmp_path}/usr/lib/x86_64-linux-gnu/libcuda.so.1,"
            "dst=/usr/lib/x86_64-linux-gnu/libcuda.so.1,options=rbind:ro") in args
    assert (f"type=bind,src={tmp_path}/usr/bin/nvidia-smi,dst=/usr/bin/nvidia-smi,"
            "options=rbind:ro") in args


def test_no_gpu_is_a_reason_never_a_pass(tmp_path: Path) -> None:
    host = discover(_fake_gpu_root(tmp_path, with_devices=False))
    assert not host.present
    assert host.reason_absent() == "no NVIDIA GPU on this machine (/dev/nvidiactl is missing)"


# -- unit: native checks on a synthetic filesystem --------------------------------------

def _fs(*nodes: Node) -> dict[str, Node]:
    return {n.path: n for n in nodes}


def test_native_checks_name_what_is_wrong() -> None:
    fs = _fs(Node("/bin/su", "file", 0o104755, 0, 0, 10),
             Node("/data", "dir", 0o40777, 0, 0, 0),
             Node("/tmp", "dir", 0o41777, 0, 0, 0),
             Node("/home/x/.netrc", "file", 0o100600, 0, 0, 10),
             Node("/opt/app/key.pem", "file", 0o100644, 0, 0, 60, secret=True),
             Node("/etc/ssl/certs/ca.pem", "file", 0o100644, 0, 0, 60, secret=True))
    assert "setuid/setgid: /bin/su" in native.check_setuid("i", fs).message
    assert native.check_world_writable("i", fs, ["/tmp"]).message == "world-writable: /data"
    secrets = native.check_secrets("i", fs).message
    assert "/home/x/.netrc" in secrets and "/opt/app/key.pem" in secrets
    assert "ca.pem" not in secrets
    assert native.check_user("i", {"config": {"User": "spark"}}).status == "failed"
    assert "is root" in native.check_user("i", {"config": {"User": "0:0"}}).message
    assert native.check_user("i", {"config": {"User": "185:185"}}).status == "passed"


def test_two_versions_of_a_python_distribution_fail() -> None:
    site = "/usr/local/lib/python3.11/dist-packages"
    fs = _fs(Node(f"{site}/numpy-2.2.6.dist-info", "dir", 0o40755, 0, 0, 0),
             Node(f"{site}/pandas-2.3.3.dist-info", "dir", 0o40755, 0, 0, 0),
             Node("/usr/lib/python3/dist-packages/numpy-1.24.2.dist-info", "dir", 0o40755,
                  0, 0, 0))
    assert native.check_python_distributions("i", fs).status == "passed"  # other dir
    fs.update(_fs(Node(f"{site}/NumPy-2.3.5.dist-info", "dir", 0o40755, 0, 0, 0)))
    result = native.check_python_distributions("i", fs)
    assert result.status == "failed"
    assert result.message == f"numpy 2.2.6 and 2.3.5 in {site}"


def _layer(store: Store, files: dict[str, bytes]) -> StoredLayer:
    """A plain-tar layer blob in `store` holding `files`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    data = buf.getvalue()
    digest = store.put_bytes(data)
    return StoredLayer(Descriptor("application/vnd.oci.image.layer.v1.tar", digest, len(data)),
                       digest, None, store)


def test_layer_listings_are_cached_by_diff_id_and_a_bad_one_is_read_again(
        tmp_path: Path) -> None:
    """A layer is streamed once for its listing (secret-looking small files flagged,
    their contents not kept); the listing is served from the store afterwards, and a
    damaged or foreign listing is ignored and the layer read again."""
    store = Store(tmp_path / "s")
    key = b"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n"
    layer = _layer(store, {"opt/app/key.pem": key, "opt/app/big.pem": b"x" * 70_000 + key,
                           "etc/motd": b"hello\n"})
    index = LayerIndex(store, native.SECRET_CONTENT)
    first = {e.path: e for e in index.entries(layer)}
    assert first["/opt/app/key.pem"].secret and not first["/etc/motd"].secret
    assert not first["/opt/app/big.pem"].secret  # over SMALL: not read (as before)
    again = LayerIndex(store, native.SECRET_CONTENT)
    assert {e.path: e for e in again.entries(layer)} == first and again.scanned == 0
    (listing,) = (store.meta_dir / "checks").glob("*-entries-*.json")
    assert b"MIIE" not in listing.read_bytes()
    listing.write_text(listing.read_text().replace(layer.diff_id, "sha256:" + "0" * 64))
    third = LayerIndex(store, native.SECRET_CONTENT)
    assert {e.path: e for e in third.entries(layer)} == first and third.scanned == 1
    assert third.contents(layer, {"/etc/motd"}) == {"/etc/motd": b"hello\n"}
    fourth = LayerIndex(store, native.SECRET_CONTENT)
    assert fourth.contents(layer, {"/etc/motd"}) == {"/etc/motd": b"hello\n"}
    assert fourth.scanned == 0 and len(list((store.meta_dir / "checks").glob("*"))) == 2


def test_placeholders_filled_from_labels() -> None:
    cs = CheckSet.model_validate({
        "images": ["spark-*"],
        "files": [{"path": "/opt/spark/jars/spark-core_{label:scala}-{version}.jar",
                   "mode": "0644", "owner": "0:0"}],
        "commands": [{"name": "v", "args": ["spark-submit"], "expect": ["version {version}"]}]})
    filled = for_image(cs, {"org.opencontainers.image.version": "4.1.1", "scala": "2.13"})
    assert filled.files[0].path == "/opt/spark/jars/spark-core_2.13-4.1.1.jar"
    assert filled.files[0].mode == 0o644 and filled.files[0].owner == (0, 0)
    assert filled.commands[0].expect == ["version 4.1.1"]


def test_junit_report(tmp_path: Path) -> None:
    results = [passed("img", "native", "a"), failed("img", "runtime", "b", "exit code 1"),
               skipped("img", "gpu", "c", "no NVIDIA GPU on this machine")]
    write_junit(results, tmp_path / "j.xml")
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")


# -- end to end: broken images fail the right check -------------------------------------

CHECKS = """\
checks:
  hello:
    images: ["hello*"]
    files:
      - {path: /usr/local/bin/hello, mode: "0755", owner: "0:0"}
      - {path: /opt/spark/jars/spark-core.jar}
      - {path: /etc/motd, contains: ["built by ociforge"]}
    metadata:
      user: "185:185"
    writable: [/tmp]
    commands:
      - name: hello runs
        args: [/usr/local/bin/hello]
        expect: ["hello from ociforge"]
"""


def _project(root: Path, *, hello_mode: str = "0755", user: str = "185:185",
             setuid: bool = False, jar: bool = True, motd: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    make_hello_project(root)
    if motd is not None:
        write(root / "files" / "etc" / "motd", motd)
    extra = ""
    if jar:
        write(root / "files" / "spark-core.jar", "PK\n")
        extra += '    - {src: files/spark-core.jar, dest: /opt/spark/jars/spark-core.jar}\n'
    if setuid:
        write(root / "files" / "tool", "#!/bin/sh\n")
        extra += '    - {src: files/tool, dest: /usr/bin/tool, mode: "4755"}\n'
    layer = (root / "layers" / "hello.yaml").read_text()
    layer = layer.replace('mode: "0755"}', f'mode: "{hello_mode}"}}')
    layer = layer.replace("  files:\n", "  files:\n" + extra, 1)
    (root / "layers" / "hello.yaml").write_text(layer)
    recipe = (root / "recipes" / "hello.yaml").read_text().replace('"185:185"', f'"{user}"')
    (root / "recipes" / "hello.yaml").write_text(recipe + CHECKS)
    return root


def _test(tmp_path: Path, proj: Path, *extra: str) -> tuple[int, dict]:
    r = run_cli("test", "hello", "--json", "--report-dir", tmp_path / "reports", *extra,
                store=tmp_path / "s", project=proj, timeout=900)
    assert r.out, r.err
    return r.rc, r.json()


def _status(report: dict, name: str) -> tuple[str, str]:
    hits = [r for r in report["results"] if r["name"] == name]
    assert hits, f"no result named {name!r}: {[r['name'] for r in report['results']]}"
    return hits[0]["status"], hits[0]["message"]


@pytest.mark.slow
def test_good_image_passes_and_reports_are_written(tmp_path: Path) -> None:
    rc, report = _test(tmp_path, _project(tmp_path / "p"))
    failures = [r for r in report["results"] if r["status"] == "failed"]
    assert rc == 0 and not failures, failures
    names = {r["name"] for r in report["results"]}
    assert {"file /usr/local/bin/hello", "user non-root", "no setuid/setgid files",
            "no world-writable paths", "no secrets", "writable /tmp", "Metadata Test",
            "file /etc/motd"} <= names
    reports = tmp_path / "reports"
    assert json.loads((reports / "report.json").read_text())["summary"]["failed"] == 0
    assert ET.parse(reports / "junit.xml").getroot().tag == "testsuites"
    cst_config = (reports / "hello.cst.yaml").read_text()
    assert "metadataTest" in cst_config and "185:185" in cst_config
    if any(r["kind"] == "runtime" for r in report["results"]):
        assert _status(report, "hello runs")[0] == "passed"
        assert _status(report, "hello runs as 12345:0 read-only")[0] == "passed"


@pytest.mark.slow
@pytest.mark.parametrize("broken,check,message", [
    ({"hello_mode": "0644"}, "file /usr/local/bin/hello",
     "/usr/local/bin/hello: mode 0644, expected 0755"),
    ({"setuid": True}, "no setuid/setgid files", "setuid/setgid: /usr/bin/tool"),
    ({"user": "0:0"}, "user non-root", "USER '0:0' is root"),
    ({"jar": False}, "file /opt/spark/jars/spark-core.jar",
     "/opt/spark/jars/spark-core.jar is missing"),
    ({"motd": "other text\n"}, "file /etc/motd", "content does not match 'built by ociforge'"),
])
def test_broken_image_fails_the_right_check(tmp_path: Path, broken: dict, check: str,
                                            message: str) -> None:
    rc, report = _test(tmp_path, _project(tmp_path / "p", **broken), "--no-runtime")
    assert rc == 9
    status, detail = _status(report, check)
    assert status == "failed" and message in detail


@pytest.mark.slow
def test_structure_tests_read_the_config_and_extract_only_for_large_files(
        tmp_path: Path) -> None:
    """cst's metadata test reads the image's own config (host driver, `--metadata`), so
    a wrong USER fails it without extracting anything; the content of a file too large
    for the native pass goes to the tar driver, on the image archive."""
    big = "x" * 100_000 + "\nbuilt by ociforge\n"
    rc, report = _test(tmp_path, _project(tmp_path / "p", motd=big, user="0:0"), "--no-runtime")
    assert rc == 9
    status, detail = _status(report, "Metadata Test")
    assert status == "failed" and "Image user 0:0 does not match config user: 185:185" in detail
    assert _status(report, "File Content Test: /etc/motd content") == ("passed", "")
    reports = tmp_path / "reports"
    config = json.loads((reports / "hello.config.json").read_text())
    assert config["config"]["User"] == "0:0"
    assert "fileContentTests" not in (reports / "hello.cst.yaml").read_text()
    assert "/etc/motd" in (reports / "hello.files.cst.yaml").read_text()


@pytest.mark.slow
def test_entrypoint_without_exec_bit_fails_at_runtime_too(tmp_path: Path) -> None:
    from ociforge.checks.containerd import can_run_containers

    if can_run_containers():
        pytest.skip(can_run_containers() or "")
    rc, report = _test(tmp_path, _project(tmp_path / "p", hello_mode="0644"))
    assert rc == 9
    status, detail = _status(report, "hello runs")
    assert status == "failed" and "exit code" in detail


# -- workloads against a server of the user's: host_env, {env:…}, {run}, inputs ----------

WORKLOAD = """\
checks:
  workload:
    images: ["hello*"]
    host_env: {OCF_TEST_SECRET: null, OCF_TEST_GREETING: hello}
    writable: [/tmp]
    commands:
      - name: job reads its input and the host's variables
        inputs: [jobs/job.sh]
        args: [/bin/sh, /ocf-check/job.sh, "{env:OCF_TEST_GREETING}", "{run}"]
        expect: ['secret=s3cr3t-value greeting=hello run=r[0-9a-f]{6}_hello_(image_user|uid12345)$']
"""
JOB = 'echo "secret=$OCF_TEST_SECRET greeting=$1 run=$2"\n'


def _workload_project(root: Path) -> Path:
    _project(root)
    write(root / "jobs" / "job.sh", JOB)
    write(root / "recipes" / "workload.yaml", WORKLOAD)
    return root


def test_run_and_env_placeholders() -> None:
    from ociforge.checks.model import host_env_values, missing_env, substitute

    value = ["{version}", "s3a://{env:BUCKET}/{run}/x", "{env:UNSET}", "{port}"]
    assert substitute(value, {"org.opencontainers.image.version": "4.1.1"}, run="r1_a",
                      env={"BUCKET": "b"}) == ["4.1.1", "s3a://b/r1_a/x", "{env:UNSET}", "{port}"]
    cs = CheckSet.model_validate({"images": ["x"], "host_env": {"A": None, "B": "dflt"}})
    assert missing_env(cs, {}) == ["A"] and missing_env(cs, {"A": ""}) == ["A"]
    assert host_env_values(cs, {"A": "1"}) == {"A": "1", "B": "dflt"}
    # A variable the set does not declare would reach the container as "{env:…}".
    with pytest.raises(ValueError, match=r"\{env:ENDPOINT\} is used but ENDPOINT is not in"):
        CheckSet.model_validate({"images": ["x"], "commands": [
            {"name": "c", "args": ["job", "{env:ENDPOINT}"]}]})


@pytest.mark.parametrize("inputs,message", [
    (["/etc/passwd"], "is an absolute path"),
    (["../outside.py"], "leads outside the project directory"),
    (["a/job.py", "b/job.py"], "share a file name"),
])
def test_inputs_stay_in_the_project_and_apart(tmp_path: Path, inputs: list[str],
                                              message: str) -> None:
    proj = _workload_project(tmp_path / "p")
    write(proj / "recipes" / "workload.yaml",
          WORKLOAD.replace("[jobs/job.sh]", json.dumps(inputs)))
    r = run_cli("images", "ls", store=tmp_path / "s", project=proj)
    assert r.rc == 3
    assert "checks.workload.commands[0].inputs" in r.err and message in r.err


@pytest.mark.slow
def test_workload_without_its_server_is_skipped_saying_what_is_missing(tmp_path: Path) -> None:
    r = run_cli("test", "hello", "--json", "--report-dir", tmp_path / "reports",
                "--check-set", "workload", store=tmp_path / "s",
                project=_workload_project(tmp_path / "p"), env={"OCF_TEST_SECRET": ""})
    assert r.rc == 0, r.err
    status, detail = _status(r.json(), "job reads its input and the host's variables")
    assert status == "skipped" and detail.startswith("needs OCF_TEST_SECRET in the environment")


@pytest.mark.slow
def test_workload_gets_inputs_host_env_and_a_run_of_its_own(tmp_path: Path) -> None:
    """As 185 and as 12345:0 read-only: the job script mounted from the project, the
    secret through an env file (never in the report), {run} different per user."""
    from ociforge.checks.containerd import can_run_containers

    if can_run_containers():
        pytest.skip(can_run_containers() or "")
    r = run_cli("test", "hello", "--json", "--report-dir", tmp_path / "reports",
                "--check-set", "workload", store=tmp_path / "s",
                project=_workload_project(tmp_path / "p"),
                env={"OCF_TEST_SECRET": "s3cr3t-value"}, timeout=900)
    assert r.rc == 0, r.out + r.err
    report = r.json()
    for name in ("job reads its input and the host's variables",
                 "job reads its input and the host's variables as 12345:0 read-only"):
        assert _status(report, name)[0] == "passed"
    assert "s3cr3t-value" not in (tmp_path / "reports" / "report.json").read_text()


@pytest.mark.slow
def test_a_retest_finds_the_image_in_containerd_and_a_changed_one_is_imported(
        tmp_path: Path) -> None:
    """Re-testing an image on the same containerd does not import (unpack) it again;
    the match is by digest, so a rebuilt image under the same name is imported and run."""
    from ociforge.checks.containerd import Containerd, can_run_containers
    from ociforge.checks.gpu import GpuHost
    from ociforge.checks.runtime import RuntimeChecker
    from ociforge.store import Store

    if can_run_containers():
        pytest.skip(can_run_containers() or "")
    proj = _project(tmp_path / "p")
    ctd = Containerd(tmp_path / "ctd").start()
    try:
        def test_on_ctd() -> dict:
            rc, report = _test(tmp_path, proj, "--containerd", str(ctd.socket))
            assert rc == 0, report
            return report

        def imported() -> bool:
            work = tmp_path / "work"
            work.mkdir(exist_ok=True)
            checker = RuntimeChecker(ctd, work, GpuHost(), proj)
            return checker.prepare(Store(tmp_path / "s"), "hello", work / "h.tar").imported

        test_on_ctd()
        assert not imported()
        assert _status(test_on_ctd(), "hello runs as 12345:0 read-only")[0] == "passed"
        write(proj / "files" / "hello.sh", '#!/bin/sh\necho "hello again from ociforge"\n',
              0o755)
        recipe = proj / "recipes" / "hello.yaml"
        recipe.write_text(recipe.read_text().replace('expect: ["hello from ociforge"]',
                                                     'expect: ["hello again"]'))
        report = test_on_ctd()
        for name in ("hello runs", "hello runs as 12345:0 read-only"):
            assert _status(report, name)[0] == "passed"
        assert not imported()
    finally:
        ctd.stop()


DUPLICATES = """\
checks:
  jars:
    images: ["hello*"]
    duplicate_classes:
      - {jars: "/opt/lib/*.jar", packages: [com/shared/]}
      - {jars: "/opt/lib/*.jar", packages: [org/own/]}
      - {jars: "/opt/lib/big-*.jar"}
"""


def _jar(path: Path, classes: list[str], padding: int = 0) -> None:
    import os
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for c in classes:
            z.writestr(c, b"\xca\xfe\xba\xbe")
        z.writestr("META-INF/versions/9/com/shared/A.class", b"")
        if padding:  # stored random bytes: a jar too large for the native pass to keep
            z.writestr("data.bin", os.urandom(padding))


@pytest.mark.slow
def test_duplicate_classes_name_the_jars_every_spec_from_one_read(tmp_path: Path) -> None:
    """Several duplicate-class checks on one image (small jars and one larger than the
    native pass keeps in memory): each judged on its own packages and jars."""
    proj = _project(tmp_path / "p")
    _jar(proj / "files" / "lib" / "small-a.jar", ["com/shared/A.class", "org/own/X.class"])
    _jar(proj / "files" / "lib" / "big-b.jar", ["com/shared/A.class", "org/own/Y.class"],
         padding=200_000)
    _jar(proj / "files" / "lib" / "big-c.jar", ["net/other/Z.class"], padding=100_000)
    layer = proj / "layers" / "hello.yaml"
    layer.write_text(layer.read_text().replace(
        "  files:\n", "  files:\n    - {src: files/lib, dest: /opt/lib}\n", 1))
    write(proj / "recipes" / "jars.yaml", DUPLICATES)
    rc, report = _test(tmp_path, proj, "--no-runtime", "--check-set", "jars")
    assert rc == 9
    status, detail = _status(report, "no class twice in /opt/lib/*.jar under com/shared/")
    assert status == "failed"
    assert "1 duplicate classes: 1 classes in big-b.jar and small-a.jar" in detail
    assert "com.shared.A" in detail
    assert _status(report, "no class twice in /opt/lib/*.jar under org/own/")[0] == "passed"
    assert _status(report, "no class twice in /opt/lib/big-*.jar")[0] == "passed"
