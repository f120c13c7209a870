"""Maven's `settings.xml`: the mirrors and server credentials a Maven user already has.

Only what artifact downloads need is read: `<mirrors>` (a mirror stands in for the
repositories its `<mirrorOf>` names, as in Maven) and `<servers>` (credentials by
id). `${env.NAME}` is expanded, as Maven does, so CI can keep secrets in the
environment. Encrypted passwords (`{…}`, settings-security.xml) are not supported and
fail clearly when such a server is used. Values are kept in memory only.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import AuthError, RecipeError
from .net.credentials import Credentials, is_loopback

SETTINGS_ENV = "OCIFORGE_MAVEN_SETTINGS"
_ENV_REF = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Mirror:
    id: str
    url: str
    mirror_of: str


@dataclass(frozen=True)
class Server:
    id: str
    username: str
    password: str = field(repr=False)


@dataclass
class Settings:
    """Mirrors in file order and servers by id; empty when there is no settings file."""

    mirrors: list[Mirror] = field(default_factory=list)
    servers: dict[str, Server] = field(default_factory=dict)
    path: Path | None = None

    def mirror_for(self, repo_id: str, repo_url: str) -> Mirror | None:
        """The mirror Maven would use for this repository: an exact `mirrorOf` id
        first, then the first mirror whose pattern matches."""
        for m in self.mirrors:
            if m.mirror_of.strip() == repo_id:
                return m
        for m in self.mirrors:
            if mirror_of_matches(m.mirror_of, repo_id, repo_url):
                return m
        return None

    def mirror_with_url(self, url: str) -> Mirror | None:
        """A mirror declared with this very URL (so a repository named by URL on the
        command line finds the credentials of the matching `<server>`)."""
        want = url.rstrip("/")
        return next((m for m in self.mirrors if m.url.rstrip("/") == want), None)

    def credentials(self, server_id: str) -> Credentials | None:
        server = self.servers.get(server_id)
        if server is None or not server.username:
            return None
        if server.password.startswith("{") and server.password.endswith("}"):
            raise AuthError(f"{self.path}: the password of server {server_id!r} is encrypted "
                            "(settings-security.xml), which ociforge does not read; use "
                            "${env.NAME} or the OCIFORGE_MAVEN_* variables")
        return Credentials(server.username, server.password, source=f"settings.xml server "
                                                                    f"{server_id}")


def _is_external(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme != "file" and not is_loopback(parts.netloc.rpartition("@")[2])


def mirror_of_matches(spec: str, repo_id: str, repo_url: str) -> bool:
    """Maven's `mirrorOf` grammar: `*`, `external:*`, `external:http:*`, ids, and
    `!id` exclusions, comma-separated; an exclusion always wins."""
    matched = False
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part.startswith("!"):
            if part[1:] == repo_id:
                return False
        elif (part == "*" or part == repo_id
              or (part == "external:*" and _is_external(repo_url))
              or (part == "external:http:*" and _is_external(repo_url)
                  and urlsplit(repo_url).scheme == "http")):
            matched = True
    return matched


def settings_path() -> Path | None:
    """`$OCIFORGE_MAVEN_SETTINGS` (empty or `none` disables), else ~/.m2/settings.xml."""
    env = os.environ.get(SETTINGS_ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "none") else Path(env)
    return Path.home() / ".m2" / "settings.xml"


def _expand(text: str | None) -> str:
    return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), m.group(0)), (text or "").strip())


def _strip_namespaces(root: ET.Element) -> None:
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.startswith("{"):
            el.tag = el.tag.split("}", 1)[1]


def parse_settings(text: str, path: Path | None = None) -> Settings:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise RecipeError(f"{path or 'settings.xml'}: not well-formed XML ({e})") from None
    _strip_namespaces(root)
    settings = Settings(path=path)
    for el in root.findall("./mirrors/mirror"):
        mirror = Mirror(_expand(el.findtext("id")), _expand(el.findtext("url")),
                        _expand(el.findtext("mirrorOf")))
        if mirror.id and mirror.url and mirror.mirror_of:
            settings.mirrors.append(mirror)
    for el in root.findall("./servers/server"):
        server = Server(_expand(el.findtext("id")), _expand(el.findtext("username")),
                        _expand(el.findtext("password")))
        if server.id:
            settings.servers.setdefault(server.id, server)
    return settings


def load_settings() -> Settings:
    """The user's settings (see `settings_path`); empty when the file does not exist."""
    path = settings_path()
    if path is None or not path.is_file():
        return Settings()
    return parse_settings(path.read_text(), path)
