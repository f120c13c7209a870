"""Deterministic tar writing: the bytes depend on the tree, not on the host."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from ociforge.errors import UnsafeArchiveError
from ociforge.tartree import Tree, check_link_target, normalize_path, write_tar


def _tar_bytes(tree: Tree, sde: int = 0) -> bytes:
    buf = io.BytesIO()
    write_tar(tree, buf, sde)
    return buf.getvalue()


def _make_src(root: Path, mtime: int, mode_bits: int) -> Path:
    (root / "b" / "c").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "b" / "run.sh").write_text("#!/bin/sh\n")
    (root / "b" / "c" / "z").write_text("z")
    os.link(root / "a.txt", root / "b" / "hard")
    os.symlink("../a.txt", root / "b" / "link")
    (root / "b" / "run.sh").chmod(0o700 | mode_bits)
    (root / "a.txt").chmod(0o600 | (mode_bits & 0o044))
    for p in [*root.rglob("*"), root]:
        os.utime(p, (mtime, mtime), follow_symlinks=False)
    return root


def test_same_tree_from_different_hosts_gives_same_bytes(tmp_path: Path) -> None:
    one = _make_src(tmp_path / "one", 1_600_000_000, 0o055)
    two = _make_src(tmp_path / "two", 1_700_000_000, 0o000)
    t1, t2 = Tree(), Tree()
    t1.add_from_disk(one, "/opt/x")
    t2.add_from_disk(two, "/opt/x")
    assert _tar_bytes(t1) == _tar_bytes(t2)


def test_headers_are_normalized_and_sorted(tmp_path: Path) -> None:
    src = _make_src(tmp_path / "s", 1_600_000_000, 0)
    tree = Tree(owner=(185, 185))
    tree.add_from_disk(src, "/opt/x")
    with tarfile.open(fileobj=io.BytesIO(_tar_bytes(tree, sde=1000))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == ["opt", "opt/x", "opt/x/a.txt", "opt/x/b", "opt/x/b/c", "opt/x/b/c/z",
                     "opt/x/b/hard", "opt/x/b/link", "opt/x/b/run.sh"]
    by = {m.name: m for m in members}
    assert all(m.mtime <= 1000 for m in members)
    assert all(m.uname == "" and m.gname == "" for m in members)
    assert by["opt"].uid == 185 and by["opt/x/a.txt"].gid == 185
    assert by["opt/x/b/run.sh"].mode == 0o755 and by["opt/x/a.txt"].mode == 0o644
    assert by["opt/x/b/hard"].islnk() and by["opt/x/b/hard"].linkname == "opt/x/a.txt"
    assert by["opt/x/b/link"].issym() and by["opt/x/b/link"].linkname == "../a.txt"


def test_mtime_clamped_to_source_date_epoch() -> None:
    tree = Tree()
    from ociforge.tartree import FILE, Entry

    tree.add(Entry("old", FILE, 0o644, mtime=50, src=b"x", size=1))
    tree.add(Entry("new", FILE, 0o644, mtime=5000, src=b"y", size=1))
    with tarfile.open(fileobj=io.BytesIO(_tar_bytes(tree, sde=100))) as tar:
        assert {m.name: m.mtime for m in tar} == {"new": 100, "old": 50}


def test_whiteouts_are_kept() -> None:
    tree = Tree()
    tree.add_bytes("/etc/.wh.motd", b"")
    tree.add_bytes("/var/cache/.wh..wh..opq", b"")
    with tarfile.open(fileobj=io.BytesIO(_tar_bytes(tree))) as tar:
        names = tar.getnames()
    assert "etc/.wh.motd" in names and "var/cache/.wh..wh..opq" in names


def test_dot_dot_is_refused_and_named() -> None:
    with pytest.raises(UnsafeArchiveError, match=r"'a/\.\./\.\./etc'"):
        normalize_path("a/../../etc")


def test_escaping_link_is_refused() -> None:
    check_link_target("opt/spark/bin/x", "../../lib/y", what="link")  # stays inside
    check_link_target("usr/bin/java", "/etc/alternatives/java", what="link")  # container-absolute
    with pytest.raises(UnsafeArchiveError, match="escapes the layer root"):
        check_link_target("opt/x", "../../../etc/passwd", what="link")


def _golden_tree(root: Path) -> Tree:
    """Every kind of entry, names that need PAX headers, file sizes around the 512-byte
    blocks and the 1 MiB copy buffer."""
    _make_src(root, 1_650_000_000, 0o055)
    (root / "sizes").mkdir()
    for n in (0, 1, 511, 512, 513, (1 << 20) - 1, 1 << 20, (1 << 20) + 513):
        (root / "sizes" / f"f{n}").write_bytes(bytes(i % 251 for i in range(n)))
    (root / ("long-" * 30 + "name")).write_text("pax path")
    (root / "ünïcødé ✓").write_text("utf-8 name")
    for p in [*root.rglob("*"), root]:
        os.utime(p, (1_650_000_000, 1_650_000_000), follow_symlinks=False)
    tree = Tree()
    tree.add_from_disk(root, "/opt/golden")
    tree.add_dir("/etc/conf", mode=0o750, owner=(185, 0))
    tree.add_bytes("/etc/conf/x.properties", b"k=v\n" * 1000, mode=0o640)
    tree.add_symlink("/opt/latest", "golden")
    return tree


def test_tar_bytes_are_those_of_earlier_versions(tmp_path: Path) -> None:
    # Layer digests in every store and registry depend on these bytes: the digest was
    # computed with the tar writer as of 2026-11-30 (tarfile's stream mode); a change
    # to how the tar is written must keep it.
    data = _tar_bytes(_golden_tree(tmp_path / "golden"), 1_700_000_000)
    assert len(data) % 10240 == 0
    assert hashlib.sha256(data).hexdigest() == (
        "7fc98e365a5c76621581ee352eff97d9275a03d5e991e09b9ec123905b778ea5")
