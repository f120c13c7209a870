"""Where registry credentials come from: Docker and containers auth files, and the
credential helpers they name. Read on demand, kept in memory only, never written.

Files, first match wins: `$REGISTRY_AUTH_FILE` (podman/skopeo's auth.json), then
`$DOCKER_CONFIG/config.json` (default ~/.docker/config.json). Within one file:
`credHelpers[host]`, then `credsStore`, then `auths[host]`, as Docker itself does.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import AuthError
from ..net.credentials import Credentials
from .reference import DOCKER_HUB_ALIASES

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
HELPER_TIMEOUT_S = 30


def auth_files() -> list[Path]:
    """The files to look in, in order (missing ones are skipped later)."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    docker_dir = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    files.append(Path(docker_dir) / "config.json")
    return files


def normalize_host(key: str) -> str:
    """`https://index.docker.io/v1/` → docker.io; `http://reg:5000/x` → reg:5000."""
    text = key.strip()
    if "://" in text:
        text = urlsplit(text).netloc or text
    text = text.split("/", 1)[0].lower()
    return "docker.io" if text in DOCKER_HUB_ALIASES else text


def _helper_server(registry: str) -> str:
    return DOCKER_HUB_KEY if normalize_host(registry) == "docker.io" else registry


def run_helper(name: str, registry: str) -> Credentials | None:
    """`docker-credential-<name> get`; None when the helper has nothing for this host."""
    exe = shutil.which(f"docker-credential-{name}")
    if exe is None:
        raise AuthError(f"credential helper docker-credential-{name} is not installed "
                        "(named in a Docker config file)")
    try:
        p = subprocess.run([exe, "get"], input=_helper_server(registry), capture_output=True,
                           text=True, timeout=HELPER_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AuthError(f"credential helper docker-credential-{name} failed: "
                        f"{type(e).__name__}") from None
    if p.returncode != 0:
        # Helpers say "credentials not found in native keychain" for unknown hosts.
        if "not found" in (p.stdout + p.stderr).lower():
            return None
        raise AuthError(f"credential helper docker-credential-{name} failed "
                        f"(exit {p.returncode})")
    try:
        data = json.loads(p.stdout)
        user, secret = str(data["Username"]), str(data["Secret"])
    except (ValueError, KeyError, TypeError):
        raise AuthError(f"credential helper docker-credential-{name} gave unreadable "
                        "output") from None
    source = f"docker-credential-{name}"
    if user == "<token>":
        return Credentials("", secret, identity_token=True, source=source)
    return Credentials(user, secret, source=source)


def _from_auths_entry(entry: dict[str, Any], source: str) -> Credentials | None:
    if entry.get("identitytoken"):
        return Credentials(str(entry.get("username", "")), str(entry["identitytoken"]),
                           identity_token=True, source=source)
    if entry.get("auth"):
        try:
            raw = base64.b64decode(str(entry["auth"]), validate=False).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError(f"unreadable `auth` value in {source}") from None
        user, sep, secret = raw.partition(":")
        if not sep:
            raise AuthError(f"unreadable `auth` value in {source} (no ':' inside)")
        return Credentials(user, secret, source=source)
    if entry.get("username") and entry.get("password") is not None:
        return Credentials(str(entry["username"]), str(entry["password"]), source=source)
    return None


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise AuthError(f"cannot read auth file {path}: {type(e).__name__}") from None
    if not isinstance(data, dict):
        raise AuthError(f"auth file {path} is not a JSON object")
    return data


def _match(mapping: dict[str, Any], host: str) -> Any:
    for key, value in mapping.items():
        if normalize_host(key) == host:
            return value
    return None


def from_file(path: Path, registry: str) -> Credentials | None:
    data = _load(path)
    if data is None:
        return None
    host = normalize_host(registry)
    helper = _match(data.get("credHelpers") or {}, host)
    if helper:
        return run_helper(str(helper), registry)
    if data.get("credsStore"):
        creds = run_helper(str(data["credsStore"]), registry)
        if creds is not None:
            return creds
    entry = _match(data.get("auths") or {}, host)
    if isinstance(entry, dict):
        return _from_auths_entry(entry, str(path))
    return None


def find(registry: str, files: list[Path] | None = None) -> Credentials | None:
    """Credentials for `registry` (host[:port]) from the first file that has some."""
    for path in files if files is not None else auth_files():
        creds = from_file(path, registry)
        if creds is not None:
            return creds
    return None
