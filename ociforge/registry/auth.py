"""Answering a registry's `WWW-Authenticate` challenge: basic, or bearer tokens.

Tokens are cached per realm + service + scope set, because registries grant exactly
the scopes asked for: a token for `repository:a:pull` is useless for pushing to `b`.
A 401 earns one token refresh; a second 401 (or any 403) is final, so a wrong
password costs a handful of requests, not a retry storm that locks the account.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import requests

from ..errors import AuthError, NetworkError
from ..net.credentials import CredentialHook, Credentials, basic_header, is_loopback
from ..net.http import new_session, request
from ..net.redact import redact
from ..net.retry import RetryPolicy

TOKEN_TIMEOUT_S = 30
DEFAULT_TOKEN_LIFETIME_S = 60
_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lower case
    params: dict[str, str]

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.params.get("scope", "").split())


def parse_challenge(header: str) -> Challenge:
    """`Bearer realm="https://a/token",service="reg",scope="repository:x:pull"`."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for m in _PARAM_RE.finditer(rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
    return Challenge(scheme.lower(), params)


class Authenticator:
    """Authorization headers for one registry, shared by all worker threads. Token
    requests use the client's session and retry policy."""

    def __init__(self, registry: str, lookup: Callable[[], Credentials | None],
                 verify: bool | str, insecure: bool, *,
                 session: Callable[[], requests.Session] | None = None,
                 policy: RetryPolicy | None = None) -> None:
        self.registry = registry
        self._lookup = lookup
        self._creds: Credentials | None = None
        self._looked_up = False
        self._verify = verify
        self._insecure = insecure
        self._session = session or new_session
        self._policy = policy or RetryPolicy()
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, tuple[str, ...]], tuple[str, float]] = {}
        self._token_locks: dict[tuple[str, str, tuple[str, ...]], threading.Lock] = {}
        self.token_requests = 0

    # -- credentials ---------------------------------------------------------------

    def credentials(self) -> Credentials | None:
        with self._lock:
            if not self._looked_up:
                self._creds = self._lookup()
                self._looked_up = True
            return self._creds

    # -- headers -------------------------------------------------------------------

    def hook(self, scopes: frozenset[str]) -> CredentialHook:
        """The credential hook for requests that need `scopes`."""
        return _ScopedHook(self, scopes)

    def header(self, scopes: frozenset[str]) -> str | None:
        """The header to send up front, if the registry's scheme is known already."""
        ch = self._challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            creds = self.credentials()
            return basic_header(creds) if creds else None
        key = self._key(ch, scopes)
        cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic():
            return "Bearer " + cached[0]
        return self._fetch_token(ch, key, stale=None)

    def answer(self, www_authenticate: str | None, scopes: frozenset[str],
               sent: str | None) -> str:
        """A 401 arrived: the header to retry with, or AuthError if retrying is futile."""
        if not www_authenticate:
            raise AuthError(f"{self.registry} refused the request (401) without saying how "
                            "to authenticate")
        ch = parse_challenge(www_authenticate)
        if ch.scheme not in ("basic", "bearer"):
            raise AuthError(f"{self.registry} asks for unsupported authentication "
                            f"scheme {ch.scheme!r}")
        self._challenge = Challenge(ch.scheme, {k: v for k, v in ch.params.items()
                                                if k != "scope"})
        if ch.scheme == "basic":
            creds = self.credentials()
            if creds is None:
                raise self._no_credentials()
            header = basic_header(creds)
            if sent == header:
                raise self._wrong_credentials(creds)
            return header
        key = self._key(ch, scopes | ch.scopes)
        stale = sent[7:] if sent and sent.startswith("Bearer ") else None
        return self._fetch_token(ch, key, stale=stale)

    def note_challenge(self, www_authenticate: str | None) -> None:
        """Remember the scheme from the /v2/ ping so later requests authenticate first."""
        if www_authenticate:
            ch = parse_challenge(www_authenticate)
            if ch.scheme in ("basic", "bearer"):
                self._challenge = Challenge(ch.scheme, {k: v for k, v in ch.params.items()
                                                        if k != "scope"})

    @property
    def scheme(self) -> str | None:
        return self._challenge.scheme if self._challenge else None

    # -- tokens --------------------------------------------------------------------

    @staticmethod
    def _key(ch: Challenge, scopes: frozenset[str]) -> tuple[str, str, tuple[str, ...]]:
        return ch.params.get("realm", ""), ch.params.get("service", ""), tuple(sorted(scopes))

    def _fetch_token(self, ch: Challenge, key: tuple[str, str, tuple[str, ...]],
                     stale: str | None) -> str:
        with self._lock:
            lock = self._token_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._tokens.get(key)
            if cached and cached[1] > time.monotonic() and cached[0] != stale:
                return "Bearer " + cached[0]  # another thread refreshed it meanwhile
            token, lifetime = self._request_token(key)
            # Renew a little early so a token never expires between check and use.
            self._tokens[key] = (token, time.monotonic() + max(1.0, lifetime * 0.9 - 5))
            return "Bearer " + token

    def _request_token(self, key: tuple[str, str, tuple[str, ...]]) -> tuple[str, float]:
        realm, service, scopes = key
        if not realm:
            raise AuthError(f"{self.registry} sent a bearer challenge without a realm")
        host = urlsplit(realm).netloc
        shown = redact(realm.split("?")[0])  # the token server, as printed
        if not realm.startswith("https://") and not (is_loopback(host) or self._insecure):
            raise AuthError(f"token server {shown} is plain HTTP; refusing to "
                            "send credentials there (use --insecure to allow)")
        creds = self.credentials()
        self.token_requests += 1
        timeout = (TOKEN_TIMEOUT_S, TOKEN_TIMEOUT_S)
        try:
            if creds is not None and creds.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": creds.secret,
                        "service": service, "scope": " ".join(scopes), "client_id": "ociforge"}
                resp = request(self._session(), "POST", realm, policy=self._policy,
                               body=lambda: form, timeout=timeout, verify=self._verify)
            else:
                params: list[tuple[str, str]] = [("service", service)] if service else []
                params += [("scope", s) for s in scopes]
                url = realm + ("&" if "?" in realm else "?") + urlencode(params)
                headers = {"Authorization": basic_header(creds)} if creds else None
                resp = request(self._session(), "GET", url if params else realm,
                               policy=self._policy, headers=headers, timeout=timeout,
                               verify=self._verify)
        except NetworkError as e:
            from . import RegistryError

            raise RegistryError(f"token server {shown} unreachable: "
                                f"{e.reason}", url=realm) from None
        if resp.status_code in (401, 403):
            raise self._wrong_credentials(creds) if creds else self._no_credentials()
        if resp.status_code != 200:
            from . import RegistryError

            raise RegistryError(f"token server {shown} answered "
                                f"HTTP {resp.status_code}", url=realm, status=resp.status_code)
        try:
            body = resp.json()
            token = str(body.get("token") or body["access_token"])
            lifetime = float(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME_S)
        except (ValueError, KeyError, TypeError):
            raise AuthError(f"token server {shown} sent no token") from None
        return token, lifetime

    # -- errors --------------------------------------------------------------------

    def _no_credentials(self) -> AuthError:
        return AuthError(f"{self.registry} requires authentication and no credentials were "
                         "found (checked $REGISTRY_AUTH_FILE and $DOCKER_CONFIG/config.json)")

    def _wrong_credentials(self, creds: Credentials) -> AuthError:
        who = f" for user {creds.username!r}" if creds.username else ""
        src = f" (from {creds.source})" if creds.source else ""
        return AuthError(f"{self.registry} rejected the credentials{who}{src}: wrong "
                         "username or password, or no access")


@dataclass(frozen=True)
class _ScopedHook:
    """`Authenticator` as a `CredentialHook` for one scope set."""

    auth: Authenticator
    scopes: frozenset[str]

    def header(self, url: str) -> str | None:
        return self.auth.header(self.scopes)

    def challenge(self, url: str, www_authenticate: str | None, sent: str | None) -> str | None:
        return self.auth.answer(www_authenticate, self.scopes, sent)
