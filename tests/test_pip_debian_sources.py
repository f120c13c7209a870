"""`pip` and `debian` sources against local servers on 127.0.0.1: a PEP 503 index
holding a wheel made here, and an apt repository of one Debian package."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import busybox_deb, need_tool, run_cli, store_is_empty, write
from httpserver import serve

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIFORGE_CACHE", str(tmp_path / "cache"))


def make_wheel(dest: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel with a console script."""
    path = dest / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n\ndef main():\n    print(VERSION)\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
        f"{dist}/entry_points.txt": f"[console_scripts]\n{name} = {name}:main\n",
    }
    record = "".join(f"{p},,\n" for p in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for p, text in {**files, f"{dist}/RECORD": record}.items():
            zf.writestr(p, text)
    return path


def make_index(www: Path, wheels: list[Path]) -> None:
    by_name: dict[str, list[Path]] = {}
    for w in wheels:
        by_name.setdefault(w.name.split("-")[0], []).append(w)
    for name, ws in by_name.items():
        page = www / "simple" / name
        page.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="../../files/{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">'
            f"{w.name}</a>\n" for w in ws)
        (page / "index.html").write_text(f"<html><body>{links}</body></html>")


def _pip_project(root: Path, pins: list[str]) -> Path:
    reqs = "".join(f"    - {p}\n" for p in pins)
    write(root / "layers" / "py.yaml",
          f"source:\n  kind: pip\n  lock: layers/locks/py.lock\n  requirements:\n{reqs}")
    write(root / "layers" / "other.yaml",
          "source:\n  kind: files\n  symlinks: [{path: /x, target: y}]\n")
    write(root / "recipes" / "r.yaml", "images:\n  img:\n    layers: [other, py]\n")
    return root


def _layer_members(store: Path, report: dict, index: int) -> dict[str, tarfile.TarInfo]:
    digest = report["images"][0]["layers"][index]["digest"]
    data = (store / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        return {m.name: m for m in tar}


def test_pip_layer_lock_and_rebuild_on_pin_change(tmp_path: Path) -> None:
    www = tmp_path / "www"
    (www / "files").mkdir(parents=True)
    wheels = [make_wheel(www / "files", "tinypkg", v) for v in ("1.0", "2.0")]
    make_index(www, wheels)
    proj = _pip_project(tmp_path / "p", ["tinypkg==1.0"])
    store = tmp_path / "s"
    with serve(www) as url:
        # Locks are made by `ociforge lock` only: assemble refuses to resolve.
        unlocked = run_cli("--index-url", f"{url}/simple", "assemble", "img", store=store,
                           project=proj)
        assert unlocked.rc == 3 and "run `ociforge lock py`" in unlocked.err
        locked = run_cli("--index-url", f"{url}/simple", "lock", "py", store=store,
                         project=proj)
        assert locked.rc == 0, locked.err
        r = run_cli("--index-url", f"{url}/simple", "assemble", "img", "--json", store=store,
                    project=proj)
        assert r.rc == 0, r.err
        lock = (proj / "layers" / "locks" / "py.lock").read_text()
        sha = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
        assert f"tinypkg==1.0 --hash=sha256:{sha}" in lock
        members = _layer_members(store, r.json(), 1)
        site = "usr/local/lib/python3.11/dist-packages"
        assert f"{site}/tinypkg/__init__.py" in members
        assert f"{site}/tinypkg-1.0.dist-info/METADATA" in members
        assert not any(name.endswith(".pyc") for name in members)
        script = members["usr/local/bin/tinypkg"]
        assert script.mode == 0o755
        blob = store / "blobs" / "sha256" / r.json()["images"][0]["layers"][1]["digest"][7:]
        with tarfile.open(blob) as tar:
            f = tar.extractfile("usr/local/bin/tinypkg")
            assert f is not None and f.readline() == b"#!/usr/bin/python3\n"

        # Same pins: cached, no resolution needed. A changed pin: only this layer.
        again = run_cli("--index-url", f"{url}/simple", "assemble", "img", "--json",
                        store=store, project=proj)
        assert again.json()["layers"]["built"] == []
        _pip_project(proj, ["tinypkg==2.0"])
        stale = run_cli("--index-url", f"{url}/simple", "assemble", "img", store=store,
                        project=proj)
        assert stale.rc == 3 and "py.lock was made from other requirements" in stale.err
        assert run_cli("--index-url", f"{url}/simple", "lock", "py", store=store,
                       project=proj).rc == 0
        changed = run_cli("--index-url", f"{url}/simple", "assemble", "img", "--json",
                          store=store, project=proj)
        assert changed.rc == 0, changed.err
        assert changed.json()["layers"]["built"] == ["py"]
        assert "tinypkg==2.0 --hash" in (proj / "layers" / "locks" / "py.lock").read_text()


def test_data_scripts_get_the_image_interpreter_not_the_hosts(tmp_path: Path) -> None:
    """pip writes the host's interpreter into scripts a wheel ships as data (numba's,
    jsonpointer's) and into RECORD: both are rewritten, so two hosts give one layer."""
    from ociforge.sources.pip import write_data_scripts

    outputs = []
    for host in ("/work/a/.venv/bin/python", "/tmp/ci/.venv/bin/python"):
        site = tmp_path / host.replace("/", "_")
        script = f"#!{host}\nprint('tool')\n".encode()
        write(site / "bin" / "tool", script.decode(), 0o755)
        digest = hashlib.sha256(script).hexdigest()
        write(site / "tool-1.0.dist-info" / "RECORD",
              f"../../bin/tool,sha256={digest},{len(script)}\ntool.py,sha256=x,1\n")
        scripts = write_data_scripts(site, "/usr/bin/python3", "../../../bin", set())
        record = (site / "tool-1.0.dist-info" / "RECORD").read_text()
        outputs.append((scripts, record))
    assert outputs[0] == outputs[1]
    scripts, record = outputs[0]
    assert scripts == {"tool": b"#!/usr/bin/python3\nprint('tool')\n"}
    assert record.startswith("../../../bin/tool,sha256=") and "tool.py,sha256=x,1" in record


def test_pip_pin_that_does_not_exist(tmp_path: Path) -> None:
    www = tmp_path / "www"
    (www / "files").mkdir(parents=True)
    make_index(www, [make_wheel(www / "files", "tinypkg", "1.0")])
    proj = _pip_project(tmp_path / "p", ["tinypkg==9.9.9"])
    with serve(www) as url:
        r = run_cli("--index-url", f"{url}/simple", "lock", store=tmp_path / "s",
                    project=proj)
    assert r.rc == 7
    assert "pip: no distribution of tinypkg==9.9.9 for Python 3.11" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert store_is_empty(tmp_path / "s")
    assert not (proj / "layers" / "locks" / "py.lock").exists()


def test_unpinned_requirement_is_refused(tmp_path: Path) -> None:
    proj = _pip_project(tmp_path / "p", ["tinypkg>=1.0"])
    r = run_cli("assemble", "img", store=tmp_path / "s", project=proj)
    assert r.rc == 3 and "source.pip.requirements[0]" in r.err


def make_apt_repo(root: Path, debs: list[Path]) -> None:
    """A flat-pool apt repository (Packages + Release), unsigned."""
    need_tool("dpkg-scanpackages")
    pool = root / "pool"
    pool.mkdir(parents=True)
    for d in debs:
        (pool / d.name).write_bytes(d.read_bytes())
    binary = root / "dists" / "bookworm" / "main" / "binary-amd64"
    binary.mkdir(parents=True)
    packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "pool"], cwd=root,
                              capture_output=True, check=True).stdout
    (binary / "Packages").write_bytes(packages)
    sha = hashlib.sha256(packages).hexdigest()
    (root / "dists" / "bookworm" / "Release").write_text(
        "Origin: test\nSuite: bookworm\nCodename: bookworm\nComponents: main\n"
        f"Architectures: amd64\nSHA256:\n {sha} {len(packages)} main/binary-amd64/Packages\n")


def _debian_project(root: Path, url: str, packages: list[str]) -> Path:
    write(root / "layers" / "base.yaml", f"""\
        source:
          kind: debian
          lock: layers/locks/base.lock
          suite: bookworm
          updates: false
          security: false
          variant: extract
          mirror: {url}
          trusted: true
          exclude_docs: false
          packages: [{", ".join(packages)}]
        """)
    write(root / "recipes" / "r.yaml", "images:\n  base:\n    layers: [base]\n")
    return root


def test_debian_source_from_local_repository(tmp_path: Path) -> None:
    need_tool("mmdebstrap")
    make_apt_repo(tmp_path / "repo", [busybox_deb()])
    with serve(tmp_path / "repo") as url:
        proj = _debian_project(tmp_path / "p", url, ["busybox-static"])
        locked = run_cli("lock", store=tmp_path / "s", project=proj)
        assert locked.rc == 0, locked.err
        r = run_cli("assemble", "base", "--json", store=tmp_path / "s", project=proj)
    assert r.rc == 0, r.err
    members = _layer_members(tmp_path / "s", r.json(), 0)
    assert members["bin/busybox"].mode == 0o755
    layers = run_cli("layers", "ls", "--json", store=tmp_path / "s").json()
    prov = layers[0]["provenance"]["sources"][0]
    assert prov["suite"] == "bookworm"


def test_debian_package_that_does_not_exist(tmp_path: Path) -> None:
    need_tool("mmdebstrap")
    make_apt_repo(tmp_path / "repo", [busybox_deb()])
    with serve(tmp_path / "repo") as url:
        proj = _debian_project(tmp_path / "p", url, ["busybox-static", "no-such-pkg"])
        r = run_cli("lock", store=tmp_path / "s", project=proj)
    assert r.rc == 7
    assert "Debian package(s) no-such-pkg not found in bookworm" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert store_is_empty(tmp_path / "s")
    assert not (proj / "layers" / "locks" / "base.lock").exists()
