"""Registry client pieces that need no registry: references, credentials, challenges,
retry timing, upload ranges. Fast; the end-to-end tests are in test_registry_e2e.py."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from ociforge.cli_registry import parse_size
from ociforge.errors import AuthError
from ociforge.net.retry import RetryPolicy, retry_after_seconds
from ociforge.registry import credentials
from ociforge.registry.auth import Authenticator, parse_challenge
from ociforge.registry.credentials import Credentials
from ociforge.registry.reference import ReferenceError, is_loopback, parse
from ociforge.registry.upload import _range_end


@pytest.mark.parametrize(("text", "registry", "repo", "tag", "api"), [
    ("ubuntu", "docker.io", "library/ubuntu", None, "registry-1.docker.io"),
    ("ubuntu:24.04", "docker.io", "library/ubuntu", "24.04", "registry-1.docker.io"),
    ("index.docker.io/foo/bar:1", "docker.io", "foo/bar", "1", "registry-1.docker.io"),
    ("localhost/foo", "localhost", "foo", None, "localhost"),
    ("localhost:5000/a/b/c:v1", "localhost:5000", "a/b/c", "v1", "localhost:5000"),
    ("127.0.0.1:5000/spark", "127.0.0.1:5000", "spark", None, "127.0.0.1:5000"),
    ("ghcr.io/org/img:latest", "ghcr.io", "org/img", "latest", "ghcr.io"),
    ("docker://quay.io/x/y:z", "quay.io", "x/y", "z", "quay.io"),
])
def test_reference_parsing(text: str, registry: str, repo: str, tag: str | None,
                           api: str) -> None:
    ref = parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.api_host) == (registry, repo, tag, api)


def test_reference_with_digest() -> None:
    d = "sha256:" + "a" * 64
    ref = parse(f"reg.example:443/x/y:t@{d}")
    assert ref.digest == d and ref.tag == "t" and ref.reference == d
    assert str(ref) == f"reg.example:443/x/y:t@{d}"


@pytest.mark.parametrize("bad", ["UPPER/case", "reg:5000/x:bad tag", "x@sha256:123", "a//b"])
def test_reference_rejects(bad: str) -> None:
    with pytest.raises(ReferenceError):
        parse(bad)


def test_loopback() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:5")
    assert is_loopback("127.1.2.3")
    assert not is_loopback("10.0.0.1:5000") and not is_loopback("registry.example.com")


def test_parse_size() -> None:
    assert parse_size(None, None, "16M") == 16 << 20
    assert parse_size(None, None, "512k") == 512 << 10
    assert parse_size(None, None, "1GiB") == 1 << 30


# -- credentials ------------------------------------------------------------------------


def _config(tmp: Path, data: dict) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "config.json"
    path.write_text(json.dumps(data))
    return path


def test_auths_entry_forms(tmp_path: Path) -> None:
    auth = base64.b64encode(b"alice:s3cret:with:colons").decode()
    cfg = _config(tmp_path, {"auths": {
        "https://reg.example:5000/v1/": {"auth": auth},
        "other.example": {"username": "bob", "password": "pw"},
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:tok").decode()},
    }})
    c = credentials.find("reg.example:5000", [cfg])
    assert c is not None and (c.username, c.secret) == ("alice", "s3cret:with:colons")
    c = credentials.find("other.example", [cfg])
    assert c is not None and (c.username, c.secret) == ("bob", "pw")
    c = credentials.find("docker.io", [cfg])  # Docker Hub's legacy key matches
    assert c is not None and c.username == "hub"
    assert credentials.find("nowhere.example", [cfg]) is None


def test_secret_never_in_repr(tmp_path: Path) -> None:
    c = Credentials("alice", "hunter2", source="x")
    assert "hunter2" not in repr(c) and "hunter2" not in str(c)


def _helper(bindir: Path, name: str, script: str) -> None:
    bindir.mkdir(parents=True, exist_ok=True)
    path = bindir / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_cred_helpers_then_store_then_auths(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    # The helper echoes which server it was asked about, as its username.
    _helper(bindir, "pertest", 'read s; printf \'{"ServerURL":"%s","Username":"h-%s",'
                               '"Secret":"p"}\' "$s" "$s"\n')
    _helper(bindir, "store", 'read s; if [ "$s" = "stored.example" ]; then '
                             'echo \'{"Username":"<token>","Secret":"idtok"}\'; '
                             'else echo "credentials not found in native keychain"; exit 1; fi\n')
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    cfg = _config(tmp_path / "d", {
        "credHelpers": {"helped.example": "pertest"},
        "credsStore": "store",
        "auths": {"helped.example": {"username": "no", "password": "no"},
                  "plain.example": {"username": "carol", "password": "pw"}},
    })
    c = credentials.find("helped.example", [cfg])
    assert c is not None and c.username == "h-helped.example" and c.source.endswith("pertest")
    c = credentials.find("stored.example", [cfg])
    assert c is not None and c.identity_token and c.secret == "idtok"
    c = credentials.find("plain.example", [cfg])  # the store has none: auths next
    assert c is not None and c.username == "carol"


def test_missing_helper_is_a_clear_error(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    cfg = _config(tmp_path, {"credHelpers": {"r.example": "nosuch"}})
    with pytest.raises(AuthError, match="docker-credential-nosuch is not installed"):
        credentials.find("r.example", [cfg])


def test_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = _config(tmp_path / "docker", {"auths": {"r.example": {"username": "d",
                                                                     "password": "x"}}})
    podman = _config(tmp_path / "podman", {"auths": {"r.example": {"username": "p",
                                                                     "password": "x"}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(docker.parent))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    c = credentials.find("r.example")
    assert c is not None and c.username == "d"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(podman))
    c = credentials.find("r.example")
    assert c is not None and c.username == "p"


# -- challenges and retries -------------------------------------------------------------


def test_parse_challenge() -> None:
    ch = parse_challenge('Bearer realm="https://auth.example/token",service="reg.example",'
                         'scope="repository:a/b:pull,push repository:c:pull",'
                         'error="insufficient_scope"')
    assert ch.scheme == "bearer"
    assert ch.params["realm"] == "https://auth.example/token"
    assert ch.scopes == {"repository:a/b:pull,push", "repository:c:pull"}
    assert parse_challenge('Basic realm="x"').scheme == "basic"


def test_basic_wrong_password_is_final() -> None:
    auth = Authenticator("r.example", lambda: Credentials("u", "hunter2"), True, False)
    header = auth.answer('Basic realm="r"', frozenset(), None)
    assert header.startswith("Basic ")
    with pytest.raises(AuthError, match="rejected the credentials") as e:
        auth.answer('Basic realm="r"', frozenset(), header)
    assert "hunter2" not in str(e.value)


def test_no_credentials_for_plain_http_realm() -> None:
    auth = Authenticator("r.example", lambda: Credentials("u", "pw"), True, False)
    with pytest.raises(AuthError, match="plain HTTP"):
        auth.answer('Bearer realm="http://evil.example/token",service="s"', frozenset(), None)


def test_retry_after() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("99999") == 120.0  # capped
    policy = RetryPolicy(base_s=0.5, cap_s=4)
    assert all(0 <= policy.delay(n) <= min(4, 0.5 * 2 ** n) for n in range(1, 10))
    assert policy.delay(1, retry_after=7) == 7


def test_range_header() -> None:
    assert _range_end("0-1023", 0) == 1024
    assert _range_end("bytes=0-99", 0) == 100
    assert _range_end("0-0", 0) == 0
    assert _range_end(None, 5) == 5
