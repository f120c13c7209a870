"""Safe archive import: unsafe members are refused by name; selection and renaming work."""

from __future__ import annotations

import io
import os
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from ociforge.archives import PathMap, import_archive
from ociforge.errors import BuildError, IntegrityError, UnsafeArchiveError
from ociforge.tartree import FILE, SYMLINK, Tree

from conftest import busybox_deb


def make_tar(path: Path, members: list[tuple[str, str, bytes | str]], mode: str = "w:gz") -> Path:
    """members: (name, kind, data-or-linkname); kind in file/dir/sym/hard."""
    with tarfile.open(path, mode) as tar:
        for name, kind, data in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if kind == "file":
                assert isinstance(data, bytes)
                ti.size = len(data)
                ti.mode = 0o755 if name.endswith(".sh") else 0o644
                tar.addfile(ti, io.BytesIO(data))
                continue
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, str(data)
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, str(data)
            tar.addfile(ti)
    return path


def _import(archive: Path, tmp: Path, maps: list[PathMap] | None = None) -> Tree:
    tree = Tree()
    import_archive(archive, tree, tmp / "staging", maps=maps or [], sde=0)
    return tree


def test_selects_and_renames(tmp_path: Path) -> None:
    arc = make_tar(tmp_path / "spark.tgz", [
        ("pyspark-4.1.1/", "dir", ""),
        ("pyspark-4.1.1/deps/jars/a.jar", "file", b"A"),
        ("pyspark-4.1.1/deps/jars/b.jar", "file", b"B"),
        ("pyspark-4.1.1/deps/bin/spark-submit.sh", "file", b"#!"),
        ("pyspark-4.1.1/deps/examples/big.jar", "file", b"E"),
        ("pyspark-4.1.1/setup.py", "file", b"s"),
    ])
    tree = _import(arc, tmp_path, [
        PathMap("pyspark-4.1.1/deps/jars", "/opt/spark/jars", exclude=["b.jar"]),
        PathMap("pyspark-4.1.1/deps/bin", "/opt/spark/bin"),
    ])
    files = sorted(p for p, e in tree.entries.items() if e.kind == FILE)
    assert files == ["opt/spark/bin/spark-submit.sh", "opt/spark/jars/a.jar"]
    assert tree.entries["opt/spark/bin/spark-submit.sh"].mode == 0o755


def test_path_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    arc = make_tar(tmp_path / "a.tgz", [("x/jars/a.jar", "file", b"A")])
    with pytest.raises(BuildError, match="'x/jarz' selected by the recipe matched no member"):
        _import(arc, tmp_path, [PathMap("x/jarz", "/opt")])


@pytest.mark.parametrize("name,kind,data,message", [
    ("/etc/passwd", "file", b"root", "member '/etc/passwd' has an absolute path"),
    ("a/../../etc/shadow", "file", b"x", "member 'a/../../etc/shadow' contains '..'"),
    ("bin/evil", "sym", "../../../etc/passwd",
     "member 'bin/evil' -> '../../../etc/passwd' escapes"),
    ("bin/hl", "hard", "/etc/passwd", "member 'bin/hl' is a hard link to '/etc/passwd'"),
])
def test_unsafe_members_are_refused_by_name(tmp_path: Path, name: str, kind: str,
                                             data: bytes | str, message: str) -> None:
    arc = make_tar(tmp_path / "evil.tar", [("ok.txt", "file", b"ok"), (name, kind, data)], "w")
    with pytest.raises(UnsafeArchiveError) as err:
        _import(arc, tmp_path)
    assert message in str(err.value)
    assert "evil.tar" in str(err.value)


def test_links_are_never_followed_on_disk(tmp_path: Path) -> None:
    """A symlink to a directory followed by a file 'through' it: refused (an extractor
    of the layer would write into the host directory), and nothing lands there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    arc = make_tar(tmp_path / "a.tar", [
        ("d", "sym", str(outside)),  # absolute target: allowed (container-absolute) ...
        ("d/x", "file", b"pwned"),  # ... but nothing may be written beneath it
    ], "w")
    with pytest.raises(UnsafeArchiveError, match="member 'd/x' lies beneath 'd', a symlink"):
        _import(arc, tmp_path)
    assert not (outside / "x").exists()


def test_hardlinks_inside_archive_are_kept(tmp_path: Path) -> None:
    arc = make_tar(tmp_path / "h.tar", [("z/orig", "file", b"data"), ("a/link", "hard", "z/orig")],
                   "w")
    tree = _import(arc, tmp_path)
    assert tree.entries["a/link"].inode == tree.entries["z/orig"].inode is not None


def test_zip_times_do_not_depend_on_timezone(tmp_path: Path) -> None:
    arc = tmp_path / "w.whl"
    with zipfile.ZipFile(arc, "w") as zf:
        info = zipfile.ZipInfo("pkg/mod.py", date_time=(2024, 1, 2, 3, 4, 5))
        info.external_attr = 0o644 << 16
        zf.writestr(info, "x = 1\n")
    mtimes = []
    for tz in ("UTC", "Asia/Kolkata"):
        os.environ["TZ"] = tz
        time.tzset()
        tree = Tree()
        import_archive(arc, tree, tmp_path / tz, maps=[], sde=2_000_000_000)
        mtimes.append(tree.entries["pkg/mod.py"].mtime)
    os.environ.pop("TZ")
    time.tzset()
    assert mtimes[0] == mtimes[1] == 1704164644  # zip stores even seconds, read as UTC


def test_zip_symlink_escape_is_refused(tmp_path: Path) -> None:
    arc = tmp_path / "e.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        info = zipfile.ZipInfo("a/link")
        info.external_attr = (0o120777) << 16
        zf.writestr(info, "../../etc")
    with pytest.raises(UnsafeArchiveError, match=r"'a/link' -> '\.\./\.\./etc' escapes"):
        _import(arc, tmp_path)


def test_debian_package_data_is_read(tmp_path: Path) -> None:
    tree = _import(busybox_deb(), tmp_path, [PathMap("bin/busybox", "/bin/busybox")])
    entry = tree.entries["bin/busybox"]
    assert entry.kind == FILE and entry.mode == 0o755 and entry.size > 1_000_000


def test_truncated_archive_is_reported(tmp_path: Path) -> None:
    arc = make_tar(tmp_path / "t.tgz", [("a", "file", os.urandom(200_000))])
    arc.write_bytes(arc.read_bytes()[:5000])
    with pytest.raises(IntegrityError, match="damaged or truncated archive"):
        _import(arc, tmp_path)


def test_symlink_into_layer_root_allowed_after_mapping(tmp_path: Path) -> None:
    arc = make_tar(tmp_path / "s.tar", [("d/bin/a", "file", b"a"), ("d/bin/b", "sym", "a")], "w")
    tree = _import(arc, tmp_path, [PathMap("d", "/opt/tool")])
    assert tree.entries["opt/tool/bin/b"].kind == SYMLINK
