"""The locked `.deb`s of a `debian` layer: fetched by sha256 into the downloads cache
(the mirror first, then the snapshot archive of the lock's date), and laid out as a
flat local apt repository that holds exactly them, served on 127.0.0.1 for the build
(an HTTP URL, unlike a file:// one, leaves nothing of its path in the root filesystem
and needs no bind mount in the chroot, whatever the mmdebstrap mode or variant).

Given only the locked versions, apt can resolve nothing else, so the root filesystem
depends on the lock alone, not on what the mirror serves on the day.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..digests import file_hexdigest
from ..errors import BuildError, FetchError, UsageError
from ..fetch import fetch, obtain
from ..net.redact import redact
from .base import BuildContext
from .debianlock import DebianLock, DebianPackage

DEFAULT_SNAPSHOT_ARCHIVE = "https://snapshot.debian.org/archive/{archive}/{timestamp}/"


def archive_of(suite: str) -> str:
    """The archive a suite is published in (snapshot.debian.org's names)."""
    return "debian-security" if suite.endswith("-security") else "debian"


def snapshot_url(template: str, suite: str, timestamp: str) -> str:
    """The snapshot archive's root for a suite's archive at a time."""
    try:
        return template.format(archive=archive_of(suite), timestamp=timestamp).rstrip("/")
    except (KeyError, IndexError, ValueError):
        raise UsageError(f"snapshot archive {redact(template)!r}: a URL template may name "
                         "only {archive} and {timestamp}") from None


def fetch_locked(lock: DebianLock, ctx: BuildContext, mirror_for: Callable[[str], str],
                 snapshot: str | None) -> list[tuple[DebianPackage, Path]]:
    """Every locked `.deb`, verified against its sha256 (cached ones are re-hashed,
    a damaged one quarantined and fetched again). A version the mirror no longer
    serves is fetched from the snapshot archive at the lock's date; if neither has
    it, a FetchError names the package, its version and where it was looked for (an
    IntegrityError when a damaged cached copy was set aside and none could be fetched)."""
    out = []
    for p in lock.packages:
        urls = [f"{mirror_for(p.suite).rstrip('/')}/{p.filename}"]
        if snapshot:
            urls.append(f"{snapshot_url(snapshot, p.suite, lock.resolved)}/{p.filename}")
        pins = {"sha256": p.sha256}
        out.append((p, obtain(pins, f"Debian package {p.name} {p.version}",
                              functools.partial(_first, urls, pins, p, ctx))))
    return out


def _first(urls: list[str], pins: dict[str, str], p: DebianPackage,
           ctx: BuildContext) -> Path:
    tried = []
    for url in urls:
        try:
            return fetch(url, pins, session=ctx.session, policy=ctx.retry)
        except FetchError as e:
            tried.append(f"{redact(url)} ({f'HTTP {e.status}' if e.status else e})")
    hint = "" if len(urls) > 1 else " (and no snapshot archive is configured)"
    raise FetchError(f"Debian package {p.name} {p.version} ({p.architecture}, {p.suite}) "
                     f"could not be fetched{hint}: tried {'; '.join(tried)}", url=urls[0])


def write_repository(repo: Path, debs: list[tuple[DebianPackage, Path]]) -> None:
    """A flat apt repository (`deb [trusted=yes] file://REPO ./`) of exactly these
    files: trusted because each was just checked against the lock, whose sha256 came
    from the signed index. Control fields are read from the `.deb`s by dpkg-deb."""
    pool = repo / "pool"
    pool.mkdir(parents=True)
    stanzas = []
    for p, path in debs:
        dest = pool / f"{p.name}_{p.version.replace(':', '%3a')}_{p.architecture}.deb"
        try:
            os.link(path, dest)
        except OSError:  # the downloads cache is on another file system
            shutil.copyfile(path, dest)
        proc = subprocess.run(["dpkg-deb", "--field", str(dest)], capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise BuildError(f"Debian package {p.name} {p.version}: dpkg-deb cannot read "
                             f"it: {proc.stderr.strip()}")
        stanzas.append(proc.stdout.rstrip("\n") + f"\nFilename: pool/{dest.name}\n"
                       f"Size: {p.size}\nSHA256: {p.sha256}\n")
    packages = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(packages)
    sha = file_hexdigest(repo / "Packages")
    (repo / "Release").write_text(f"Origin: ociforge\nLabel: locked\nSHA256:\n"
                                  f" {sha} {len(packages)} Packages\n")


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_repository(repo: Path) -> Iterator[str]:
    """Serve the repository on an ephemeral loopback port for one build; yields the
    apt source line."""
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_Quiet, directory=str(repo)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"deb [trusted=yes] http://127.0.0.1:{server.server_address[1]}/ ./"
    finally:
        server.shutdown()
        server.server_close()
