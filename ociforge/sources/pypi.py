"""`pypi`: one exact distribution file from a package index, then handled as an archive.

This is how the Spark distribution is obtained where no Apache mirror is at hand:
the pyspark sdist carries the same jars as `spark-X-bin-hadoop3.tgz`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urldefrag, urljoin

from pydantic import Field, model_validator

from ..errors import FetchError, IntegrityError, LockError, NetworkError
from ..fetch import fetch, obtain
from ..net.redact import redact
from ..spec import ProjectPath
from ..tartree import Tree
from .archive import ArchiveCaps, import_into
from .base import BuildContext, LockResult, PathMapSpec, Sha256, SourceBase
from .pypilock import FilePin, read_lock, write_lock

if TYPE_CHECKING:
    import requests

    from ..net.retry import RetryPolicy

JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, bool]] = []  # (text, href, yanked)
        self._href: str | None = None
        self._yanked = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            found = dict(attrs)
            self._href = found.get("href")
            self._yanked = "data-yanked" in found

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self.links.append((data.strip(), self._href, self._yanked))
            self._href = None


@dataclass(frozen=True)
class IndexFile:
    """One distribution file as a simple-API project page lists it."""

    filename: str
    url: str
    sha256: str | None
    yanked: bool


def list_files(index_url: str, package: str, session: requests.Session,
               policy: RetryPolicy) -> list[IndexFile]:
    """Every file of `package` on the index, via the simple API (JSON or HTML)."""
    from ..net.http import request

    page = f"{index_url.rstrip('/')}/{normalize_name(package)}/"
    try:
        r = request(session, "GET", page, policy=policy,
                    headers={"Accept": f"{JSON_SIMPLE}, text/html;q=0.1"})
    except NetworkError as e:
        raise FetchError(f"package index {redact(index_url)} unreachable: {e.reason}",
                         url=page) from None
    if r.status_code == 404:
        raise FetchError(f"package {package!r} not found on {redact(index_url)}", url=page,
                         status=404)
    if not r.ok:
        raise FetchError(f"GET {redact(page)}: HTTP {r.status_code}", url=page,
                         status=r.status_code)
    if r.headers.get("Content-Type", "").startswith(JSON_SIMPLE):
        return [IndexFile(f["filename"], urljoin(page, f["url"]),
                          f.get("hashes", {}).get("sha256"), bool(f.get("yanked")))
                for f in r.json().get("files", []) if f.get("filename") and f.get("url")]
    parser = _Links()
    parser.feed(r.text)
    out = []
    for text, href, yanked in parser.links:
        url, frag = urldefrag(urljoin(page, href))
        sha = frag.split("=", 1)[1] if frag.startswith("sha256=") else None
        out.append(IndexFile(text or url.rsplit("/", 1)[-1], url, sha, yanked))
    return out


def find_file_url(index_url: str, package: str, filename: str, session: requests.Session,
                  policy: RetryPolicy) -> tuple[str, str | None]:
    """(URL, sha256 the index states) of one distribution file, via the simple API."""
    for f in list_files(index_url, package, session, policy):
        if f.filename == filename or f.url.rsplit("/", 1)[-1] == filename:
            return f.url, f.sha256
    raise FetchError(f"{filename} is not among the files of {package!r} on {redact(index_url)}")


_DIST_VERSION = re.compile(r"^(?P<name>.+?)-(?P<version>\d[^-]*?)(?:\.tar\.gz|\.zip|\.tar\.bz2|"
                           r"-.*\.whl)$")


def file_version(package: str, filename: str) -> str | None:
    """The version in a distribution file name of `package` (sdist or wheel), if any."""
    m = _DIST_VERSION.match(filename)
    if m is None or normalize_name(m.group("name")) != normalize_name(package):
        return None
    return m.group("version")


class PypiSource(SourceBase, ArchiveCaps):
    """The file's sha256 is given inline (`sha256:`) or kept in a lock file (`lock:`),
    which `ociforge lock` fills from the index: the form a matrix template uses, so
    that a new Spark version needs no hand-copied digest."""

    kind: Literal["pypi"]
    package: str
    version: str
    filename: str
    sha256: Sha256 | None = None
    lock_file: ProjectPath | None = Field(None, alias="lock")
    paths: list[PathMapSpec] = []
    index_url: str | None = None

    @model_validator(mode="after")
    def _one_pin(self) -> PypiSource:
        if (self.sha256 is None) == (self.lock_file is None):
            raise ValueError("give either 'sha256' or 'lock' (a lock file `ociforge lock` "
                             "fills)")
        return self

    def lock(self, ctx: BuildContext, update: bool = False) -> list[LockResult]:
        """Pin the file's sha256 as the index states it (`ociforge lock`)."""
        if self.lock_file is None:
            return []
        path = ctx.project_path(self.lock_file)
        before = read_lock(path)
        if self.filename in before and not update:
            return [LockResult(self.lock_file, 1, False)]
        index = self.index_url or ctx.index_url
        _, stated = find_file_url(index, self.package, self.filename, ctx.session, ctx.retry)
        if not stated:
            raise FetchError(f"{self.filename}: {redact(index)} states no sha256 for it; "
                             "a lock needs the index's hash")
        pin = FilePin(self.package, self.version, stated)
        after = {**read_lock(path), self.filename: pin}  # re-read: other layers' pins
        if after != before:
            write_lock(path, after)
        return [LockResult(self.lock_file, 1, before.get(self.filename) != pin)]

    def check_lock(self, ctx: BuildContext) -> list[LockResult]:
        if self.lock_file is None:
            return []
        self._pinned(ctx)
        return [LockResult(self.lock_file, 1, False)]

    def _pinned(self, ctx: BuildContext) -> str:
        """The sha256 this source builds from: inline, or from the lock (never resolved)."""
        if self.sha256 is not None:
            return self.sha256
        assert self.lock_file is not None
        path = ctx.project_path(self.lock_file)
        if not path.exists():
            raise LockError(f"{self.lock_file} is missing")
        pin = read_lock(path).get(self.filename)
        if pin is None or (pin.package, pin.version) != (self.package, self.version):
            raise LockError(f"{self.lock_file} has no pin for {self.filename} "
                            f"({self.package}=={self.version})")
        return pin.sha256

    def key_material(self, ctx: BuildContext) -> dict[str, Any]:
        return {"kind": "pypi", "sha256": self._pinned(ctx),
                "paths": [p.key() for p in self.paths]}

    def populate(self, tree: Tree, ctx: BuildContext, workdir: Path) -> dict[str, Any]:
        index = self.index_url or ctx.index_url
        sha256 = self._pinned(ctx)
        pins = {"sha256": sha256}

        def download() -> Path:
            url, stated = find_file_url(index, self.package, self.filename, ctx.session,
                                        ctx.retry)
            if stated and stated != sha256:
                raise IntegrityError(f"sha256 mismatch for {self.filename}: pinned "
                                     f"{sha256}, the index states {stated}",
                                     subject=self.filename, algorithm="sha256",
                                     expected=sha256, got=stated)
            return fetch(url, pins, session=ctx.session, policy=ctx.retry)

        # The index is asked only when the cache has no good copy.
        path = obtain(pins, self.filename, download)
        prov = {"package": self.package, "version": self.version, "filename": self.filename,
                "sha256": sha256, "index": redact(index)}
        return import_into(tree, ctx, workdir, path, self.paths, False, prov, self.limits())
