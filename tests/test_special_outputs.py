"""Outputs written to a device or a pipe are written in place, never replaced.

Files are written beside their destination and renamed over it (whole or not at all),
which, for `-o /dev/null` run as root, replaced the system's /dev/null with a regular
file (it happened on a development machine through a benchmark's `sbom -o /dev/null`).
These tests point the outputs at a symlink to /dev/null and at a named pipe: the
symlink stays a symlink (had the rename happened, only the link would be replaced, so
the host's /dev/null is never at risk here) and the pipe's reader gets the bytes.
"""

from __future__ import annotations

import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from conftest import make_hello_project, run_cli


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("special")
    (root / "proj").mkdir()
    proj = make_hello_project(root / "proj")
    store = root / "store"
    r = run_cli("assemble", "hello", store=store, project=proj)
    assert r.rc == 0, r.err
    return store, proj


def _null_link(tmp_path: Path) -> Path:
    link = tmp_path / "out"
    link.symlink_to("/dev/null")
    return link


def _read_fifo(path: Path, got: list[bytes]) -> threading.Thread:
    def read() -> None:
        with open(path, "rb") as f:
            got.append(f.read())
    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("args", [["sbom", "hello", "-o"], ["export", "hello", "--archive"]])
def test_an_output_through_a_link_to_dev_null_leaves_both_in_place(
        hello: tuple[Path, Path], tmp_path: Path, args: list[str]) -> None:
    store, proj = hello
    link = _null_link(tmp_path)
    r = run_cli(*args, link, store=store, project=proj)
    assert r.rc == 0, r.err
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert list(tmp_path.iterdir()) == [link]  # no temporary file left beside it


def test_an_archive_into_a_named_pipe_reaches_its_reader(hello: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    store, proj = hello
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = _read_fifo(fifo, got)
    r = run_cli("export", "hello", "--archive", fifo, "--json", store=store, project=proj)
    reader.join(60)
    assert r.rc == 0, r.err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    out = tmp_path / "got.tar"
    out.write_bytes(got[0])
    with tarfile.open(out) as tar:
        assert {"index.json", "manifest.json", "oci-layout"} <= set(tar.getnames())
    assert r.json()["archive"]["size"] == len(got[0])
