"""The one HTTP path (`ociforge.net`) against real servers on 127.0.0.1.

First the shared retry policy itself, then one test per caller (archive download,
PyPI simple index, Maven repository, registry client, registry blob pull) that it
retries under that policy: a server answers 503 + `Retry-After: 1` a few times, the
caller succeeds and waited what the server asked; a server that stays busy makes the
caller stop after its budget with a clear error. The policy's `sleep` is a recorder,
so nothing here sleeps.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from maven_repo import publish

from ociforge.errors import FetchError, IntegrityError, NetworkError
from ociforge.fetch import fetch
from ociforge.net.credentials import BasicAuth, Credentials
from ociforge.net.http import new_session, reason, request
from ociforge.net.redact import redact
from ociforge.net.retry import RetryPolicy, retry_after_seconds
from ociforge.registry import RegistryError
from ociforge.registry import client as client_mod
from ociforge.registry.client import RegistryClient
from ociforge.registry.pull import READ_BLOCK, Puller
from ociforge.registry.reference import parse
from ociforge.sources.base import BuildContext
from ociforge.sources.maven import MavenSource, read_lock
from ociforge.sources.pypi import find_file_url
from ociforge.store import MT_MANIFEST, Store

from httpserver import Busy, busy, run_server, serve

HADOOP_AWS = "org.apache.hadoop:hadoop-aws:3.4.2"
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OCIFORGE_MAVEN_SETTINGS", "none")
    monkeypatch.delenv("OCIFORGE_MAVEN_REPOS", raising=False)


def recording(attempts: int = 3) -> tuple[RetryPolicy, list[float]]:
    """A policy whose waits are recorded instead of slept."""
    sleeps: list[float] = []
    return RetryPolicy(attempts=attempts, sleep=sleeps.append), sleeps


def www(tmp_path: Path, files: dict[str, bytes]) -> Path:
    root = tmp_path / "www"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


# -- the shared policy ------------------------------------------------------------------


def test_retry_after_seconds_and_http_date_are_honoured_and_capped(tmp_path: Path) -> None:
    root = www(tmp_path, {"f": b"ok"})
    policy, sleeps = recording(attempts=4)
    handler = busy(2, retry_after="1")
    with serve(root, handler) as url:
        r = request(new_session(), "GET", f"{url}/f", policy=policy)
    assert r.status_code == 200 and r.content == b"ok"
    assert sleeps == [1.0, 1.0] and len(handler.log) == 3

    # An HTTP date: the wait is what is left until then.
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    policy, sleeps = recording()
    with serve(root, busy(1, retry_after=when)) as url:
        assert request(new_session(), "GET", f"{url}/f", policy=policy).status_code == 200
    assert len(sleeps) == 1 and 25 <= sleeps[0] <= 30
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0

    # A server asking for a day gets the policy's cap.
    policy, sleeps = recording()
    with serve(root, busy(1, retry_after="86400")) as url:
        assert request(new_session(), "GET", f"{url}/f", policy=policy).status_code == 200
    assert sleeps == [policy.max_retry_after_s]


def test_backoff_without_retry_after_is_jittered_within_its_bound(tmp_path: Path) -> None:
    policy = RetryPolicy(attempts=6, base_s=0.5, cap_s=4)
    for n in range(1, 10):
        waits = {policy.delay(n) for _ in range(50)}
        assert all(0 <= w <= min(4, 0.5 * 2 ** n) for w in waits)
        assert len(waits) > 1  # jittered, not a fixed schedule
    root = www(tmp_path, {"f": b"ok"})
    policy, sleeps = recording(attempts=4)
    policy.base_s, policy.cap_s = 0.5, 4
    with serve(root, busy(3, retry_after=None)) as url:
        assert request(new_session(), "GET", f"{url}/f", policy=policy).status_code == 200
    assert len(sleeps) == 3
    assert all(0 <= s <= min(4, 0.5 * 2 ** n) for n, s in enumerate(sleeps, 1))


def test_gives_up_after_its_budget(tmp_path: Path) -> None:
    policy, sleeps = recording(attempts=3)
    handler = busy(None)
    with serve(www(tmp_path, {"f": b"ok"}), handler) as url:
        r = request(new_session(), "GET", f"{url}/f", policy=policy)
    assert r.status_code == 503  # the last answer, for the caller to report
    assert len(handler.log) == 3 and sleeps == [1.0, 1.0]

    policy, sleeps = recording(attempts=3)
    with pytest.raises(NetworkError) as e:
        request(new_session(), "GET", f"{CLOSED}/x", policy=policy)
    assert (e.value.reason, e.value.kind, e.value.attempts) == ("connection refused",
                                                                 "refused", 3)
    assert str(e.value) == f"GET {CLOSED}/x failed after 3 attempts: connection refused"
    assert len(sleeps) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_no_retry_on_request_and_auth_errors(tmp_path: Path, status: int) -> None:
    policy, sleeps = recording()
    handler = busy(None, status=status)
    with serve(www(tmp_path, {"f": b"ok"}), handler) as url:
        r = request(new_session(), "GET", f"{url}/f", policy=policy)
    assert r.status_code == status and len(handler.log) == 1 and sleeps == []


def test_tls_failure_is_not_retried(tmp_path: Path) -> None:
    policy, sleeps = recording()
    with serve(www(tmp_path, {"f": b"ok"})) as url, pytest.raises(NetworkError) as e:
        request(new_session(), "GET", url.replace("http:", "https:") + "/f", policy=policy)
    assert e.value.kind == "tls" and e.value.attempts == 1 and sleeps == []


class _Recorder(BaseHTTPRequestHandler):
    """Records the Authorization header; `/redirect` sends the client to `target`;
    `/challenge` wants `Bearer good`."""

    seen: list[tuple[str, str | None]] = []
    target = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization")
        type(self).seen.append((self.path, auth))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", type(self).target)
        elif self.path == "/challenge" and auth != "Bearer good":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer realm="x"')
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def recorder() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("R", (_Recorder,), {"seen": []})
    with run_server(handler) as url:
        yield url, handler


def test_credential_hook_answers_one_challenge_and_stays_with_its_host() -> None:
    class Token:
        def header(self, url: str) -> str | None:
            return None

        def challenge(self, url: str, www_authenticate: str | None,
                      sent: str | None) -> str | None:
            assert www_authenticate == 'Bearer realm="x"'
            return "Bearer good" if sent is None else None

    policy, sleeps = recording()
    with recorder() as (url, handler), recorder() as (elsewhere, landing):
        assert request(new_session(), "GET", f"{url}/challenge", policy=policy,
                       auth=Token()).status_code == 200
        assert handler.seen == [("/challenge", None), ("/challenge", "Bearer good")]

        # Basic credentials go to the host they are for, not to where it redirects.
        handler.target = f"{elsewhere}/landing"
        creds = BasicAuth(Credentials("reader", "s3cret"))
        handler.seen.clear()
        assert request(new_session(), "GET", f"{url}/redirect", policy=policy,
                       auth=creds).status_code == 200
    assert handler.seen == [("/redirect", creds.header(url))]
    assert landing.seen == [("/landing", None)]
    assert sleeps == []


def test_redaction_and_reasons_carry_no_secrets() -> None:
    assert redact("https://user:pw@mirror.example:8443/a/b.tgz?x=1") \
        == "https://mirror.example:8443/a/b.tgz?x=1"
    assert redact("https://mirror.example/a") == "https://mirror.example/a"
    assert redact("http://u:p@[::1]:8080/x") == "http://[::1]:8080/x"
    err = FetchError("failed", url="https://user:pw@h/x", status=503)
    assert err.url == "https://h/x" and err.status == 503
    assert "s3cret" not in reason(ConnectionError("https://u:s3cret@h/ Connection refused"))
    mismatch = IntegrityError.mismatch("x.tgz", "sha256", "AB" * 32, "cd" * 32)
    assert str(mismatch) == f"sha256 mismatch for x.tgz: pinned {'AB' * 32}, got {'cd' * 32}"
    assert (mismatch.algorithm, mismatch.expected, mismatch.got) == ("sha256", "ab" * 32,
                                                                     "cd" * 32)


# -- each caller uses it ----------------------------------------------------------------


def test_archive_download_waits_for_a_busy_server_and_stops_after_its_budget(
        tmp_path: Path) -> None:
    data = b"archive bytes" * 1000
    root = www(tmp_path, {"a.tgz": data})
    pins = {"sha256": hashlib.sha256(data).hexdigest()}
    policy, sleeps = recording()
    with serve(root, busy(2)) as url:
        path = fetch(f"{url}/a.tgz", pins, policy=policy)
    assert path.read_bytes() == data and sleeps == [1.0, 1.0]

    policy, sleeps = recording()
    (tmp_path / "cache").rename(tmp_path / "old-cache")
    with serve(root, busy(None)) as url, pytest.raises(FetchError) as e:
        fetch(f"{url}/a.tgz", pins, policy=policy)
    assert str(e.value) == f"GET {url}/a.tgz: HTTP 503 (after 3 attempts)"
    assert e.value.status == 503 and sleeps == [1.0, 1.0]
    assert not list((tmp_path / "cache" / "downloads" / "sha256").iterdir())


class _CutOnce(Busy):
    """Sends half of the file the first time, then closes the connection."""

    cut = True

    def do_GET(self) -> None:
        cls = type(self)
        if not cls.cut:
            return super().do_GET()
        cls.cut = False
        data = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True


def test_archive_download_restarts_after_a_broken_body(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096
    pins = {"sha256": hashlib.sha256(data).hexdigest()}
    policy, sleeps = recording()
    handler = type("Cut", (_CutOnce,), {"log": [], "cut": True})
    with serve(www(tmp_path, {"a.bin": data}), handler) as url:
        assert fetch(f"{url}/a.bin", pins, policy=policy).read_bytes() == data
    assert len(sleeps) == 1


def test_pypi_index_lookup_is_retried(tmp_path: Path) -> None:
    sha = "ab" * 32
    page = ('<html><body><a href="../../files/pyspark-9.9.9.tar.gz#sha256=' + sha
            + '">pyspark-9.9.9.tar.gz</a></body></html>')
    root = www(tmp_path, {"simple/pyspark/index.html": page.encode()})
    policy, sleeps = recording()
    handler = busy(2)
    with serve(root, handler) as url:
        found = find_file_url(f"{url}/simple", "PySpark", "pyspark-9.9.9.tar.gz",
                              new_session(), policy)
    assert found == (f"{url}/files/pyspark-9.9.9.tar.gz", sha)
    assert sleeps == [1.0, 1.0] and [p for _, p, _ in handler.log] == ["/simple/pyspark/"] * 3

    policy, sleeps = recording()
    with serve(root, busy(None)) as url, pytest.raises(FetchError) as e:
        find_file_url(f"{url}/simple", "pyspark", "pyspark-9.9.9.tar.gz", new_session(),
                      policy)
    assert str(e.value) == f"GET {url}/simple/pyspark/: HTTP 503" and e.value.status == 503
    assert sleeps == [1.0, 1.0]


def _maven_ctx(tmp_path: Path, policy: RetryPolicy) -> BuildContext:
    return BuildContext(project_root=tmp_path / "p", retry=policy)


def test_maven_repository_requests_are_retried(tmp_path: Path) -> None:
    repo = tmp_path / "m2"
    data = publish(repo, HADOOP_AWS, checksums=("sha1",))
    policy, sleeps = recording()
    handler = busy(2)
    with serve(repo, handler) as url:
        src = MavenSource.model_validate({"kind": "maven", "lock": "maven.lock",
                                          "artifacts": [HADOOP_AWS], "repositories": [url]})
        src.resolve(_maven_ctx(tmp_path, policy))
    entry = read_lock(tmp_path / "p" / "maven.lock")[HADOOP_AWS]
    assert entry.sha256 == hashlib.sha256(data).hexdigest() and entry.repository == url
    assert sleeps == [1.0, 1.0]
    assert [s for _, _, s in handler.log][:3] == [503, 503, 200]


def test_maven_busy_repository_stops_after_its_budget(tmp_path: Path) -> None:
    repo = tmp_path / "m2"
    publish(repo, HADOOP_AWS)
    policy, sleeps = recording()
    handler = busy(None)
    with serve(repo, handler) as url:
        src = MavenSource.model_validate({"kind": "maven", "lock": "maven.lock",
                                          "artifacts": [HADOOP_AWS], "repositories": [url]})
        with pytest.raises(FetchError) as e:
            src.resolve(_maven_ctx(tmp_path, policy))
    assert str(e.value) == (f"{HADOOP_AWS}: not resolved, no repository could serve it; "
                            f"tried {url} (HTTP 503 after 3 attempts)")
    assert len(handler.log) == 3 and sleeps == [1.0, 1.0]
    assert not (tmp_path / "p" / "maven.lock").exists()


# -- the registry client ----------------------------------------------------------------


class _Registry(BaseHTTPRequestHandler):
    """Just enough of the distribution API to pull one image: `/v2/`, a manifest and
    its blobs (honouring Range). `busy` requests to the manifest answer 503 +
    Retry-After first; `cut` GETs of a large blob send half the body, then close."""

    protocol_version = "HTTP/1.1"
    blobs: dict[str, bytes] = {}
    manifest = b""
    busy: int | None = 0
    cut = 0
    log: list[tuple[str, str, int]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              short: bool = False) -> None:
        type(self).log.append((self.command, self.path, status))
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body[: len(body) // 2] if short else body)
        if short:
            self.close_connection = True

    def do_GET(self) -> None:
        cls = type(self)
        if self.path == "/v2/":
            return self._send(200)
        if "/manifests/" in self.path:
            if cls.busy is None or cls.busy > 0:
                cls.busy = None if cls.busy is None else cls.busy - 1
                return self._send(503, headers={"Retry-After": "1"})
            return self._send(200, cls.manifest, {
                "Content-Type": MT_MANIFEST,
                "Docker-Content-Digest": "sha256:" + hashlib.sha256(cls.manifest).hexdigest()})
        m = re.match(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})$", self.path)
        if not m or m.group(1) not in cls.blobs:
            return self._send(404)
        data = cls.blobs[m.group(1)]
        short = cls.cut > 0 and len(data) > READ_BLOCK  # a cut inside the second block
        cls.cut -= short
        rng = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
        if rng:
            start = int(rng.group(1))
            return self._send(206, data[start:], {
                "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}, short)
        self._send(200, data, short=short)

    do_HEAD = do_GET


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def registry() -> Iterator[tuple[str, type[_Registry]]]:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = bytes(range(256)) * (3 * READ_BLOCK // 256)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _digest(layer), "size": len(layer)}]}).encode()
    handler = type("Reg", (_Registry,), {"blobs": {_digest(config): config,
                                                   _digest(layer): layer},
                                         "manifest": manifest, "log": []})
    with run_server(handler) as url:
        yield url.removeprefix("http://"), handler


def test_registry_client_waits_for_a_busy_registry(registry: tuple[str, Any]) -> None:
    host, handler = registry
    handler.busy = 2
    policy, sleeps = recording(attempts=6)
    client = RegistryClient(host, policy=policy)
    found = client.head_manifest("t/img", "v1")
    assert found == (_digest(handler.manifest), MT_MANIFEST)
    assert sleeps == [1.0, 1.0] and policy.retries == 2

    handler.busy = None
    policy, sleeps = recording(attempts=4)
    with pytest.raises(RegistryError) as e:
        RegistryClient(host, policy=policy).head_manifest("t/img", "v1")
    assert str(e.value) == "HEAD manifest t/img:v1: HTTP 503"
    assert sleeps == [1.0, 1.0, 1.0]


def test_clients_of_one_registry_ping_it_once(registry: tuple[str, Any],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A stitching push talks to one registry through two clients (the layer cache's
    and the push's): one `/v2/` ping serves both, since each ping tries HTTPS first,
    and both get the registry's answers."""
    monkeypatch.setattr(client_mod, "_discovered", {})  # no other test's ping
    host, handler = registry
    first, second = RegistryClient(host), RegistryClient(host)
    expected = (_digest(handler.manifest), MT_MANIFEST)
    assert first.head_manifest("t/img", "v1") == expected
    assert second.head_manifest("t/img", "v1") == expected
    assert second.base == first.base == f"http://{host}"
    assert [e for e in handler.log if e[1] == "/v2/"] == [("GET", "/v2/", 200)]
    # Another TLS setting is another discovery: a ping of its own.
    assert RegistryClient(host, insecure=True).head_manifest("t/img", "v1") == expected
    assert len([e for e in handler.log if e[1] == "/v2/"]) == 2


def test_registry_unreachable_stops_after_its_budget() -> None:
    policy, sleeps = recording(attempts=3)
    with pytest.raises(RegistryError) as e:
        RegistryClient("127.0.0.1:9", policy=policy).ping()
    assert str(e.value) == "cannot reach 127.0.0.1:9: connection refused"
    assert len(sleeps) == 2


def test_pull_resumes_a_broken_blob_under_the_policy(registry: tuple[str, Any],
                                                    tmp_path: Path) -> None:
    host, handler = registry
    handler.cut = 1
    handler.busy = 1
    policy, sleeps = recording()
    store = Store(tmp_path / "s")
    report = Puller(store, RegistryClient(host, policy=policy), jobs=1).pull(
        parse(f"{host}/t/img:v1"), "img:v1")
    assert report.fetched == 2 and report.digest == _digest(handler.manifest)
    ranged = [(m, s) for m, p, s in handler.log if s == 206]
    assert ranged == [("GET", 206)]  # the second half only, not the whole blob again
    assert sleeps[0] == 1.0 and len(sleeps) == 2  # the busy manifest, the broken body

    handler.cut = 99  # every try breaks off: the budget ends it, nothing is tagged
    policy, sleeps = recording()
    broken = Store(tmp_path / "s2")
    with pytest.raises(RegistryError, match=r"downloading t/img@sha256:\w+ failed 3 times "
                                            r"\(connection broken\)"):
        Puller(broken, RegistryClient(host, policy=policy), jobs=1).pull(
            parse(f"{host}/t/img:v1"), "img:v1")
    assert len(sleeps) == 2 and broken.tags() == {}


def test_the_http_layer_imports_nothing_above_it() -> None:
    """`ociforge.net` sits below everything that uses it (store, session, CLI, registry,
    sources), and no source reaches into `registry/` for HTTP pieces any more."""
    import ast

    root = Path(__file__).parent.parent / "ociforge"

    def imports(path: Path) -> set[str]:
        pkg = ".".join(path.relative_to(root.parent).with_suffix("").parts[:-1])
        out = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg.rsplit(".", node.level - 1)[0] if node.level else ""
                out.add(".".join(filter(None, [base, node.module or ""])))
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
        return out

    above = ("ociforge.store", "ociforge.session", "ociforge.cli", "ociforge.registry",
             "ociforge.sources")
    for path in (root / "net").glob("*.py"):
        assert not [m for m in imports(path) if m.startswith(above)], path
    for path in (root / "sources").glob("*.py"):
        assert not [m for m in imports(path) if m.startswith("ociforge.registry")], path
