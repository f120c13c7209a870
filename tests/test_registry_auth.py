"""Authentication against the real registry: htpasswd basic auth over TLS with a CA
made here, and bearer tokens from a token server in front of it. Credentials come
from Docker config files; wrong ones fail fast, clearly, and without a retry storm."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociforge.net.retry import RetryPolicy
from ociforge.registry.client import RegistryClient
from ociforge.registry.push import Pusher, PushRequest
from ociforge.registry.reference import parse
from ociforge.store import Descriptor, Store

from conftest import Result, need_tool, run_cli
from registry_images import assemble, hello_with_variant, manifest_digest
from registry_server import Registry, TokenServer, make_pki, start_registry

pytestmark = pytest.mark.slow

USER, PASSWORD = "ci-bot", "correct horse battery staple"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("images")
    assemble(hello_with_variant(base / "proj"), base / "store", "hello")
    return base / "store"


@pytest.fixture
def store(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "store")
    return tmp_path / "store"


def docker_config(where: Path, host: str, user: str, password: str) -> dict[str, str]:
    """A DOCKER_CONFIG directory with one `auths` entry; returns the env to use it."""
    where.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (where / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(where), "REGISTRY_AUTH_FILE": ""}


def assert_secret_free(r: Result, secret: str) -> None:
    assert secret not in r.out and secret not in r.err
    assert base64.b64encode(secret.encode()).decode()[:12] not in r.out + r.err


# -- htpasswd + TLS -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    base = tmp_path_factory.mktemp("tls-registry")
    pki = make_pki(base / "pki")
    reg = start_registry(base, htpasswd={USER: PASSWORD}, pki=pki)
    yield reg, pki.ca_cert
    reg.stop()


def test_basic_auth_over_tls_from_docker_config(tls_registry: tuple[Registry, Path],
                                                store: Path, tmp_path: Path) -> None:
    reg, ca = tls_registry
    env = docker_config(tmp_path / "docker", reg.host, USER, PASSWORD)
    r = run_cli("push", "hello", "--to", f"{reg.host}/secure/hello:v1", "--ca-file", ca,
                "--json", store=store, env=env)
    assert r.rc == 0, r.err
    assert r.json()["blobs"]["pushed"] == 3
    assert_secret_free(r, PASSWORD)
    # skopeo, trusting the same CA, sees the same digest.
    need_tool("skopeo")
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(ca, certs / "ca.crt")
    p = subprocess.run(["skopeo", "inspect", "--cert-dir", str(certs), "--creds",
                        f"{USER}:{PASSWORD}", f"docker://{reg.host}/secure/hello:v1"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Digest"] == manifest_digest(store, "hello")
    # And ociforge pulls it back over the same TLS + auth.
    r = run_cli("pull", f"{reg.host}/secure/hello:v1", "--ca-file", ca, "--json",
                store=tmp_path / "other", env=env)
    assert r.rc == 0, r.err
    assert r.json()["digest"] == manifest_digest(store, "hello")


def test_layer_cache_over_tls_with_basic_auth(tls_registry: tuple[Registry, Path],
                                             built: Path, store: Path, tmp_path: Path
                                             ) -> None:
    """`--cache` to a registry with TLS (our CA) and htpasswd: a runner whose store is
    warm fills the new cache with the layers it holds (nothing built), a runner with
    an empty store takes every layer from it; the password is never printed."""
    reg, ca = tls_registry
    project = built.parent / "proj"
    env = docker_config(tmp_path / "docker", reg.host, USER, PASSWORD)
    cache = ("--cache", f"{reg.host}/secure/cache", "--cache-ca-file", str(ca))
    # Untrusted TLS (no CA given): a warning naming the fix, the build goes on.
    r = run_cli("--cache", f"{reg.host}/secure/cache", "layers", "build", "busybox", "hello",
                "--json", store=store, project=project, env=env)
    assert r.rc == 0, r.err
    assert "not trusted" in r.err and "--cache-ca-file" in r.err, r.err  # the cache's option
    assert_secret_free(r, PASSWORD)
    # The warm store (hello's layers built by the fixture): offered to the cache.
    r = run_cli(*cache, "layers", "build", "busybox", "hello", "--json", store=store,
                project=project, env=env)
    assert r.rc == 0, r.err
    assert not [d for d in r.json() if d["built"]]
    assert_secret_free(r, PASSWORD)
    tags = [e for e in reg.access_log() if e[0] == "PUT" and "/manifests/layer-" in e[1]]
    assert len(tags) == 2, tags
    # An empty store: both layers from the cache over TLS + auth, nothing built.
    r = run_cli(*cache, "assemble", "hello", "--json", store=tmp_path / "fresh",
                project=project, env=env)
    assert r.rc == 0, r.err
    assert r.json()["layers"]["built"] == [] and len(r.json()["layers"]["remote"]) == 2
    assert_secret_free(r, PASSWORD)
    # --cache-insecure instead of the CA: TLS unverified, asked for explicitly.
    r = run_cli("--cache", f"{reg.host}/secure/cache", "--cache-insecure", "layers", "build",
                "busybox", "--json", store=tmp_path / "fresh2", project=project, env=env)
    assert r.rc == 0, r.err
    assert [d["remote"] for d in r.json()] == [True]


def test_tls_is_verified_by_default(tls_registry: tuple[Registry, Path], store: Path,
                                    tmp_path: Path) -> None:
    reg, _ = tls_registry
    env = docker_config(tmp_path / "docker", reg.host, USER, PASSWORD)
    r = run_cli("push", "hello", "--to", f"{reg.host}/secure/nope", store=store, env=env)
    assert r.rc == 6
    assert "not trusted" in r.err and "--ca-file" in r.err
    assert len(r.err.strip().splitlines()) == 1
    # --insecure: TLS without verification, asked for explicitly.
    r = run_cli("push", "hello", "--to", f"{reg.host}/secure/insecure", "--insecure",
                store=store, env=env)
    assert r.rc == 0, r.err
    assert "Warning" not in r.err


def test_wrong_password_fails_fast_without_retry_storm(tls_registry: tuple[Registry, Path],
                                                       store: Path, tmp_path: Path) -> None:
    reg, ca = tls_registry
    wrong = "not-the-password"
    env = docker_config(tmp_path / "docker", reg.host, USER, wrong)
    before = len(reg.access_log())
    r = run_cli("push", "hello", "--to", f"{reg.host}/secure/wrong:v1", "--ca-file", ca,
                store=store, env=env)
    assert r.rc == 8, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "rejected the credentials" in lines[0] and USER in lines[0]
    assert str(tmp_path / "docker" / "config.json") in lines[0]  # where they came from
    assert_secret_free(r, wrong)
    requests = reg.access_log()[before:]
    assert len(requests) <= 3, requests  # the ping, then one try with the credentials
    assert not [p for m, p, _ in requests if "/blobs/" in p or "/manifests/" in p]
    # --json gets the same error as an object.
    r = run_cli("push", "hello", "--to", f"{reg.host}/secure/wrong:v1", "--ca-file", ca,
                "--json", store=store, env=env)
    assert r.rc == 8 and json.loads(r.out.strip().splitlines()[-1])["exit_code"] == 8


def test_missing_credentials(tls_registry: tuple[Registry, Path], store: Path,
                             tmp_path: Path) -> None:
    reg, ca = tls_registry
    (tmp_path / "empty").mkdir()
    r = run_cli("push", "hello", "--to", f"{reg.host}/secure/anon:v1", "--ca-file", ca,
                store=store, env={"DOCKER_CONFIG": str(tmp_path / "empty"),
                                  "REGISTRY_AUTH_FILE": ""})
    assert r.rc == 8 and "requires authentication" in r.err


def test_auth_file_order_and_credential_helper(tls_registry: tuple[Registry, Path],
                                               store: Path, tmp_path: Path) -> None:
    reg, ca = tls_registry
    # REGISTRY_AUTH_FILE (right) is read before DOCKER_CONFIG (wrong).
    env = docker_config(tmp_path / "docker", reg.host, USER, "wrong")
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {f"https://{reg.host}": {
        "username": USER, "password": PASSWORD}}}))
    r = run_cli("push", "hello", "--to", f"{reg.host}/secure/order:v1", "--ca-file", ca,
                store=store, env={**env, "REGISTRY_AUTH_FILE": str(auth_file)})
    assert r.rc == 0, r.err
    # credHelpers: docker-credential-<name> get, on PATH.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-ocftest"
    helper.write_text("#!/bin/sh\nread server\n"
                      f'printf \'{{"ServerURL":"%s","Username":"{USER}","Secret":"{PASSWORD}"}}\''
                      ' "$server"\n')
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "helper-config").mkdir()
    (tmp_path / "helper-config" / "config.json").write_text(json.dumps(
        {"credHelpers": {reg.host: "ocftest"}}))
    import os

    r = run_cli("push", "hello", "--to", f"{reg.host}/secure/helper:v1", "--ca-file", ca,
                "--json", store=store, env={"DOCKER_CONFIG": str(tmp_path / "helper-config"),
                                            "REGISTRY_AUTH_FILE": "",
                                            "PATH": f"{bindir}:{os.environ['PATH']}"})
    assert r.rc == 0, r.err
    assert r.json()["blobs"]["mounted"] == 3  # same registry, so it mounts from secure/order
    assert_secret_free(r, PASSWORD)


# -- bearer tokens --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[Registry, TokenServer]]:
    base = tmp_path_factory.mktemp("token-registry")

    def acl(user: str, repo: str) -> set[str]:
        return {"pull", "push"} if user == USER and repo.startswith("team/") else set()

    tokens = TokenServer(base / "token", {USER: PASSWORD}, acl).start()
    reg = start_registry(base, token=tokens)
    yield reg, tokens
    reg.stop()
    tokens.stop()


def test_bearer_token_flow_with_scoped_tokens(token_registry: tuple[Registry, TokenServer],
                                              store: Path, tmp_path: Path) -> None:
    reg, tokens = token_registry
    env = docker_config(tmp_path / "docker", reg.host, USER, PASSWORD)
    start = len(tokens.requests)
    r = run_cli("push", "hello", "--to", f"{reg.host}/team/a:v1", "--json", store=store,
                env=env)
    assert r.rc == 0, r.err
    assert r.json()["blobs"]["pushed"] == 3
    asked = tokens.requests[start:]
    # One token for the whole push (cached and reused), scoped to the repository.
    assert len(asked) == 1, asked
    assert asked[0]["user"] == USER and asked[0]["scopes"] == ["repository:team/a:pull,push"]
    assert_secret_free(r, PASSWORD)

    # A second repository: the token also asks for pull on the mount source.
    start = len(tokens.requests)
    r = run_cli("push", "hello", "--to", f"{reg.host}/team/b:v1", "--json", store=store,
                env=env)
    assert r.rc == 0, r.err
    assert r.json()["blobs"] == {"pushed": 0, "present": 0, "mounted": 3}
    scopes = [set(t["scopes"]) for t in tokens.requests[start:]]
    assert scopes == [{"repository:team/b:pull,push", "repository:team/a:pull"}]


def test_two_repositories_in_one_push_session(token_registry: tuple[Registry, TokenServer],
                                              store: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    reg, tokens = token_registry
    for k, v in docker_config(tmp_path / "docker", reg.host, USER, PASSWORD).items():
        monkeypatch.setenv(k, v)
    s = Store(store)
    entry = s.tags()["hello"]
    desc = Descriptor(entry["mediaType"], entry["digest"], entry["size"])
    client = RegistryClient(reg.host, policy=RetryPolicy(attempts=3))
    targets = [parse(f"{reg.host}/team/one"), parse(f"{reg.host}/team/two")]
    start = len(tokens.requests)
    report = Pusher(s, lambda _ref: client, jobs=4).push(
        [PushRequest("hello", desc, t, ["v1"]) for t in targets])
    assert [i["manifest"] for i in report.images] == ["pushed", "pushed"]
    # Sent once, then mounted into the second repository.
    assert report.blobs == {"pushed": 3, "present": 0, "mounted": 3}
    scope_sets = {tuple(sorted(t["scopes"])) for t in tokens.requests[start:]}
    assert scope_sets == {("repository:team/one:pull,push", "repository:team/two:pull"),
                          ("repository:team/one:pull", "repository:team/two:pull,push")}
    for t in targets:
        assert client.head_manifest(t.repository, "v1", frozenset(
            {f"repository:{t.repository}:pull"}))[0] == desc.digest


def test_bearer_denied_and_wrong_password(token_registry: tuple[Registry, TokenServer],
                                          store: Path, tmp_path: Path) -> None:
    reg, tokens = token_registry
    env = docker_config(tmp_path / "docker", reg.host, USER, PASSWORD)
    before = len(reg.access_log())
    start = len(tokens.requests)
    r = run_cli("push", "hello", "--to", f"{reg.host}/elsewhere/x:v1", store=store, env=env)
    assert r.rc == 8, r.err
    assert len(r.err.strip().splitlines()) == 1 and "refused access" in r.err
    assert len(tokens.requests) - start <= 2
    assert len(reg.access_log()) - before <= 4

    env = docker_config(tmp_path / "wrong", reg.host, USER, "wrong-password")
    start = len(tokens.requests)
    r = run_cli("push", "hello", "--to", f"{reg.host}/team/c:v1", store=store, env=env)
    assert r.rc == 8 and "rejected the credentials" in r.err
    assert [t["status"] for t in tokens.requests[start:]] == [401]
    assert_secret_free(r, "wrong-password")
