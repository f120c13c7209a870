"""`pypi`: one exact distribution file from a package index, then handled as an archive.

This is how the Spark distribution is obtained where no Apache mirror is at hand:
the pyspark sdist carries the same jars as `spark-X-bin-hadoop3.tgz`.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urldefrag, urljoin

from ..errors import FetchError, IntegrityError, NetworkError
from ..fetch import fetch, obtain
from ..net.redact import redact
from ..tartree import Tree
from .archive import ArchiveCaps, import_into
from .base import BuildContext, PathMapSpec, Sha256, SourceBase

if TYPE_CHECKING:
    import requests

    from ..net.retry import RetryPolicy

JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self.links.append((data.strip(), self._href))
            self._href = None


def find_file_url(index_url: str, package: str, filename: str, session: requests.Session,
                  policy: RetryPolicy) -> tuple[str, str | None]:
    """(URL, sha256 the index states) of one distribution file, via the simple API."""
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
        for f in r.json().get("files", []):
            if f.get("filename") == filename:
                return urljoin(page, f["url"]), f.get("hashes", {}).get("sha256")
    else:
        parser = _Links()
        parser.feed(r.text)
        for text, href in parser.links:
            url, frag = urldefrag(urljoin(page, href))
            if text == filename or url.rsplit("/", 1)[-1] == filename:
                sha = frag.split("=", 1)[1] if frag.startswith("sha256=") else None
                return url, sha
    raise FetchError(f"{filename} is not among the files of {package!r} on {redact(index_url)}")


class PypiSource(SourceBase, ArchiveCaps):
    kind: Literal["pypi"]
    package: str
    version: str
    filename: str
    sha256: Sha256
    paths: list[PathMapSpec] = []
    index_url: str | None = None

    def key_material(self, ctx: BuildContext) -> dict[str, Any]:
        return {"kind": "pypi", "sha256": self.sha256, "paths": [p.key() for p in self.paths]}

    def populate(self, tree: Tree, ctx: BuildContext, workdir: Path) -> dict[str, Any]:
        index = self.index_url or ctx.index_url
        pins = {"sha256": self.sha256}

        def download() -> Path:
            url, stated = find_file_url(index, self.package, self.filename, ctx.session,
                                        ctx.retry)
            if stated and stated != self.sha256:
                raise IntegrityError(f"sha256 mismatch for {self.filename}: pinned "
                                     f"{self.sha256}, the index states {stated}",
                                     subject=self.filename, algorithm="sha256",
                                     expected=self.sha256, got=stated)
            return fetch(url, pins, session=ctx.session, policy=ctx.retry)

        # The index is asked only when the cache has no good copy.
        path = obtain(pins, self.filename, download)
        prov = {"package": self.package, "version": self.version, "filename": self.filename,
                "sha256": self.sha256, "index": redact(index)}
        return import_into(tree, ctx, workdir, path, self.paths, False, prov, self.limits())
