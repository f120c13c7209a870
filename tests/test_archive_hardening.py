"""Archive import as an attacker would try it (issue 13, classes 3 and 4): crafted tars,
zips and .debs that write through links, smuggle setuid, hide NULs or devices, and
bombs that expand without bound. Each is refused with exit-4 `UnsafeArchiveError`
naming the archive and member, or imported without the danger."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from ociforge.archives import Limits, PathMap, import_archive
from ociforge.errors import IntegrityError, UnsafeArchiveError
from ociforge.sources.archive import ArchiveSource
from ociforge.sources.base import BuildContext
from ociforge.tartree import DIR, FILE, Tree, write_tar

from conftest import need_tool, run_cli, sha256, store_is_empty, write


def tar_of(path: Path, members: list[dict[str, Any]], mode: str = "w") -> Path:
    """A tar from member dicts: name, type (file/dir/sym/hard/chr/fifo), data, link,
    mode, uid, gid, pax (extra PAX records). PAX format, so names may hold anything."""
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
             "hard": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            ti = tarfile.TarInfo(m["name"])
            ti.type = types[m.get("type", "file")]
            ti.mode = m.get("mode", 0o755 if ti.type == tarfile.DIRTYPE else 0o644)
            ti.uid, ti.gid = m.get("uid", 0), m.get("gid", 0)
            ti.mtime = 1_700_000_000
            ti.linkname = m.get("link", "")
            ti.pax_headers = m.get("pax", {})
            data = m.get("data", b"")
            ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
            tar.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return path


DEFAULT_LIMITS = Limits()


def imp(archive: Path, tmp: Path, maps: list[PathMap] | None = None, *,
        tree: Tree | None = None, preserve_owners: bool = False,
        limits: Limits = DEFAULT_LIMITS) -> Tree:
    tree = tree if tree is not None else Tree()
    import_archive(archive, tree, tmp / "staging", maps=maps or [], sde=2_000_000_000,
                   preserve_owners=preserve_owners, limits=limits)
    return tree


def refused(archive: Path, tmp: Path, match: str, **kw: Any) -> UnsafeArchiveError:
    with pytest.raises(UnsafeArchiveError, match=match) as err:
        imp(archive, tmp, **kw)
    assert err.value.exit_code == 4
    assert archive.name in str(err.value)
    return err.value


def layer_members(tree: Tree) -> dict[str, tarfile.TarInfo]:
    """The layer tar the tree becomes, read back: what a registry and runtime get."""
    buf = io.BytesIO()
    write_tar(tree, buf, 2_000_000_000)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        return {ti.name.rstrip("/"): ti for ti in tar}


# -- class 3: escapes through links ----------------------------------------------------

@pytest.mark.parametrize("members,match", [
    # Each link is harmless alone: x is the root, so x/x/y is y, and y -> ../.. leaves it;
    # then a file written beneath y would land two levels above the root.
    ([{"name": "x", "type": "sym", "link": "."},
      {"name": "x/x/y", "type": "sym", "link": "../.."},
      {"name": "x/x/y/tmp/pwned", "data": b"!"}],
     r"member 'x/x/y' lies beneath 'x', a symlink"),
    # An absolute symlink with a file written beneath it (a host-side extractor writes
    # to the host's /etc).
    ([{"name": "etc", "type": "sym", "link": "/etc"},
      {"name": "etc/cron.d/evil", "data": b"* * * * * root sh"}],
     r"member 'etc/cron.d/evil' lies beneath 'etc', a symlink"),
    # A directory replaced by a link later in the archive, then written through.
    ([{"name": "d", "type": "dir"}, {"name": "d/ok", "data": b"ok"},
      {"name": "d", "type": "sym", "link": "/root/.ssh"},
      {"name": "d/authorized_keys", "data": b"ssh-rsa AAAA"}],
     r"member 'd/authorized_keys' lies beneath 'd', a symlink"),
    # Links that never have a member beneath them, but chained lead out of the root:
    # b is the root, so b/.. is above it.
    ([{"name": "b", "type": "sym", "link": "."},
      {"name": "a", "type": "sym", "link": "b/.."}],
     r"symlink /a -> 'b/\.\.' leaves the layer root \(through symlink /b -> '\.'\)"),
    ([{"name": "usr/lib", "type": "sym", "link": "/"},
      {"name": "usr/share/x", "type": "sym", "link": "../lib/.."}],
     r"symlink /usr/share/x -> '\.\./lib/\.\.' leaves the layer root \(through symlink "
     r"/usr/lib -> '/'\)"),
    # A hard link to a file whose directory has since become a link: tar's link(2)
    # would resolve it through the link, on the host.
    ([{"name": "d/passwd", "data": b"root:x:0:0"},
      {"name": "d", "type": "sym", "link": "/etc"},
      {"name": "h", "type": "hard", "link": "d/passwd"}],
     r"member 'h' is a hard link to 'd/passwd', which is not an earlier regular file of "
     r"the archive \(it lies beneath 'd', a symlink\)"),
    # A file used as a directory.
    ([{"name": "f", "data": b"x"}, {"name": "f/g", "data": b"y"}],
     r"member 'f/g' lies beneath 'f', a file"),
])
def test_escapes_through_links_are_refused(tmp_path: Path, members: list[dict[str, Any]],
                                           match: str) -> None:
    refused(tar_of(tmp_path / "evil.tar", members), tmp_path, match)


def test_mapping_checks_archive_chain_and_image_path(tmp_path: Path) -> None:
    # The link is not selected, but the member selected lies beneath it in the archive.
    arc = tar_of(tmp_path / "a.tar", [{"name": "pkg/lib", "type": "sym", "link": "/etc"},
                                      {"name": "pkg/lib/shadow", "data": b"x"}])
    refused(arc, tmp_path, r"member 'pkg/lib/shadow' lies beneath 'pkg/lib', a symlink",
            maps=[PathMap("pkg/lib/shadow", "/opt/shadow")])
    # Two harmless archive paths mapped so that one lands beneath the other's link.
    arc = tar_of(tmp_path / "b.tar", [{"name": "links/d", "type": "sym", "link": "/etc"},
                                      {"name": "files/passwd", "data": b"x"}])
    refused(arc, tmp_path, r"member 'files/passwd' would be written to /opt/d/passwd, "
            r"beneath 'opt/d', a symlink in the layer",
            maps=[PathMap("links/d", "/opt/d"), PathMap("files/passwd", "/opt/d/passwd")])


def test_link_from_another_source_of_the_layer_is_not_written_through(tmp_path: Path) -> None:
    tree = Tree()
    tree.add_symlink("opt/app", "/etc")  # e.g. a `files` source's symlink
    arc = tar_of(tmp_path / "app.tar", [{"name": "conf", "data": b"x"}])
    refused(arc, tmp_path, r"beneath 'opt/app', a symlink in the layer", tree=tree,
            maps=[PathMap("conf", "/opt/app/conf")])


def test_links_replaced_by_later_members_and_inner_links_still_work(tmp_path: Path) -> None:
    """What real archives do keeps working: a link replaced by a directory, relative
    links inside the tree (also through other links), absolute targets, hard links."""
    arc = tar_of(tmp_path / "ok.tar", [
        {"name": "d", "type": "sym", "link": "/etc"},
        {"name": "d", "type": "dir"},  # replaces the link
        {"name": "d/f", "data": b"f"},
        {"name": "usr/lib/jvm/java-17/bin/java", "data": b"ELF"},
        {"name": "usr/lib/jvm/default-java", "type": "sym", "link": "java-17"},
        {"name": "usr/bin/java", "type": "sym", "link": "../lib/jvm/default-java/bin/java"},
        {"name": "etc/alternatives/java", "type": "sym", "link": "/usr/bin/java"},
        {"name": "lib", "type": "sym", "link": "usr/lib"},
        {"name": "bin/j", "type": "sym", "link": "../lib/../usr/bin/java"},
        {"name": "bin/loop", "type": "sym", "link": "loop/x"},  # ELOOP, not an escape
        {"name": "usr/bin/java2", "type": "hard", "link": "usr/lib/jvm/java-17/bin/java"},
    ])
    tree = imp(arc, tmp_path)
    assert tree.entries["d"].kind == DIR and tree.entries["d/f"].kind == FILE
    layer = layer_members(tree)
    java = layer["usr/lib/jvm/java-17/bin/java"]  # the first in tar order carries the data
    assert java.islnk() and java.linkname == "usr/bin/java2"
    assert layer["bin/j"].linkname == "../lib/../usr/bin/java"


# -- class 3: privilege -----------------------------------------------------------------

def test_setuid_of_a_non_root_owner_never_becomes_setuid_root(tmp_path: Path) -> None:
    arc = tar_of(tmp_path / "suid.tar.gz", [
        {"name": "bin/sh", "data": b"ELF", "mode": 0o4755, "uid": 1000, "gid": 1000},
        {"name": "bin/grp", "data": b"ELF", "mode": 0o2755, "uid": 1000, "gid": 1000},
        {"name": "shared", "type": "dir", "mode": 0o2775, "uid": 1000, "gid": 1000},
        {"name": "tmp", "type": "dir", "mode": 0o1777, "uid": 1000, "gid": 1000},
        {"name": "bin/h", "type": "hard", "link": "bin/sh", "mode": 0o4755, "uid": 1000},
        {"name": "bin/rootsu", "data": b"ELF", "mode": 0o4755, "uid": 0, "gid": 0},
    ], "w:gz")
    # Owners remapped (the default): every setuid/setgid bit goes, sticky stays.
    layer = layer_members(imp(arc, tmp_path / "a"))
    assert {n: (oct(t.mode), t.uid) for n, t in layer.items() if n != "bin"} == {
        "bin/sh": ("0o755", 0), "bin/grp": ("0o755", 0), "bin/h": ("0o755", 0),
        "shared": ("0o775", 0), "tmp": ("0o1777", 0), "bin/rootsu": ("0o755", 0)}
    # Owners preserved (the Debian base): root's setuid stays, uid 1000's goes.
    layer = layer_members(imp(arc, tmp_path / "b", preserve_owners=True))
    assert (oct(layer["bin/rootsu"].mode), layer["bin/rootsu"].uid) == ("0o4755", 0)
    assert (oct(layer["bin/sh"].mode), layer["bin/sh"].uid) == ("0o755", 1000)
    assert (oct(layer["shared"].mode), oct(layer["tmp"].mode)) == ("0o775", "0o1777")


def test_setuid_in_a_zip_is_dropped(tmp_path: Path) -> None:
    arc = tmp_path / "suid.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        info = zipfile.ZipInfo("bin/tool")
        info.external_attr = 0o104755 << 16
        zf.writestr(info, b"ELF")
    for preserve in (False, True):  # a zip has no owners to preserve
        tree = imp(arc, tmp_path / str(preserve), preserve_owners=preserve)
        assert tree.entries["bin/tool"].mode == 0o755


def test_setuid_in_a_real_deb_is_dropped(tmp_path: Path) -> None:
    """A .deb built by dpkg-deb, holding a setuid program owned by uid 1000."""
    need_tool("dpkg-deb")
    pkg = tmp_path / "pkg"
    write(pkg / "DEBIAN" / "control", "Package: evil\nVersion: 1\nArchitecture: all\n"
          "Maintainer: x <x@example.org>\nDescription: x\n")
    tool = write(pkg / "usr" / "bin" / "tool", "#!/bin/sh\n")
    os.chown(tool, 1000, 1000)
    tool.chmod(0o4755)
    deb = tmp_path / "evil.deb"
    subprocess.run(["dpkg-deb", "--build", "-Zxz", str(pkg), str(deb)], check=True,
                   capture_output=True)
    entry = imp(deb, tmp_path).entries["usr/bin/tool"]
    assert (entry.mode, entry.uid) == (0o755, 0)


# -- class 3: NUL, devices, FIFOs -------------------------------------------------------

@pytest.mark.parametrize("member,match", [
    ({"name": "x", "pax": {"path": "etc/passwd\0.txt"}, "data": b"x"},
     r"member 'etc/passwd\\x00\.txt' has a NUL in its name"),
    ({"name": "l", "type": "sym", "pax": {"linkpath": "/etc/shadow\0x"}},
     r"member 'l' has a NUL in its link target"),
])
def test_nul_in_pax_names_is_refused(tmp_path: Path, member: dict[str, Any],
                                     match: str) -> None:
    refused(tar_of(tmp_path / "nul.tar", [member]), tmp_path, match)


def test_nul_in_a_zip_name_is_refused(tmp_path: Path) -> None:
    arc = tmp_path / "nul.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("evil.shX.txt", b"x")
    arc.write_bytes(arc.read_bytes().replace(b"evil.shX.txt", b"evil.sh\0.txt"))
    refused(arc, tmp_path, r"member 'evil\.sh\\x00\.txt' has a NUL in its name")


@pytest.mark.parametrize("kind,what", [("chr", "a device node"), ("fifo", "a FIFO")])
def test_devices_and_fifos_are_unsafe(tmp_path: Path, kind: str, what: str) -> None:
    arc = tar_of(tmp_path / "dev.tar", [{"name": "dev/x", "type": kind}])
    refused(arc, tmp_path, f"member 'dev/x' is {what}; layers carry only files")


def test_device_in_an_archive_source_exits_4(tmp_path: Path, hello_project: Path) -> None:
    arc = tar_of(hello_project / "dev.tgz", [{"name": "dev/mem", "type": "chr"}], "w:gz")
    write(hello_project / "layers" / "busybox.yaml",
          f"source: {{kind: archive, url: dev.tgz, sha256: {sha256(arc)}}}\n")
    r = run_cli("assemble", "hello", store=tmp_path / "s", project=hello_project)
    assert r.rc == 4 and len(r.err.strip().splitlines()) == 1
    assert ("dev.tgz: member 'dev/mem' is a device node; layers carry only files, "
            "directories and links") in r.err
    assert store_is_empty(tmp_path / "s")


# -- class 4: bounded reading -------------------------------------------------------------

def _zeros_tar(path: Path, size: int, opener: Any = gzip.open) -> Path:
    """A tar holding one `size`-byte member of zeros, compressed by `opener`."""
    with opener(path, "wb") as raw, tarfile.open(fileobj=raw, mode="w|") as tar:
        ti = tarfile.TarInfo("zeros")
        ti.size = size
        tar.addfile(ti, _Zeros(size))
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.n = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        k = min(len(b), self.n)
        b[:k] = bytes(k)
        self.n -= k
        return k


# Peak memory from this process's own address space (VmHWM): ru_maxrss would carry
# the high-water mark of the pytest process it was forked from across the exec.
IMPORT_AND_MEASURE = """
import re, sys, time
from pathlib import Path
from ociforge.archives import import_archive
from ociforge.tartree import Tree
t = time.monotonic()
import_archive(Path(sys.argv[1]), Tree(), Path(sys.argv[2]), maps=[], sde=0)
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())
print(time.monotonic() - t, int(hwm.group(1)) // 1024)
"""


@pytest.mark.parametrize("ext,opener", [("tar.gz", gzip.open), ("tar.xz", None),
                                        ("tar.zst", None)])
def test_a_highly_compressed_member_is_read_in_linear_time_and_bounded_memory(
        tmp_path: Path, ext: str, opener: Any) -> None:
    """The issue's case: a ~260 KB .tar.gz holding 256 MB of zeros took 27 s and 829 MB
    (tarfile's own decompressor inflates whole buffers, then re-slices them per read)."""
    size = 256 << 20
    if opener is None:  # xz and zstd through their command-line tools: fast to make
        tool = {"tar.xz": ["xz", "-0", "-T1"], "tar.zst": ["zstd", "-q", "-1"]}[ext]
        need_tool(tool[0])
        plain = _zeros_tar(tmp_path / "z.tar", size, open)
        subprocess.run([*tool, str(plain)], check=True)
        arc = tmp_path / f"z.{ext}"
        shutil.move(str(plain) + (".xz" if ext == "tar.xz" else ".zst"), arc)
        plain.unlink(missing_ok=True)
    else:
        arc = _zeros_tar(tmp_path / f"z.{ext}", size, opener)
    assert arc.stat().st_size < 2 << 20
    out = subprocess.run([sys.executable, "-c", IMPORT_AND_MEASURE, str(arc),
                          str(tmp_path / "staging")], check=True, capture_output=True,
                         text=True).stdout.split()
    rss_mb = int(out[1])  # out[0], the seconds, is for a person reading -s output
    assert (tmp_path / "staging" / "0").stat().st_size == size
    # Peak memory, not time (no timings in tests): the quadratic reader held the whole
    # inflated buffer (829 MB for this archive); the streaming one stays near 30 MB.
    assert rss_mb < 150, f"peak RSS {rss_mb} MB"


def _staged_bytes(staging: Path) -> int:
    return sum(p.stat().st_size for p in staging.iterdir()) if staging.exists() else 0


def test_size_cap_stops_a_tar_bomb_before_the_disk_fills(tmp_path: Path) -> None:
    arc = _zeros_tar(tmp_path / "bomb.tar.gz", 64 << 20)
    refused(arc, tmp_path, r"bomb\.tar\.gz: expands past 16 MiB \(16777216 bytes\), the "
            r"source's max_size \(at member 'zeros'\)", limits=Limits(max_size=16 << 20))
    assert _staged_bytes(tmp_path / "staging") <= 16 << 20


def test_size_cap_counts_the_staged_data_of_every_member(tmp_path: Path) -> None:
    arc = tar_of(tmp_path / "many.tar", [{"name": f"f{i}", "data": bytes(300_000)}
                                         for i in range(8)])
    refused(arc, tmp_path, r"many\.tar: expands past 1 MiB .* \(at member 'f3'\)",
            limits=Limits(max_size=1 << 20))
    assert _staged_bytes(tmp_path / "staging") <= 1 << 20


def test_size_cap_counts_headers_too(tmp_path: Path) -> None:
    """Members without data whose headers are padded still expand the stream."""
    arc = tar_of(tmp_path / "hdr.tar.gz", [{"name": f"d{i}", "type": "dir",
                                            "pax": {"comment": "A" * (1 << 20)}}
                                           for i in range(4)], "w:gz")
    refused(arc, tmp_path, r"hdr\.tar\.gz: expands past 2 MiB \(2097152 bytes\), the "
            r"source's max_size; raise", limits=Limits(max_size=2 << 20))


def test_member_cap(tmp_path: Path) -> None:
    arc = tar_of(tmp_path / "many.tar.gz", [{"name": f"d/{i}", "type": "dir"}
                                            for i in range(1001)], "w:gz")
    refused(arc, tmp_path, r"many\.tar\.gz: has more than 1000 members, the source's "
            "max_members", limits=Limits(max_members=1000))
    imp(arc, tmp_path, limits=Limits(max_members=1001))


def test_a_huge_pax_header_is_not_read_into_memory(tmp_path: Path) -> None:
    arc = tar_of(tmp_path / "pax.tar.gz", [{"name": "x", "data": b"x",
                                            "pax": {"comment": "A" * (20 << 20)}}], "w:gz")
    refused(arc, tmp_path, r"a member's headers \(PAX records or GNU long names\) pass 16 MiB")


def test_zip_bomb_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    arc = tmp_path / "bomb.whl"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(4):
            with zf.open(f"z{i}", "w") as f:
                for _ in range(16):
                    f.write(bytes(1 << 20))
    assert arc.stat().st_size < 1 << 20
    refused(arc, tmp_path, r"bomb\.whl: expands past 32 MiB .*max_size \(its members "
            r"declare 67108864 bytes\)",
            limits=Limits(max_size=32 << 20))
    assert _staged_bytes(tmp_path / "staging") == 0
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(11):
            zf.writestr(f"f{i}", b"")
    refused(many, tmp_path, "has more than 10 members", limits=Limits(max_members=10))


def test_deb_data_bomb_is_capped(tmp_path: Path) -> None:
    need_tool("dpkg-deb")
    pkg = tmp_path / "pkg"
    write(pkg / "DEBIAN" / "control", "Package: bomb\nVersion: 1\nArchitecture: all\n"
          "Maintainer: x <x@example.org>\nDescription: x\n")
    (pkg / "usr").mkdir()
    with open(pkg / "usr" / "zeros", "wb") as f:
        f.truncate(64 << 20)
    deb = tmp_path / "bomb.deb"
    subprocess.run(["dpkg-deb", "--build", "-Zxz", str(pkg), str(deb)], check=True,
                   capture_output=True)
    refused(deb, tmp_path, r"bomb\.deb: expands past 16 MiB", limits=Limits(max_size=16 << 20))
    assert _staged_bytes(tmp_path / "staging") <= 16 << 20


def test_caps_are_recipe_fields_with_defaults_and_not_keyed(tmp_path: Path) -> None:
    base = {"kind": "archive", "url": "a.tgz", "sha256": "0" * 64}
    default = ArchiveSource.model_validate(base)
    capped = ArchiveSource.model_validate({**base, "max_size": "2GiB", "max_members": 10})
    assert default.limits() == Limits(8 << 30, 1_000_000)
    assert capped.limits() == Limits(2 << 30, 10)
    ctx = BuildContext(project_root=tmp_path)
    assert default.key_material(ctx) == capped.key_material(ctx)


def test_size_cap_from_the_recipe_exits_4(tmp_path: Path, hello_project: Path) -> None:
    arc = _zeros_tar(hello_project / "bomb.tgz", 8 << 20)
    write(hello_project / "layers" / "busybox.yaml",
          f"source: {{kind: archive, url: bomb.tgz, sha256: {sha256(arc)}, max_size: 1MiB}}\n")
    r = run_cli("assemble", "hello", store=tmp_path / "s", project=hello_project)
    assert r.rc == 4 and len(r.err.strip().splitlines()) == 1
    assert ("bomb.tgz: expands past 1 MiB (1048576 bytes), the source's max_size (at "
            "member 'zeros'); raise max_size in the recipe if the archive is trusted") in r.err
    assert store_is_empty(tmp_path / "s")


def test_a_chain_of_extended_headers_is_refused(tmp_path: Path) -> None:
    """tarfile follows chained PAX headers recursively: thousands of them would end in
    a RecursionError (an internal error) rather than a refusal."""
    pax = tarfile.TarInfo("x")
    pax.pax_headers = {"comment": "c"}
    one = pax.tobuf(format=tarfile.PAX_FORMAT)[:1024]  # the PAX header and its record
    arc = tmp_path / "chain.tar"
    arc.write_bytes(one * 5000 + tarfile.TarInfo("f").tobuf(format=tarfile.PAX_FORMAT)
                    + bytes(1024))
    refused(arc, tmp_path, "a chain of thousands of extended headers")


def test_a_deb_with_a_bad_ar_header_is_a_damaged_archive(tmp_path: Path) -> None:
    deb = tmp_path / "bad.deb"
    deb.write_bytes(b"!<arch>\n" + b"debian-binary   " + b" " * 32 + b"notanumber" + b"`\n")
    with pytest.raises(IntegrityError, match=r"bad\.deb: damaged \.deb \(a bad ar member header\)"):
        imp(deb, tmp_path)
