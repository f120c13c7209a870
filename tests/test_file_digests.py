"""A fresh checkout takes file digests from a plan's table only where git vouches
for the bytes: a stale or foreign table can leave a file unhashed-for, never wrong."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from ociforge.digestcache import DigestCache
from ociforge.gitfiles import clean_blobs


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), "-c", "user.email=t@t", "-c", "user.name=t",
                    *args], check=True, capture_output=True)


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def repo(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "files").mkdir(parents=True)
    (src / "files" / "a.bin").write_bytes(b"a" * 5000)
    (src / "files" / "b.txt").write_bytes(b"line\r\n")
    (src / "files" / "c.bin").write_bytes(b"c" * 10)
    (src / ".gitattributes").write_text("*.txt text=auto\n")
    git(tmp_path, "init", "-q", str(src))
    git(src, "add", "-A")
    git(src, "commit", "-qm", "x")
    return src


def table_from(checkout: Path) -> dict[str, str]:
    """What `plan --json` publishes: hashed on one runner, by blob id."""
    cache = DigestCache(None, checkout)
    cache.collect = True
    for p in sorted((checkout / "files").iterdir()):
        cache.sha256(p)
    return cache.by_blob


def test_fresh_clone_takes_digests_only_for_files_git_vouches_for(tmp_path: Path) -> None:
    src = repo(tmp_path)
    table = table_from(src)
    assert len(table) == 2  # b.txt has a converting attribute: never in the table
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(src), str(clone))
    (clone / "files" / "c.bin").write_bytes(b"changed")  # modified after checkout
    (clone / "files" / "d.bin").write_bytes(b"untracked")
    cache = DigestCache(None, clone)
    cache.seed(table)
    got = {p.name: cache.sha256(p) for p in sorted((clone / "files").iterdir())}
    assert got == {p.name: sha(p) for p in sorted((clone / "files").iterdir())}
    assert cache.git_hits == 1  # a.bin only: c.bin changed, b.txt converts, d.bin untracked


def test_a_wrong_table_entry_is_never_served_for_other_bytes(tmp_path: Path) -> None:
    src = repo(tmp_path)
    cache = DigestCache(None, src)
    # A table from another commit names other blobs: it cannot match these files.
    cache.seed({"0" * 40: "f" * 64})
    assert cache.sha256(src / "files" / "a.bin") == sha(src / "files" / "a.bin")
    assert cache.git_hits == 0


def test_no_git_repository_means_hashing(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"x")
    assert clean_blobs(tmp_path) == {}
    cache = DigestCache(None, tmp_path)
    cache.seed({"1" * 40: "e" * 64})
    assert cache.sha256(tmp_path / "x") == sha(tmp_path / "x")


def test_plan_json_lists_the_digests_of_the_files_its_layers_take(tmp_path: Path) -> None:
    from conftest import run_cli, write

    src = repo(tmp_path)
    write(src / "layers" / "a.yaml",
          "source: {kind: files, files: [{src: files/a.bin, dest: /a.bin}]}\n")
    write(src / "recipes" / "r.yaml", "images:\n  img: {layers: [a]}\n")
    git(src, "add", "-A")
    git(src, "commit", "-qm", "layers")
    r = run_cli("plan", "--all", "--json", store=tmp_path / "store", project=src)
    assert r.rc == 0, r.err
    blob = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD:files/a.bin"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert json.loads(r.out)["file_digests"] == {blob: sha(src / "files" / "a.bin")}
