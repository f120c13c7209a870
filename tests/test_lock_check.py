"""Locks are made by `ociforge lock` only: `ociforge lock --check` (run by CI) and every
build verify them without the network, and the Maven lock format records how each
pin was verified. Repositories here are stand-ins on 127.0.0.1 or nothing at all."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from maven_repo import publish
from project_copy import PROJECT, copy_project

from ociforge import pgpsig
from ociforge.errors import RecipeError
from ociforge.sources.maven import LockEntry, read_lock, render_lock

from conftest import run_cli, store_is_empty, write
from httpserver import serve

OFFLINE = {"OCIFORGE_MAVEN_SETTINGS": "none", "OCIFORGE_MAVEN_REPOS": "http://127.0.0.1:9",
           "OCIFORGE_INDEX_URL": "http://127.0.0.1:9/simple"}
A, B = "org.example:alpha:1.0", "org.example:beta:2.0"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIFORGE_CACHE", str(tmp_path / "cache"))
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)


def test_lock_lines_old_and_new_formats(tmp_path: Path) -> None:
    """The first format (coordinate, sha256, optional repository) still reads; the
    fields added since read back as written; a field ociforge does not know is refused
    with its line."""
    lock = tmp_path / "l.lock"
    lock.write_text(f"# old\n{A} sha256:{'a' * 64} https://repo1.maven.org/maven2\n"
                    f"{B} sha256:{'b' * 64}\n")
    old = read_lock(lock)
    assert old[A] == LockEntry("a" * 64, "https://repo1.maven.org/maven2")
    assert old[B] == LockEntry("b" * 64) and old[B].size is None and old[B].asc is None
    new = {A: LockEntry("a" * 64, "https://repo1.maven.org/maven2", 936997, "sha1",
                        "unverified:FEB9209F2F2F3F4664841E55AC107B386692DADD"),
           B: LockEntry("b" * 64, "http://127.0.0.1:1/m2", 10, "sha512", "none")}
    lock.write_text(render_lock(new))
    assert read_lock(lock) == new
    assert (f"{A} sha256:{'a' * 64} https://repo1.maven.org/maven2 size=936997 checksum=sha1 "
            "asc=unverified:FEB9209F2F2F3F4664841E55AC107B386692DADD") in lock.read_text()
    for bad in ("checksum=crc32", "size=big", "signed=yes", "asc=maybe"):
        lock.write_text(f"# x\n{A} sha256:{'a' * 64} https://r.example {bad}\n")
        with pytest.raises(RecipeError, match=rf"l\.lock:2: '{bad}' is not a lock field"):
            read_lock(lock)


def _two_layers(root: Path, lock_a: str = "layers/locks/shared.lock") -> Path:
    for name, coord in (("one", A), ("two", B)):
        write(root / "layers" / f"{name}.yaml", f"""\
            source:
              kind: maven
              lock: {lock_a}
              artifacts: [{coord}]
            """)
    write(root / "recipes" / "r.yaml", "images:\n  img: {layers: [one, two]}\n")
    return root


def test_lock_check_names_layer_lock_and_what_is_missing_or_stale(tmp_path: Path) -> None:
    """No network (the only repository is 127.0.0.1:9, where nothing listens): a
    missing lock, a missing pin and a pin no layer asks for each fail with exit 3."""
    proj = _two_layers(tmp_path / "p")
    store = tmp_path / "s"
    r = run_cli("lock", "--check", store=store, project=proj)
    assert r.rc == 3
    assert ("layer one: layers/locks/shared.lock is missing; layer two: "
            "layers/locks/shared.lock is missing: run `ociforge lock one two`") in r.err
    lock = proj / "layers" / "locks" / "shared.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(render_lock({A: LockEntry("a" * 64)}))
    r = run_cli("lock", "--check", store=store, project=proj)
    assert r.rc == 3 and (f"layer two: layers/locks/shared.lock has no pin for {B}: run "
                          "`ociforge lock two`") in r.err
    stale = "org.example:gone:0.9"
    lock.write_text(render_lock({A: LockEntry("a" * 64), B: LockEntry("b" * 64),
                                 stale: LockEntry("c" * 64)}))
    r = run_cli("lock", "--check", store=store, project=proj)
    assert r.rc == 3 and (f"layers/locks/shared.lock pins {stale}, which no layer asks for"
                          in r.err)
    # A check of one layer still sees the file as the whole project uses it.
    assert run_cli("lock", "--check", "one", store=store, project=proj).rc == 3
    # A pin nobody asks for does not stop a build; the check is CI's.
    lock.write_text(render_lock({A: LockEntry("a" * 64), B: LockEntry("b" * 64)}))
    ok = run_cli("lock", "--check", "--json", store=store, project=proj)
    assert ok.rc == 0, ok.err
    assert [d["layer"] for d in ok.json()] == ["one", "two"]
    assert store_is_empty(store)


@pytest.mark.slow
def test_lock_drops_pins_no_layer_asks_for(tmp_path: Path) -> None:
    """Re-locking a layer after a coordinate left its recipe removes the old pin from
    the shared lock file (so `lock --check` passes), keeping the other layer's pins."""
    repo = tmp_path / "m2"
    jars = {c: publish(repo, c) for c in (A, B, "org.example:alpha:1.1")}
    proj = _two_layers(tmp_path / "p")
    with serve(repo) as url:
        env = {"OCIFORGE_MAVEN_REPOS": url}
        assert run_cli("lock", store=tmp_path / "s", project=proj, env=env).rc == 0
        layer = proj / "layers" / "one.yaml"
        layer.write_text(layer.read_text().replace(A, "org.example:alpha:1.1"))
        r = run_cli("lock", "one", store=tmp_path / "s", project=proj, env=env)
        assert r.rc == 0, r.err
    entries = read_lock(proj / "layers" / "locks" / "shared.lock")
    assert set(entries) == {B, "org.example:alpha:1.1"}
    assert entries[B].sha256 == hashlib.sha256(jars[B]).hexdigest()
    assert run_cli("lock", "--check", store=tmp_path / "s", project=proj).rc == 0


def test_pip_locks_are_checked_by_their_requirements_hash(tmp_path: Path) -> None:
    """The project's own pip locks are current; changing a requirement makes the lock
    stale (its `# requirements:` hash), which check and assemble both refuse."""
    proj = copy_project(tmp_path / "proj", "tools.yaml")
    layer = proj / "layers" / "python-deps-4.1.yaml"
    layer.write_text(layer.read_text().replace("pandas==2.3.3", "pandas==2.3.2"))
    r = run_cli("lock", "--check", "python-deps-4.1", store=tmp_path / "s", project=proj)
    assert r.rc == 3
    assert ("layer python-deps-4.1: layers/locks/python-deps-4.1.lock was made from other "
            "requirements") in r.err and "run `ociforge lock python-deps-4.1`" in r.err
    a = run_cli("assemble", "spark-4.1.1", store=tmp_path / "s", project=proj)
    assert a.rc == 3 and "run `ociforge lock python-deps-4.1`" in a.err
    assert store_is_empty(tmp_path / "s")


def test_the_projects_locks_are_current(tmp_path: Path) -> None:
    """What CI runs: every lock of the checkout exists, pins what the recipes ask for
    and nothing else; the Maven pins say how they were verified."""
    r = run_cli("lock", "--check", "--json", store=tmp_path / "s", project=PROJECT)
    assert r.rc == 0, r.err
    checked = {d["layer"] for d in r.json()}
    assert {"s3a-4.1", "iceberg-4.1", "rapids-3.5", "python-deps-4.1"} <= checked
    for path in sorted((PROJECT / "layers" / "locks").glob("*.lock")):
        if "maven lock" not in path.read_text():
            continue
        for coord, entry in read_lock(path).items():
            assert entry.repository == "https://repo1.maven.org/maven2", (path, coord)
            assert entry.size and entry.checksum in ("sha512", "sha256", "sha1"), (path, coord)
            assert entry.asc and entry.asc.startswith("unverified:"), (path, coord)


# -- signatures ---------------------------------------------------------------------------


def _gpg(home: Path, *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["gpg", "--batch", "--homedir", str(home), *args], input=data,
                          capture_output=True, check=True).stdout


@pytest.fixture
def signer(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """A throwaway signing key (gpg's GNUPGHOME, a keyring holding its public key,
    its fingerprint): the project's KEYS are unreachable here, so a key of our own
    stands in for a release manager's."""
    if shutil.which("gpg") is None or shutil.which("gpgv") is None:
        pytest.fail("gpg/gpgv are not installed (Debian: gpg, gpgv)")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    _gpg(home, "--passphrase", "", "--quick-gen-key", "Release Manager <rm@example.org>",
         "ed25519", "sign", "never")
    fpr = next(line.split(":")[9] for line in _gpg(home, "--with-colons",
                                                    "--list-keys").decode().splitlines()
               if line.startswith("fpr:"))
    keyring = tmp_path / "KEYS.gpg"
    keyring.write_bytes(_gpg(home, "--export", fpr))
    yield home, keyring, fpr
    # gpg started an agent for this home: stop it (and only it).
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


@pytest.mark.slow
def test_signatures_are_recorded_and_checked_against_a_keyring(
        tmp_path: Path, signer: tuple[Path, Path, str]) -> None:
    home, keyring, fpr = signer
    repo = tmp_path / "m2"
    data = publish(repo, A)
    asc = _gpg(home, "--armor", "--detach-sign", "--output", "-", data=data).decode()
    assert pgpsig.issuer(asc) == fpr
    (repo / "org/example/alpha/1.0/alpha-1.0.jar.asc").write_text(asc)
    publish(repo, B)  # no signature
    proj = _two_layers(tmp_path / "p")
    lock = proj / "layers" / "locks" / "shared.lock"
    with serve(repo) as url:
        env = {"OCIFORGE_MAVEN_REPOS": url}
        assert run_cli("lock", store=tmp_path / "s", project=proj, env=env).rc == 0
        assert read_lock(lock)[A].asc == f"unverified:{fpr}"
        assert read_lock(lock)[B].asc == "none"
        env["OCIFORGE_MAVEN_KEYRING"] = str(keyring)
        assert run_cli("lock", store=tmp_path / "s", project=proj, env=env).rc == 0
        assert read_lock(lock)[A].asc == f"verified:{fpr}"
        # A signature that does not cover the bytes: exit 4, the lock left as it was.
        other = _gpg(home, "--armor", "--detach-sign", "--output", "-", data=b"other")
        (repo / "org/example/alpha/1.0/alpha-1.0.jar.asc").write_bytes(other)
        before = lock.read_text()
        bad = run_cli("lock", store=tmp_path / "s", project=proj, env=env)
        assert bad.rc == 4 and f"{A}: BAD signature" in bad.err
        assert lock.read_text() == before
        # Signed by a key the keyring does not hold.
        env["OCIFORGE_MAVEN_KEYRING"] = os.devnull
        (repo / "org/example/alpha/1.0/alpha-1.0.jar.asc").write_text(asc)
        unknown = run_cli("lock", store=tmp_path / "s", project=proj, env=env)
        assert unknown.rc == 4 and "signed by key" in unknown.err
