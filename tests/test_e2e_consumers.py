"""The assembled image is accepted by the real consumers: skopeo, umoci,
container-structure-test (tar driver) and containerd (import + run)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import need_tool, run_cli, write
from containerd import Containerd, can_run_containers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from conftest import make_hello_project

    base = tmp_path_factory.mktemp("consumers")
    proj = base / "proj"
    proj.mkdir()
    make_hello_project(proj)
    store = base / "store"
    r = run_cli("assemble", "hello", "--archive", base / "hello.tar", "--oci-layout",
                base / "layout", "--json", store=store, project=proj)
    assert r.rc == 0, r.err
    return {"archive": base / "hello.tar", "layout": base / "layout", "store": store,
            "base": base, "digest": r.json()["images"][0]["manifest_digest"]}


def _skopeo(*args: str) -> dict:
    need_tool("skopeo")
    p = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_skopeo_reads_oci_archive(built: dict[str, Path]) -> None:
    info = _skopeo("inspect", f"oci-archive:{built['archive']}")
    assert info["Digest"] == built["digest"]
    assert info["Os"] == "linux" and info["Architecture"] == "amd64"
    assert info["Labels"] == {"org.opencontainers.image.title": "hello"}
    assert len(info["Layers"]) == 2


def test_skopeo_reads_docker_archive(built: dict[str, Path]) -> None:
    info = _skopeo("inspect", f"docker-archive:{built['archive']}")
    assert info["Env"] == ["PATH=/usr/local/bin:/bin"]
    assert len(info["Layers"]) == 2
    config = _skopeo("inspect", "--config", f"docker-archive:{built['archive']}")
    assert config["config"]["User"] == "185:185"


def test_skopeo_reads_exported_layout(built: dict[str, Path]) -> None:
    assert _skopeo("inspect", f"oci:{built['layout']}:latest")["Digest"] == built["digest"]


def test_umoci_unpacks(built: dict[str, Path]) -> None:
    need_tool("umoci")
    bundle = built["base"] / "bundle"
    p = subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{built['layout']}:latest",
                        str(bundle)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rootfs = bundle / "rootfs"
    assert (rootfs / "bin" / "busybox").stat().st_size > 1_000_000
    assert (rootfs / "usr" / "local" / "bin" / "hello").read_text().startswith("#!/bin/sh")
    assert (rootfs / "bin" / "sh").readlink() == Path("busybox")
    assert (rootfs / "etc" / "motd").read_text() == "built by ociforge\n"
    runtime = json.loads((bundle / "config.json").read_text())
    assert runtime["process"]["user"]["uid"] == 185


def test_container_structure_test_tar_driver(built: dict[str, Path]) -> None:
    cst = need_tool("container-structure-test")
    config = write(built["base"] / "cst.yaml", """\
        schemaVersion: 2.0.0
        fileExistenceTests:
          - {name: busybox, path: /bin/busybox, shouldExist: true, permissions: "-rwxr-xr-x"}
          - {name: hello, path: /usr/local/bin/hello, shouldExist: true}
          - {name: tmp, path: /tmp, shouldExist: true, permissions: "dtrwxrwxrwx"}
        fileContentTests:
          - {name: motd, path: /etc/motd, expectedContents: ["built by ociforge"]}
        metadataTest:
          user: "185:185"
          workdir: /tmp
          entrypoint: ["/bin/sh", "/usr/local/bin/hello"]
          envVars: [{key: PATH, value: "/usr/local/bin:/bin"}]
          labels: [{key: org.opencontainers.image.title, value: hello}]
        """)
    p = subprocess.run([cst, "test", "--driver", "tar", "--image", str(built["archive"]),
                        "--config", str(config)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Failures:    0" in p.stdout and "Passes:      5" in p.stdout
    # The same tool really checks: a wrong expectation fails.
    wrong = write(built["base"] / "cst-wrong.yaml", config.read_text().replace(
        '"-rwxr-xr-x"', '"-rw-r--r--"'))
    p = subprocess.run([cst, "test", "--driver", "tar", "--image", str(built["archive"]),
                        "--config", str(wrong)], capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "Failures:    1" in p.stdout


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    reason = can_run_containers()
    if reason:
        pytest.skip(reason)
    ctd = Containerd(Path(tempfile.mkdtemp(prefix="ocf-ctd-", dir="/tmp"))).start()
    yield ctd
    ctd.stop()


def test_containerd_imports_and_runs(built: dict[str, Path], containerd: Containerd) -> None:
    p = containerd.ctr("images", "import", str(built["archive"]))
    assert p.returncode == 0, p.stderr
    assert "docker.io/library/hello:latest" in p.stdout
    listing = containerd.ctr("images", "ls", "-q").stdout.split()
    assert "docker.io/library/hello:latest" in listing
    run = containerd.ctr("run", "--rm", "docker.io/library/hello:latest", "ocf-hello")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "hello from ociforge as 185"
