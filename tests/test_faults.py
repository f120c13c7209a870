"""Faults: killed builds, damaged blobs, concurrent builders, bad input.
Nothing leaves the store corrupt, and every failure says what happened in one line."""

from __future__ import annotations

import io
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import (
    big_project,
    cli_cmd,
    run_cli,
    sha256,
    store_is_empty,
    wait_for_layer_write,
    write,
)

pytestmark = pytest.mark.slow


def test_sigkill_mid_layer_leaves_no_partial_blob(tmp_path: Path) -> None:
    proj = big_project(tmp_path / "p")
    store = tmp_path / "s"
    proc = subprocess.Popen(cli_cmd(store, proj, "assemble", "big"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp_dir = store / "ociforge" / "tmp"
    wait_for_layer_write(tmp_dir, 8 << 20)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # The half-written layer exists only as a temporary file, never as a blob.
    assert list(tmp_dir.glob("*.part"))
    assert list((store / "ociforge" / "layers").iterdir()) == []
    assert run_cli("images", "ls", "--json", store=store, project=proj).json()[0]["assembled"] \
        is None
    fsck = run_cli("store", "fsck", "--json", store=store)
    assert fsck.rc == 0, fsck.out
    assert fsck.json()["clean"] and fsck.json()["corrupt"] == []
    assert fsck.json()["stale_tmp"] >= 1 and not list(tmp_dir.iterdir())
    again = run_cli("assemble", "big", "--json", store=store, project=proj)
    assert again.rc == 0 and again.json()["layers"]["built"] == ["big"]
    assert run_cli("store", "fsck", store=store).rc == 0


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def _layer_blob(store: Path, project: Path, name: str) -> Path:
    info = run_cli("inspect", "hello", "--json", store=store, project=project).json()
    digest = next(layer["digest"] for layer in info["layers"] if layer["name"] == name)
    return store / "blobs" / "sha256" / digest.split(":")[1]


def test_corrupt_blob_found_by_fsck_and_by_next_assemble(tmp_path: Path,
                                                         hello_project: Path) -> None:
    store = tmp_path / "s"
    assert run_cli("assemble", "hello", store=store, project=hello_project).rc == 0
    blob = _layer_blob(store, hello_project, "busybox")
    _flip_byte(blob)
    digest = "sha256:" + blob.name

    # The next assemble that reads the blob refuses to ship it.
    r = run_cli("assemble", "hello", "--archive", tmp_path / "out.tar", store=store,
                project=hello_project)
    assert r.rc == 5
    assert f"blob {digest} is corrupt" in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "out.tar").exists()
    assert not list(tmp_path.glob(".out.tar*"))

    # fsck reports and quarantines it; the layer is then rebuilt, and all is clean.
    report = run_cli("store", "fsck", "--json", store=store)
    assert report.rc == 5 and [c["digest"] for c in report.json()["corrupt"]] == [digest]
    r = run_cli("assemble", "hello", "--archive", tmp_path / "out.tar", "--json", store=store,
                project=hello_project)
    assert r.rc == 0, r.err
    assert r.json()["layers"]["built"] == ["busybox"]
    assert run_cli("store", "fsck", store=store).rc == 0


def test_truncated_blob_is_rebuilt_on_next_assemble(tmp_path: Path, hello_project: Path) -> None:
    store = tmp_path / "s"
    assert run_cli("assemble", "hello", store=store, project=hello_project).rc == 0
    blob = _layer_blob(store, hello_project, "hello")
    blob.write_bytes(blob.read_bytes()[:10])
    r = run_cli("assemble", "hello", "--archive", tmp_path / "o.tar", "--json", store=store,
                project=hello_project)
    assert r.rc == 0, r.err
    assert r.json()["layers"]["built"] == ["hello"]
    assert run_cli("store", "fsck", store=store).rc == 0


def test_two_assembles_on_one_store(tmp_path: Path, hello_project: Path) -> None:
    big_project(hello_project, mb=150)
    write(hello_project / "recipes" / "r.yaml", "images:\n  big:\n    layers: [big, hello]\n")
    store = tmp_path / "s"
    procs = [subprocess.Popen(cli_cmd(store, hello_project, "--json", "assemble", "big", "hello"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    import json

    reports = [json.loads(o[0]) for o in outs]
    digests = [[i["manifest_digest"] for i in r["images"]] for r in reports]
    assert digests[0] == digests[1]
    # Each layer was built once: the second process waited for the first and reused it.
    built = sorted(reports[0]["layers"]["built"] + reports[1]["layers"]["built"])
    assert built == ["big", "busybox", "hello"]
    fsck = run_cli("store", "fsck", "--json", store=store)
    assert fsck.rc == 0 and fsck.json()["checked"] >= 7


# -- bad input: one line naming the cause, exit code != 0, nothing in the store --------

def _tar_with(path: Path, name: str, kind: str, target: str = "") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        ti = tarfile.TarInfo(name)
        if kind == "sym":
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            tar.addfile(ti)
        else:
            ti.size = 4
            tar.addfile(ti, io.BytesIO(b"evil"))
    return path


BAD_CASES = {
    "malformed-yaml": ("layers/hello.yaml", "source: {kind: files, files: [\n", 3,
                       "layers/hello.yaml:2:1: malformed YAML"),
    "unknown-field": ("recipes/hello.yaml",
                      "images:\n  hello:\n    layers: [busybox, hello]\n    entrypiont: [sh]\n",
                      3, "field 'images.hello.entrypiont': unknown field"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_invalid_recipe(tmp_path: Path, hello_project: Path, case: str) -> None:
    rel, text, code, message = BAD_CASES[case]
    (hello_project / rel).write_text(text)
    r = run_cli("assemble", "hello", store=tmp_path / "s", project=hello_project)
    assert r.rc == code
    assert len(r.err.strip().splitlines()) == 1 and message in r.err
    assert store_is_empty(tmp_path / "s")


def test_wrong_sha256_pin(tmp_path: Path, hello_project: Path) -> None:
    layer = hello_project / "layers" / "busybox.yaml"
    real = sha256(hello_project / "busybox-static.deb")
    layer.write_text(layer.read_text().replace(real, "e" * 64))
    r = run_cli("assemble", "hello", store=tmp_path / "s", project=hello_project)
    assert r.rc == 4
    assert len(r.err.strip().splitlines()) == 1
    assert f"sha256 mismatch for {hello_project}/busybox-static.deb: pinned {'e' * 64}, " \
           f"got {real}" in r.err
    assert store_is_empty(tmp_path / "s")


@pytest.mark.parametrize("name,kind,target,message", [
    ("../../etc/cron.d/evil", "file", "", "member '../../etc/cron.d/evil' contains '..'"),
    ("usr/lib/evil", "sym", "../../../../root/.ssh", "member 'usr/lib/evil' -> "
     "'../../../../root/.ssh' escapes the layer root"),
])
def test_unsafe_archive(tmp_path: Path, hello_project: Path, name: str, kind: str,
                        target: str, message: str) -> None:
    arc = _tar_with(hello_project / "evil.tgz", name, kind, target)
    write(hello_project / "layers" / "busybox.yaml",
          f"source: {{kind: archive, url: evil.tgz, sha256: {sha256(arc)}}}\n")
    r = run_cli("assemble", "hello", store=tmp_path / "s", project=hello_project)
    assert r.rc == 4
    assert len(r.err.strip().splitlines()) == 1 and f"evil.tgz: {message}" in r.err
    assert store_is_empty(tmp_path / "s")
    assert not list((tmp_path / "s" / "ociforge" / "tmp").iterdir())
