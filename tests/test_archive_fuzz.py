"""Fuzzing the archive importer with generated tar and zip member lists.

Property: importing either refuses with an exit-4 error (`IntegrityError`, of which
`UnsafeArchiveError` is one) or yields a layer in which every path, and every link
target followed through the layer's own links, stays inside the root; nothing is
written beneath a link; there is no device or FIFO; and no setuid/setgid bit sits on
an entry whose owner was remapped (or, with owners kept, on one not owned by root).

The layer is checked as bytes (the tar `write_tar` makes, read back), with a resolver
written here independently of ociforge's. The run in the suite is bounded and
derandomized; `OCIFORGE_FUZZ_EXAMPLES=100000` makes a longer one by hand.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ociforge.archives import PathMap, import_archive
from ociforge.errors import BuildError, IntegrityError
from ociforge.tartree import Tree, write_tar

EXAMPLES = int(os.environ.get("OCIFORGE_FUZZ_EXAMPLES", "5000"))

SAFE_PARTS = st.sampled_from(["a", "b", "x", "etc", "."])
BAD_PARTS = st.sampled_from(["..", "", "n\0ul", "L" * 120])
SUID = st.sampled_from([0, 0o4000, 0o2000, 0o1000, 0o6000])
OWNER = st.sampled_from([0, 1, 1000, 65534])
SAFE_KINDS = st.sampled_from(["file", "dir", "dir", "sym", "sym", "hard"])
BAD_KINDS = st.sampled_from(["fifo", "chr"])


def maybe(draw: st.DrawFn, hostility: int, safe: st.SearchStrategy[Any],
          bad: st.SearchStrategy[Any]) -> Any:
    """`bad` with a chance of `hostility` percent, else `safe`: an archive with one bad
    member in ten is refused whole, so most examples must be mostly harmless to reach
    the import of link chains and replacements at all."""
    return draw(bad if draw(st.integers(0, 99)) < hostility else safe)


def path(draw: st.DrawFn, hostility: int) -> str:
    parts = [maybe(draw, hostility, SAFE_PARTS, BAD_PARTS)
             for _ in range(draw(st.integers(1, 4)))]
    lead = maybe(draw, hostility, st.just(""), st.just("/"))
    return lead + "/".join(parts) + draw(st.sampled_from(["", "", "/"]))


def target(draw: st.DrawFn, hostility: int) -> str:
    """A link target: relative with `..` (legitimate inside the root), or absolute."""
    part = st.sampled_from(["a", "b", "x", ".", "..", ".."])
    parts = [maybe(draw, hostility, part, BAD_PARTS) for _ in range(draw(st.integers(1, 5)))]
    return draw(st.sampled_from(["", "", "/"])) + "/".join(parts)


@st.composite
def members(draw: st.DrawFn) -> list[dict[str, Any]]:
    hostility = draw(st.sampled_from([0, 0, 1, 5, 20]))
    out: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 10))):
        kind = maybe(draw, hostility, SAFE_KINDS, BAD_KINDS)
        # Names and link targets often reuse earlier names, so chains and
        # replacements happen: `x -> .` then `x/x/y -> ../..`, `d` dir then `d` link.
        earlier = [m["name"] for m in out]
        dirs = [m["name"] for m in out if m["kind"] == "dir"]
        files = [m["name"] for m in out if m["kind"] == "file"]
        name = path(draw, hostility)
        how = draw(st.integers(0, 3))
        if (how == 1 and earlier) or (how >= 2 and dirs):  # beneath an earlier member
            above = draw(st.sampled_from(earlier if how == 1 else dirs))
            name = above.rstrip("/") + "/" + name.lstrip("/")
        how = draw(st.integers(0, 3))
        if kind == "hard" and files and how:
            link = draw(st.sampled_from(files))
        elif earlier and how == 1:
            link = draw(st.sampled_from(earlier))
        else:
            link = target(draw, hostility)
        out.append({"name": name, "kind": kind, "target": link,
                    "mode": (0o755 if kind == "dir" else 0o644) | draw(SUID),
                    "uid": draw(OWNER), "gid": draw(OWNER),
                    "data": draw(st.binary(max_size=8))})
    return out


@st.composite
def mappings(draw: st.DrawFn) -> tuple[str, str] | None:
    if draw(st.booleans()):
        return None
    return path(draw, 0), draw(st.sampled_from(["/", "/opt/x", "/a"]))


def write_tar_archive(path: Path, ms: list[dict[str, Any]]) -> None:
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
             "hard": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for m in ms:
            ti = tarfile.TarInfo(m["name"])
            ti.type, ti.mode, ti.uid, ti.gid = types[m["kind"]], m["mode"], m["uid"], m["gid"]
            if m["kind"] in ("sym", "hard"):
                ti.linkname = m["target"]
            # A NUL only survives in a PAX record (ustar fields end at the first NUL).
            if "\0" in m["name"]:
                ti.pax_headers["path"] = m["name"]
            if "\0" in ti.linkname:
                ti.pax_headers["linkpath"] = ti.linkname
            if m["kind"] == "file":
                ti.size = len(m["data"])
                tar.addfile(ti, io.BytesIO(m["data"]))
            else:
                tar.addfile(ti)


def write_zip_archive(path: Path, ms: list[dict[str, Any]]) -> None:
    ifmt = {"file": stat.S_IFREG, "hard": stat.S_IFREG, "dir": stat.S_IFDIR,
            "sym": stat.S_IFLNK, "fifo": stat.S_IFIFO, "chr": stat.S_IFCHR}
    with zipfile.ZipFile(path, "w") as zf:
        for m in ms:
            name = m["name"].replace("\0", "_")  # zipfile cuts names at NUL itself
            if m["kind"] == "dir":
                name = name.rstrip("/") + "/"
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (ifmt[m["kind"]] | m["mode"]) << 16
            data = m["target"].encode("utf-8", "surrogateescape") if m["kind"] == "sym" \
                else m["data"]
            zf.writestr(info, b"" if m["kind"] == "dir" else data)


def escapes(links: dict[str, str], files: set[str], link: str) -> bool:
    """Does following `link` (one path of `links`: path → target) go above the root?
    Written apart from ociforge's resolver: a recursive walk with a hop budget; a
    file used as a directory ends the walk (ENOTDIR), as a loop does (ELOOP)."""
    budget = [40]

    def walk(cwd: list[str], target: str, last_followed: bool) -> list[str] | None:
        here = [] if target.startswith("/") else list(cwd)
        parts = [p for p in target.split("/") if p not in ("", ".")]
        for i, part in enumerate(parts):
            if part == "..":
                if not here:
                    raise OverflowError  # above the root
                here.pop()
                continue
            here.append(part)
            inner = "/".join(here)
            if inner in files and i < len(parts) - 1:
                return None
            if inner in links and (i < len(parts) - 1 or last_followed):
                budget[0] -= 1
                if budget[0] < 0:
                    return None  # a loop: resolves nowhere
                nxt = walk(here[:-1], links[inner], True)
                if nxt is None:
                    return None
                here = nxt
        return here

    try:
        walk(link.split("/")[:-1], links[link], False)
    except OverflowError:
        return True
    return False


def check_layer(tree: Tree, preserve_owners: bool, zip_format: bool) -> None:
    buf = io.BytesIO()
    write_tar(tree, buf, 2_000_000_000)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        layer = {ti.name.rstrip("/"): ti for ti in tar}
    links = {n: ti.linkname for n, ti in layer.items() if ti.issym()}
    files = {n for n, ti in layer.items() if ti.isreg() or ti.islnk()}
    for name, ti in layer.items():
        parts = name.split("/")
        assert name and not name.startswith("/") and "\0" not in name, name
        assert ".." not in parts and "" not in parts and "." not in parts, name
        for i in range(1, len(parts)):
            above = layer.get("/".join(parts[:i]))
            assert above is None or above.isdir(), f"{name} lies beneath {above.name}"
        assert ti.isreg() or ti.isdir() or ti.issym() or ti.islnk(), name
        if ti.issym():
            assert "\0" not in ti.linkname
            assert not escapes(links, files, name), f"{name} -> {ti.linkname} leaves the root"
        if ti.islnk():
            assert layer[ti.linkname].isreg(), f"{name} links to {ti.linkname}"
        if ti.mode & 0o6000:
            assert preserve_owners and not zip_format and ti.uid == 0, \
                f"{name} is {oct(ti.mode)} owned by {ti.uid}"


def kind_of_refusal(e: Exception) -> str:
    """The message without names and numbers, for --hypothesis-show-statistics."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|\S+\.(tar|zip):|\d+", "_", str(e))[:60]


@pytest.mark.filterwarnings("ignore:Duplicate name")  # zip members named twice: on purpose
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ms=members(), zip_format=st.booleans(), preserve_owners=st.booleans(),
       mapping=mappings())
def test_importer_refuses_or_keeps_everything_inside(
        ms: list[dict[str, Any]], zip_format: bool, preserve_owners: bool,
        mapping: tuple[str, str] | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        arc = Path(tmp) / ("a.zip" if zip_format else "a.tar")
        (write_zip_archive if zip_format else write_tar_archive)(arc, ms)
        maps = [PathMap(mapping[0].strip("/"), mapping[1])] if mapping else []
        tree = Tree()
        try:
            import_archive(arc, tree, Path(tmp) / "staging", maps=maps, sde=2_000_000_000,
                           preserve_owners=preserve_owners)
        except IntegrityError as e:
            event("refused: " + kind_of_refusal(e))
            return  # refused as unsafe: exit 4
        except BuildError as e:
            assert "matched no member" in str(e), e  # a recipe mistake, not the archive
            event("mapping matched nothing")
            return
        event(f"imported {'<5' if len(tree) < 5 else '5+'} entries")
        check_layer(tree, preserve_owners, zip_format)
