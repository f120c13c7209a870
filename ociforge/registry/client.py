"""The distribution API over the shared HTTP path (`net.http`): one session per worker
thread, explicit timeouts, auth answered once per challenge through the
`Authenticator`'s credential hook, retries under the one policy. Knows URLs and
status codes, not images: `push` and `pull` drive it."""

from __future__ import annotations

import contextlib
import json
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests
import urllib3

from ..errors import AuthError, NetworkError
from ..net.credentials import Credentials, is_loopback
from ..net.http import USER_AGENT, BodyFactory, new_session, request
from ..net.http import send as send_once
from ..net.retry import RetryPolicy
from ..net.sendfile import FileSender
from ..net.sendfile import usable as sendfile_usable
from ..store import MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_INDEX, MT_MANIFEST
from . import RegistryError
from . import credentials as credentials_mod
from .auth import Authenticator

MANIFEST_TYPES = (MT_MANIFEST, MT_INDEX, MT_DOCKER_MANIFEST, MT_DOCKER_LIST)
ACCEPT_MANIFESTS = ", ".join(MANIFEST_TYPES)
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 300.0  # a registry may take a while to verify a large blob on commit
PING_TIMEOUT = (CONNECT_TIMEOUT_S, 60.0)
SEND_BLOCK = 1 << 20   # bytes per socket write when streaming a body (urllib3's is 16 KiB)


def error_detail(resp: requests.Response) -> str:
    """`HTTP 400 DIGEST_INVALID: provided digest did not match` from an error body."""
    text = f"HTTP {resp.status_code}"
    try:
        errors = resp.json().get("errors") or []
    except (ValueError, AttributeError):
        return text
    parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
             for e in errors if isinstance(e, dict)]
    return f"{text} {'; '.join(parts)}" if parts else text


def error_codes(resp: requests.Response) -> set[str]:
    try:
        return {str(e.get("code")) for e in resp.json().get("errors") or []}
    except (ValueError, AttributeError, TypeError):
        return set()


def add_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


# What a ping found, per (API host, --insecure, CA file): base URL, TLS verification,
# status and WWW-Authenticate. A process that talks to one registry through two clients
# (the layer cache's and the push's) asks once: a ping costs an HTTPS attempt first
# (a CA bundle loaded, a handshake) even where plain HTTP answers.
_discovered: dict[tuple[str, bool, str | bool], tuple[str, bool | str, int, str | None]] = {}
_discovered_lock = threading.Lock()


class RegistryClient:
    """Talks to one registry (host[:port]); safe to share between threads."""

    def __init__(self, registry: str, api_host: str | None = None, *, insecure: bool = False,
                 ca_file: str | None = None, policy: RetryPolicy | None = None,
                 lookup: Callable[[], Credentials | None] | None = None,
                 pool_size: int = 8,
                 tls_options: tuple[str, str] = ("--ca-file", "--insecure")) -> None:
        self.registry = registry
        # The options a user passes to fix TLS trouble, as this client's errors name them
        # (the layer cache has its own: --cache-ca-file, --cache-insecure).
        self.tls_options = tls_options
        self.api_host = api_host or registry
        self.insecure = insecure
        self.verify: bool | str = ca_file or True
        self.policy = policy or RetryPolicy()
        self.pool_size = pool_size
        self.auth = Authenticator(registry, lookup or (lambda: credentials_mod.find(registry)),
                                  self.verify, insecure, session=self.session,
                                  policy=self.policy)
        self.base: str | None = None
        self._local = threading.local()
        self._ping_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.requests_made = 0
        self._files = FileSender(READ_TIMEOUT_S, USER_AGENT)

    # -- plumbing ------------------------------------------------------------------

    def session(self) -> requests.Session:
        """This thread's session (requests' sessions are not thread-safe)."""
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            s = new_session(pool_size=self.pool_size, send_block=SEND_BLOCK)
            s.hooks["response"].append(self._counted)
            self._local.session = s
        return s

    def _counted(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        with self._count_lock:
            self.requests_made += 1

    def url(self, path: str) -> str:
        if self.base is None:
            self.ping()
        assert self.base is not None
        return path if "://" in path else self.base + path

    def absolute(self, location: str) -> str:
        """Registries may answer with a relative Location."""
        return urljoin(self.url("/v2/"), location)

    def send(self, method: str, path: str, *, scopes: frozenset[str],
             headers: dict[str, str] | None = None, body: BodyFactory | None = None,
             stream: bool = False) -> requests.Response:
        """One attempt, answering at most one auth challenge. Network errors propagate
        (a resumable upload decides itself what to do about them)."""
        url = self.url(path)
        resp = send_once(self.session(), method, url, auth=self.auth.hook(scopes),
                         headers=headers, body=body, stream=stream,
                         timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), verify=self.verify)
        return self._refused(method, url, resp)

    def send_file(self, method: str, path: str, *, scopes: frozenset[str],
                  headers: dict[str, str], body: BodyFactory, file: Path, start: int,
                  length: int, sent: Callable[[int], None]) -> requests.Response:
        """`send` of `length` bytes of `file` from `start`: by sendfile(2) where the
        registry speaks plain HTTP (`net.sendfile`), else `body()` through requests,
        which is also how a 401 challenge gets its answer."""
        url = self.url(path)
        if length and sendfile_usable(url):
            auth = self.auth.header(scopes)
            resp = self._files.send(method, url, {**headers, **(
                {"Authorization": auth} if auth else {})}, file, start, length, sent)
            with self._count_lock:
                self.requests_made += 1
            if resp.status_code != 401:
                return self._refused(method, url, resp)
        return self.send(method, path, scopes=scopes, headers=headers, body=body)

    def call(self, method: str, path: str, *, scopes: frozenset[str],
             headers: dict[str, str] | None = None, body: BodyFactory | None = None,
             stream: bool = False) -> requests.Response:
        """`send` under the retry policy (resets, timeouts, 408, 429 and 5xx)."""
        url = self.url(path)
        try:
            resp = request(self.session(), method, url, policy=self.policy,
                           auth=self.auth.hook(scopes), headers=headers, body=body,
                           stream=stream, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
                           verify=self.verify)
        except NetworkError as e:
            raise RegistryError(f"{method} {self._short(path)} on {self.registry} failed: "
                                f"{e.reason}", url=url) from None
        return self._refused(method, url, resp)

    def _refused(self, method: str, url: str, resp: requests.Response) -> requests.Response:
        """A 401 the challenge answer did not cure, or a 403, is final: AuthError."""
        if resp.status_code in (401, 403):
            detail = error_detail(resp)
            resp.close()
            if resp.status_code == 401:
                raise AuthError(f"{self.registry} refused access to {urlsplit(url).path} "
                                f"({detail}); check the credentials and their permissions")
            raise AuthError(f"{self.registry} denied {method} {urlsplit(url).path} ({detail})")
        return resp

    @staticmethod
    def _short(path: str) -> str:
        return urlsplit(path).path if "://" in path else path.split("?", 1)[0]

    # -- discovery -----------------------------------------------------------------

    def ping(self) -> None:
        """Find the scheme (HTTPS first; plain HTTP only for loopback or --insecure)
        and the auth scheme, failing early and clearly on TLS or credential trouble."""
        with self._ping_lock:
            if self.base is not None:
                return
            key = (self.api_host, self.insecure, self.verify)
            with _discovered_lock:
                found = _discovered.get(key)
            if found is not None:
                self.base, self.verify, status, challenge = found
                self._answered(status, challenge)
                return
            plain_ok = self.insecure or is_loopback(self.api_host)
            https = f"https://{self.api_host}"
            try:
                resp = self._ping_url(https)
            except NetworkError as e:  # only TLS failures come here
                if e.kind == "tls-untrusted":
                    if not self.insecure:
                        raise RegistryError(
                            f"TLS certificate of {self.registry} is not trusted; pass the CA "
                            f"with {self.tls_options[0]} (or {self.tls_options[1]} to skip "
                            "verification)") from None
                    self.verify = False
                    # Asked for with --insecure: one warning per request would be noise.
                    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                    resp = self._ping_url(https)
                elif plain_ok:
                    https = f"http://{self.api_host}"
                    resp = self._ping_url(https)
                else:
                    raise RegistryError(f"TLS handshake with {self.registry} failed: "
                                        f"{e.reason}") from None
            if resp.status_code not in (200, 401):
                raise RegistryError(f"{self.registry} does not look like an OCI registry "
                                    f"(GET /v2/ answered {error_detail(resp)})")
            self.base = https
            challenge = resp.headers.get("WWW-Authenticate")
            self._answered(resp.status_code, challenge)
            with _discovered_lock:
                _discovered[key] = (https, self.verify, resp.status_code, challenge)

    def _answered(self, status: int, challenge: str | None) -> None:
        """Take the ping's answer: the auth scheme of a 401 (a basic password is
        checked now, before any upload starts)."""
        if status == 401:
            self.auth.note_challenge(challenge)
            if self.auth.scheme == "basic":
                resp = self.send("GET", "/v2/", scopes=frozenset())
                if resp.status_code != 200:
                    raise RegistryError(f"GET /v2/ on {self.registry}: "
                                        f"{error_detail(resp)}")

    def _ping_url(self, base: str) -> requests.Response:
        """GET /v2/ under the policy; TLS failures are left to `ping` to judge."""
        try:
            return request(self.session(), "GET", base + "/v2/", policy=self.policy,
                           timeout=PING_TIMEOUT, verify=self.verify)
        except NetworkError as e:
            if e.kind.startswith("tls"):
                raise
            raise RegistryError(f"cannot reach {self.registry}: {e.reason}",
                                url=base) from None

    # -- manifests -----------------------------------------------------------------

    def head_manifest(self, repo: str, ref: str, scopes: frozenset[str] | None = None
                      ) -> tuple[str, str] | None:
        """(digest, media type) of `ref` in `repo`, None if absent."""
        resp = self.call("HEAD", f"/v2/{repo}/manifests/{ref}",
                         scopes=scopes or frozenset({pull_scope(repo)}),
                         headers={"Accept": ACCEPT_MANIFESTS})
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise RegistryError(f"HEAD manifest {repo}:{ref}: {error_detail(resp)}")
        return (resp.headers.get("Docker-Content-Digest", ""),
                resp.headers.get("Content-Type", "").split(";")[0])

    def has_tags(self, repo: str, scopes: frozenset[str] | None = None) -> bool | None:
        """Whether `repo` has any tag: False for a repository with none (or none yet:
        404 NAME_UNKNOWN), None when the registry does not say."""
        resp = self.call("GET", f"/v2/{repo}/tags/list?n=1",
                         scopes=scopes or frozenset({pull_scope(repo)}))
        with resp:
            if resp.status_code == 404:
                return False
            if resp.status_code != 200:
                return None
            try:
                tags = resp.json().get("tags")
            except (ValueError, AttributeError):
                return None
        return bool(tags) if tags is None or isinstance(tags, list) else None

    def get_manifest(self, repo: str, ref: str,
                     scopes: frozenset[str] | None = None) -> tuple[bytes, str, str | None]:
        """(exact bytes, media type, Docker-Content-Digest header or None)."""
        resp = self.call("GET", f"/v2/{repo}/manifests/{ref}",
                         scopes=scopes or frozenset({pull_scope(repo)}),
                         headers={"Accept": ACCEPT_MANIFESTS})
        if resp.status_code == 404:
            raise RegistryError(f"{self.registry}/{repo}:{ref} not found (manifest unknown)")
        if resp.status_code != 200:
            raise RegistryError(f"GET manifest {repo}:{ref}: {error_detail(resp)}")
        data = resp.content
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in MANIFEST_TYPES:
            with contextlib.suppress(ValueError):
                media_type = str(json.loads(data).get("mediaType") or media_type)
        return data, media_type, resp.headers.get("Docker-Content-Digest")

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str,
                     digest: str, scopes: frozenset[str] | None = None) -> dict[str, str]:
        """PUT the exact bytes we hashed; the registry must agree on the digest. Returns
        the response headers (`OCI-Subject` tells whether it keeps referrers itself)."""
        resp = self.call("PUT", f"/v2/{repo}/manifests/{ref}",
                         scopes=scopes or frozenset({push_scope(repo)}),
                         headers={"Content-Type": media_type}, body=lambda: data)
        if resp.status_code not in (200, 201):
            raise RegistryError(f"PUT manifest {repo}:{ref}: {error_detail(resp)}")
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise RegistryError(f"{self.registry} stored manifest {repo}:{ref} as {got}, "
                                f"expected {digest}")
        return {k.lower(): v for k, v in resp.headers.items()}

    # -- blobs ---------------------------------------------------------------------

    def head_blob(self, repo: str, digest: str, scopes: frozenset[str] | None = None
                  ) -> int | None:
        """Size of the blob in `repo`, None if absent."""
        resp = self.call("HEAD", f"/v2/{repo}/blobs/{digest}",
                         scopes=scopes or frozenset({pull_scope(repo)}))
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise RegistryError(f"HEAD blob {repo}@{digest}: {error_detail(resp)}")
        return int(resp.headers.get("Content-Length") or -1)

    def get_blob(self, repo: str, digest: str, offset: int = 0) -> requests.Response:
        """A streamed response (200, or 206 when resuming at `offset`); caller closes."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.call("GET", f"/v2/{repo}/blobs/{digest}", stream=True,
                         scopes=frozenset({pull_scope(repo)}), headers=headers)
        if resp.status_code not in (200, 206):
            detail = error_detail(resp)
            resp.close()
            raise RegistryError(f"GET blob {repo}@{digest}: {detail}")
        return resp

    def mount_blob(self, repo: str, digest: str, source: str,
                   scopes: frozenset[str]) -> tuple[bool, str | None]:
        """Cross-repository mount. (True, None) when mounted; (False, location) when
        the registry opened an upload instead; (False, None) when it refused."""
        try:
            resp = self.call("POST", add_query(f"/v2/{repo}/blobs/uploads/", mount=digest,
                                               **{"from": source}), scopes=scopes)
        except AuthError:
            return False, None  # no read access to the source: upload instead
        if resp.status_code == 201:
            return True, None
        if resp.status_code == 202 and resp.headers.get("Location"):
            return False, self.absolute(resp.headers["Location"])
        return False, None

    def start_upload(self, repo: str, scopes: frozenset[str]) -> str:
        resp = self.call("POST", f"/v2/{repo}/blobs/uploads/", scopes=scopes)
        if resp.status_code != 202 or not resp.headers.get("Location"):
            raise RegistryError(f"starting a blob upload to {repo}: {error_detail(resp)}")
        return self.absolute(resp.headers["Location"])
