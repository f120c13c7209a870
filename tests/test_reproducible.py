"""Same recipe, two fresh stores, hostile differences in the inputs and the host:
the same manifest digest. And cached layers are never rebuilt."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import make_hello_project, need_tool, run_cli


def _perturb(root: Path, mtime: int, uid: int) -> None:
    for p in [root, *root.rglob("*")]:
        os.utime(p, (mtime, mtime), follow_symlinks=False)
        if os.geteuid() == 0:
            os.lchown(p, uid, uid)


def test_two_fresh_stores_same_digest(tmp_path: Path) -> None:
    digests = []
    setups = [
        # (umask, mtime of inputs, owner of inputs, TZ, wall clock via libfaketime)
        (0o022, 1_500_000_000, 0, "UTC", None),
        (0o077, 1_750_000_000, 4242, "America/Los_Angeles", "2031-07-04 12:00:00"),
    ]
    for i, (umask, mtime, uid, tz, fake_now) in enumerate(setups):
        proj = tmp_path / f"proj{i}"
        proj.mkdir()
        make_hello_project(proj)
        if umask == 0o077:  # files checked out under a strict umask lose group/other bits
            for p in proj.rglob("*"):
                if p.is_file():
                    p.chmod(p.stat().st_mode & 0o700)
        _perturb(proj, mtime, uid)
        prefix = None
        if fake_now:
            prefix = [need_tool("faketime"), fake_now]
        r = run_cli("assemble", "hello", "--archive", tmp_path / f"h{i}.tar", "--json",
                    store=tmp_path / f"store{i}", project=proj, umask=umask,
                    env={"TZ": tz}, prefix=prefix)
        assert r.rc == 0, r.err
        digests.append(r.json()["images"][0]["manifest_digest"])
    assert digests[0] == digests[1]
    # The archives themselves are byte-identical too.
    assert (tmp_path / "h0.tar").read_bytes() == (tmp_path / "h1.tar").read_bytes()


def test_source_date_epoch_sets_created(tmp_path: Path, hello_project: Path) -> None:
    r = run_cli("assemble", "hello", "--json", store=tmp_path / "s", project=hello_project,
                env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert r.rc == 0, r.err
    info = run_cli("inspect", "hello", "--json", store=tmp_path / "s").json()
    assert info["created"] == "2023-11-14T22:13:20Z"
    default = run_cli("assemble", "hello", "--json", store=tmp_path / "s2",
                      project=hello_project).json()
    assert default["images"][0]["manifest_digest"] != r.json()["images"][0]["manifest_digest"]


def test_cached_layers_are_not_rebuilt(tmp_path: Path, hello_project: Path) -> None:
    store = tmp_path / "s"
    first = run_cli("assemble", "hello", "--json", store=store, project=hello_project).json()
    assert sorted(first["layers"]["built"]) == ["busybox", "hello"]
    second = run_cli("assemble", "hello", "--json", store=store, project=hello_project).json()
    assert second["layers"]["built"] == []
    assert sorted(second["layers"]["reused"]) == ["busybox", "hello"]
    assert second["images"][0]["manifest_digest"] == first["images"][0]["manifest_digest"]
    records_before = sorted(p.name for p in (store / "ociforge" / "layers").iterdir())

    # Touching a file (mtime only) changes nothing.
    os.utime(hello_project / "files" / "hello.sh", (2_000_000_000, 2_000_000_000))
    again = run_cli("assemble", "hello", "--json", store=store, project=hello_project).json()
    assert again["layers"]["built"] == []

    # Changing one file rebuilds exactly its layer.
    (hello_project / "files" / "etc" / "motd").write_text("changed\n")
    third = run_cli("assemble", "hello", "--json", store=store, project=hello_project).json()
    assert third["layers"]["built"] == ["hello"] and third["layers"]["reused"] == ["busybox"]
    assert third["images"][0]["manifest_digest"] != first["images"][0]["manifest_digest"]
    records_after = sorted(p.name for p in (store / "ociforge" / "layers").iterdir())
    assert len(records_after) == len(records_before) + 1


def test_other_compression_recompresses_without_rebuilding(tmp_path: Path,
                                                            hello_project: Path) -> None:
    store = tmp_path / "s"
    assert run_cli("assemble", "hello", store=store, project=hello_project).rc == 0
    r = run_cli("assemble", "hello", "--compression", "zstd", "--json", store=store,
                project=hello_project)
    assert r.rc == 0, r.err
    assert r.json()["layers"]["built"] == []
    assert sorted(r.json()["layers"]["transcoded"]) == ["busybox", "hello"]
    manifest = run_cli("inspect", "hello", "--raw", "manifest", store=store).out
    assert "tar+zstd" in manifest


@pytest.mark.parametrize("cmd", [["layers", "ls"], ["images", "ls"], ["inspect", "hello"]])
def test_listing_commands(tmp_path: Path, hello_project: Path, cmd: list[str]) -> None:
    store = tmp_path / "s"
    assert run_cli("assemble", "hello", store=store, project=hello_project).rc == 0
    r = run_cli(*cmd, "--json", store=store, project=hello_project)
    assert r.rc == 0, r.err
    data = r.json()
    if cmd[0] == "layers":
        assert {d["name"] for d in data} == {"busybox", "hello"}
        assert all(d["diff_id"].startswith("sha256:") for d in data)
    elif cmd[0] == "images":
        assert data[0]["name"] == "hello" and data[0]["layers"] == ["busybox", "hello"]
        assert data[0]["assembled"].startswith("sha256:")
    else:
        assert data["config"]["User"] == "185:185"
        assert [layer["name"] for layer in data["layers"]] == ["busybox", "hello"]
    shutil.rmtree(store)


def test_warm_runs_do_not_reread_unchanged_files(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """File digests are remembered by stat signature; a changed file is re-hashed."""
    from ociforge import digestcache
    from ociforge.digestcache import DigestCache

    # ctime cannot be set back, so let "older than the racy window" mean 0 ns here.
    monkeypatch.setattr(digestcache, "RACY_NS", 0)
    f = tmp_path / "big.bin"
    f.write_bytes(b"x" * 1000)
    old = 1_600_000_000
    os.utime(f, (old, old))
    cache = DigestCache(tmp_path / "cache.json")
    first = cache.sha256(f)
    cache.save()
    again = DigestCache(tmp_path / "cache.json")
    assert again.sha256(f) == first and again.hits == 1
    # Same size, other content, other mtime: the signature differs, the digest is new.
    f.write_bytes(b"y" * 1000)
    os.utime(f, (old + 10, old + 10))
    assert again.sha256(f) != first
    # With the real window, a file written just now is hashed but not remembered.
    monkeypatch.setattr(digestcache, "RACY_NS", 2_000_000_000)
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(b"z")
    again.sha256(fresh)
    assert str(fresh) not in again.entries


def test_zstd_level_is_part_of_a_blobs_identity(tmp_path: Path, hello_project: Path) -> None:
    """A cached zstd blob made at another level is recompressed, never reused, and the
    same level gives the same bytes again."""
    store = tmp_path / "s"

    def zstd(level: str) -> dict:
        r = run_cli("assemble", "hello", "--compression", "zstd", "--json", store=store,
                    project=hello_project, env={"OCIFORGE_ZSTD_LEVEL": level})
        assert r.rc == 0, r.err
        return r.json()

    at3 = zstd("3")
    assert sorted(at3["layers"]["built"]) == ["busybox", "hello"]
    assert zstd("3")["layers"]["reused"] == ["busybox", "hello"]
    at1 = zstd("1")
    assert at1["layers"]["built"] == [] and sorted(at1["layers"]["transcoded"]) == [
        "busybox", "hello"]
    assert at1["images"][0]["manifest_digest"] != at3["images"][0]["manifest_digest"]
    back = zstd("3")
    assert back["images"][0]["manifest_digest"] == at3["images"][0]["manifest_digest"]
    bad = run_cli("assemble", "hello", store=store, project=hello_project,
                  env={"OCIFORGE_ZSTD_LEVEL": "30"})
    assert bad.rc == 1 and "internal" not in bad.err
    assert bad.err.strip() == "ociforge: error: OCIFORGE_ZSTD_LEVEL must be 1..19, got '30'"
