"""`maven`: pinned jars from Maven repositories, checked twice and locked.

Each coordinate is looked up in an ordered list of repositories (Maven Central
unless the recipe, `$OCIFORGE_MAVEN_REPOS` or a settings.xml mirror says otherwise).
The jar is verified against the repository's own checksum files while it streams
into the shared downloads cache, and its sha256 goes into a lock file that is
committed beside the recipes. The lock's pins are the layer's key material, so a
cached layer is found without any network; a later download that does not match
the lock is refused. No transitive resolution: the Spark add-ons are shaded bundles
that carry their dependencies, and a resolver would only add jars nobody pinned.

Credentials come from the environment or ~/.m2/settings.xml; they travel only in
request headers, never in a URL that could be printed, recorded or locked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from ..errors import AuthError, FetchError, IntegrityError, LockError, NetworkError, RecipeError
from ..fetch import cached, fetch, obtain, verify_local
from ..maven_settings import Settings, load_settings
from ..net.credentials import BasicAuth, Credentials, is_loopback
from ..net.http import get_optional
from ..net.redact import redact_reference
from ..platforms import DEFAULT_PLATFORM, PLATFORM_PATTERN, arch_lock_file, debian_arch
from ..spec import ProjectPath
from ..tartree import Tree
from .base import BuildContext, LockResult, SourceBase, Spec
from .mavenlock import LockEntry, render_lock, write_lock
from .mavenlock import read_lock as _read_lock

if TYPE_CHECKING:
    import requests

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
CENTRAL_HOSTS = frozenset({"repo1.maven.org", "repo.maven.apache.org"})
REPOS_ENV = "OCIFORGE_MAVEN_REPOS"
ENV_PREFIX = "OCIFORGE_MAVEN_"
KEYRING_ENV = "OCIFORGE_MAVEN_KEYRING"  # a keyring (gpg --import KEYS) to check .asc files
# Checksum files tried for every artifact; md5 only when none of these exists.
CHECKSUMS = ("sha512", "sha256", "sha1")
HEX_LENGTH = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}

_PART = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_COORD_RE = re.compile(rf"^({_PART}):({_PART}):([A-Za-z0-9_][A-Za-z0-9_.+\-]*)"
                       rf"(?::({_PART}))?(?:@([A-Za-z0-9]+))?$")
_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
T = TypeVar("T")


# -- coordinates ---------------------------------------------------------------------


@dataclass(frozen=True)
class Coordinate:
    """`group:artifact:version[:classifier][@ext]` (Gradle's notation; ext defaults
    to jar). Only exact releases: ranges, LATEST/RELEASE and SNAPSHOTs move."""

    group: str
    artifact: str
    version: str
    classifier: str | None = None
    ext: str = "jar"

    @classmethod
    def parse(cls, text: str) -> Coordinate:
        m = _COORD_RE.match(text.strip())
        if not m:
            raise ValueError(f"{text!r} is not group:artifact:version[:classifier][@ext]")
        group, artifact, version, classifier, ext = m.groups()
        if version.upper() in ("LATEST", "RELEASE") or version.upper().endswith("SNAPSHOT"):
            raise ValueError(f"{text!r}: pin an exact release version (SNAPSHOT, LATEST and "
                             "RELEASE change under the same name)")
        return cls(group, artifact, version, classifier, ext or "jar")

    def __str__(self) -> str:
        text = f"{self.group}:{self.artifact}:{self.version}"
        if self.classifier:
            text += f":{self.classifier}"
        return text if self.ext == "jar" else f"{text}@{self.ext}"

    @property
    def filename(self) -> str:
        suffix = f"-{self.classifier}" if self.classifier else ""
        return f"{self.artifact}-{self.version}{suffix}.{self.ext}"

    @property
    def path(self) -> str:
        """Where the file lives below a repository root (Maven 2 layout)."""
        return f"{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self.filename}"


def _coordinate(text: str) -> str:
    return str(Coordinate.parse(text))


# -- repositories --------------------------------------------------------------------


def strip_credentials(url: str) -> tuple[str, Credentials | None]:
    """(URL without userinfo, query or trailing slash; the userinfo as credentials):
    what is left is safe to print, record and lock."""
    parts = urlsplit(url.strip())
    creds = None
    if parts.username:
        creds = Credentials(unquote(parts.username), unquote(parts.password or ""),
                            source="URL")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", "")), creds


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} {redact_reference(url)!r} is not an http(s) URL")


def default_id(url: str) -> str:
    """The id a repository given only by URL answers to (for mirrorOf and credentials):
    `central` for Maven Central, else the host name."""
    host = urlsplit(url).hostname or ""
    return "central" if host in CENTRAL_HOSTS else host


def _recipe_url(url: str) -> str:
    _check_url(url, "repository")
    if urlsplit(url.strip()).username:
        raise ValueError("no credentials in a recipe (it is committed): use "
                         "OCIFORGE_MAVEN_<ID>_USERNAME/PASSWORD or ~/.m2/settings.xml")
    return url.strip()


class RepositorySpec(Spec):
    """A repository: a URL, or `{id, url}` where the id must match a settings.xml
    `<server>`/`<mirrorOf>` (a bare URL answers to `default_id`)."""

    id: Annotated[str, Field(pattern=_ID_RE.pattern)]
    url: Annotated[str, AfterValidator(_recipe_url)]

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, v: Any) -> Any:
        if isinstance(v, str):
            _check_url(v, "repository")
            return {"id": default_id(v), "url": v}
        return v


@dataclass
class Repository:
    """A repository as it will be contacted: credential-free URL, id, where it came
    from (which decides which credentials may be sent to it)."""

    id: str
    url: str
    origin: str  # "recipe", "env", "default" or "mirror"
    credentials: Credentials | None = None


def _env_entries(values: list[str]) -> list[tuple[str, str]]:
    """`URL` or `ID=URL` entries of the flag or `$OCIFORGE_MAVEN_REPOS`."""
    out = []
    for raw in values:
        for entry in (e.strip() for e in raw.split(",")):
            if not entry:
                continue
            rid, sep, rest = entry.partition("=")
            if sep and _ID_RE.match(rid) and "://" in rest:
                url = rest
            else:
                rid, url = "", entry
            try:
                _check_url(url, "repository")
            except ValueError as e:
                raise RecipeError(f"{REPOS_ENV}: {e}") from None
            out.append((rid or default_id(url), url))
    return out


def _env_credentials(repo_id: str, global_too: bool) -> Credentials | None:
    """`OCIFORGE_MAVEN_<ID>_USERNAME/PASSWORD` (ID upper-cased, other characters
    `_`); the unqualified pair only for repositories named by flag or env."""
    name = re.sub(r"[^A-Za-z0-9]", "_", repo_id).upper()
    for prefix, allowed in ((f"{ENV_PREFIX}{name}_", True), (ENV_PREFIX, global_too)):
        user = os.environ.get(f"{prefix}USERNAME")
        if allowed and user:
            return Credentials(user, os.environ.get(f"{prefix}PASSWORD", ""),
                               source=f"${prefix}USERNAME")
    return None


def effective_repositories(declared: list[RepositorySpec], ctx: BuildContext,
                           settings: Settings) -> list[Repository]:
    """The repositories to try, in order.

    The recipe's list wins; without one, the `--maven-repo` flag (`ctx.maven_repos`,
    when the CLI provides it) or `$OCIFORGE_MAVEN_REPOS`; else Maven Central. Then a
    settings.xml mirror replaces every repository its `mirrorOf` covers, as in Maven.
    Credentials, first found: userinfo in an env URL, `OCIFORGE_MAVEN_<ID>_*`, the
    unqualified `OCIFORGE_MAVEN_USERNAME/PASSWORD` (flag/env repositories only), the
    settings.xml `<server>` with the repository's (or its mirror's) id.
    """
    if declared:
        base = [(r.id, r.url, "recipe") for r in declared]
    else:
        flagged = ctx.maven_repos
        env = os.environ.get(REPOS_ENV, "")
        entries = _env_entries(list(flagged) if flagged else [env])
        base = ([(i, u, "env") for i, u in entries] if entries
                else [("central", MAVEN_CENTRAL, "default")])
    out: list[Repository] = []
    for rid, raw_url, origin in base:
        url, url_creds = strip_credentials(raw_url)
        mirror = settings.mirror_for(rid, url)
        if mirror is not None:
            rid, origin = mirror.id, "mirror"
            url, url_creds = strip_credentials(mirror.url)
        if any(r.url == url for r in out):
            continue  # several repositories behind one mirror: ask it once
        creds = url_creds or _env_credentials(rid, origin == "env") or settings.credentials(rid)
        if creds is None and mirror is None:
            same = settings.mirror_with_url(url)
            creds = settings.credentials(same.id) if same is not None else None
        out.append(Repository(rid, url, origin, creds))
    return out


# -- checksum files ------------------------------------------------------------------


def parse_checksum(text: str, algo: str) -> str | None:
    """The digest in a checksum file: `<hex>`, `<hex>  name`, `<hex> *name`,
    `ALGO (name) = <hex>`, or hex split into groups by spaces (old Maven tools)."""
    n = HEX_LENGTH[algo]
    pattern = re.compile(rf"^[0-9a-fA-F]{{{n}}}$")
    for token in text.split():
        token = token.lstrip("*")
        if pattern.match(token):
            return token.lower()
    lines = text.strip().splitlines()
    squeezed = "".join(lines[0].split()) if lines else ""
    return squeezed.lower() if pattern.match(squeezed) else None


# -- the lock (format in mavenlock.py) ----------------------------------------------


def read_lock(path: Path) -> dict[str, LockEntry]:
    """coordinate → pin. One file may serve several maven layers."""
    return _read_lock(path, _coordinate)


def update_lock(path: Path, updates: dict[str, LockEntry]) -> dict[str, LockEntry]:
    """Merge `updates` into the lock, re-reading it first so that entries other
    layers wrote meanwhile survive; written atomically."""
    entries = {**read_lock(path), **updates}
    write_lock(path, entries)
    return entries


def unclaimed(ctx: BuildContext, sources: list[MavenSource]) -> dict[str, list[str]]:
    """Lock file → its entries that none of `sources` (every maven source of the
    project that uses that file) asks for: stale pins, for `ociforge lock --check`."""
    wanted: dict[str, set[str]] = {}
    for src in sources:
        wanted.setdefault(src.lock_file, set()).update(str(c) for c in src.coordinates())
    out = {}
    for lock_file, coords in wanted.items():
        extra = sorted(set(read_lock(ctx.project_path(lock_file))) - coords)
        if extra:
            out[lock_file] = extra
    return out


def prune(ctx: BuildContext, sources: list[MavenSource]) -> None:
    """Drop the entries `unclaimed` finds (after `ociforge lock` re-pinned)."""
    for lock_file, extra in unclaimed(ctx, sources).items():
        path = ctx.project_path(lock_file)
        write_lock(path, {c: e for c, e in read_lock(path).items() if c not in extra})


# -- resolving and downloading -------------------------------------------------------


class _Resolver:
    """One resolution run: the repositories, and which of them were found unreachable
    (asked once, not once per artifact). Requests go through the build's session and
    retry policy; a repository's credentials travel in a per-request header."""

    def __init__(self, source: MavenSource, ctx: BuildContext) -> None:
        self.source = source
        self.ctx = ctx
        self.repos = effective_repositories(list(source.repositories), ctx, load_settings())
        self.unreachable: dict[str, str] = {}
        for repo in self.repos:
            parts = urlsplit(repo.url)
            if repo.credentials and parts.scheme == "http" and not is_loopback(parts.netloc):
                raise AuthError(f"refusing to send the credentials for repository {repo.id!r} "
                                f"({repo.url}) over plain HTTP; use https")

    def close(self) -> None:
        """Nothing to release: the session is the build's."""

    @staticmethod
    def auth(repo: Repository) -> BasicAuth | None:
        """The repository's credentials as a per-request header (requests drops it if
        a redirect leaves the host)."""
        return BasicAuth(repo.credentials) if repo.credentials else None

    def request(self, repo: Repository, method: str, url: str) -> requests.Response:
        """One request under the build's retry policy; NetworkError if no answer came."""
        from ..net.http import request

        return request(self.ctx.session, method, url, policy=self.ctx.retry,
                       auth=self.auth(repo))

    def locate(self, coord: Coordinate) -> Repository:
        """The first repository that has the file; else an error naming every one."""
        tried: list[str] = []
        auth_refused = busy = False
        for repo in self.repos:
            if repo.url in self.unreachable:
                tried.append(f"{repo.url} ({self.unreachable[repo.url]})")
                continue
            try:
                r = self.request(repo, "HEAD", f"{repo.url}/{coord.path}")
            except NetworkError as e:
                self.unreachable[repo.url] = f"unreachable: {e.reason}"
                tried.append(f"{repo.url} ({self.unreachable[repo.url]})")
                continue
            r.close()
            if r.ok or r.status_code in (405, 501):  # no HEAD support: let the GET decide
                return repo
            note = f"HTTP {r.status_code}"
            if self.ctx.retry.retryable_status(r.status_code):  # still busy: budget spent
                busy = True
                note += f" after {self.ctx.retry.attempts} attempts"
            if r.status_code in (401, 403):
                auth_refused = True
                note += (f", credentials from {repo.credentials.source} refused"
                         if repo.credentials else f", no credentials for id {repo.id!r}")
            tried.append(f"{repo.url} ({note})")
        listing = "; ".join(tried)
        if auth_refused:
            raise AuthError(f"{coord}: not resolved, a repository wants credentials; "
                            f"tried {listing}")
        if len(self.unreachable) == len(self.repos):
            raise FetchError(f"{coord}: no repository could be reached; tried {listing}")
        if busy:
            raise FetchError(f"{coord}: not resolved, no repository could serve it; "
                             f"tried {listing}")
        raise FetchError(f"{coord}: not found in any repository; tried {listing}")

    def checksums(self, repo: Repository, coord: Coordinate) -> dict[str, tuple[str, str]]:
        """algorithm → (digest, checksum file URL), from the files the repository has."""
        found: dict[str, tuple[str, str]] = {}
        for algo in (*CHECKSUMS, "md5"):
            if algo == "md5" and found:
                break
            url, text = self.sidecar(repo, coord, algo)
            if text is None:
                continue
            digest = parse_checksum(text, algo)
            if digest is None:
                raise IntegrityError(f"{coord}: {url} holds no {algo} digest")
            found[algo] = (digest, url)
        return found

    def sidecar(self, repo: Repository, coord: Coordinate, ext: str) -> tuple[str, str | None]:
        """(URL, text) of the file beside the artifact (`.sha1`, `.asc`, …); None as
        the text when the repository has none (404, 410)."""
        url = f"{repo.url}/{coord.path}.{ext}"
        body = self.get_optional(repo, coord, url)
        return url, None if body is None else body.decode(errors="replace")

    def get_optional(self, repo: Repository, coord: Coordinate, url: str) -> bytes | None:
        """The body of a file the repository may lack: None on 404/410, a FetchError
        naming the artifact on any other failure."""
        return get_optional(lambda: self.request(repo, "GET", url), url, str(coord))

    def download(self, coord: Coordinate, pin: str | None) -> tuple[Path, Repository]:
        """A verified copy in the downloads cache (named by its sha256) and the
        repository it came from. `pin`: the lock's sha256, when there is one."""
        repo = self.locate(coord)
        return self._fetch(coord, repo, self.checksums(repo, coord), pin, None), repo

    def pin(self, coord: Coordinate, reuse: Path | None) -> LockEntry:
        """A lock entry for `coord`: downloaded (or `reuse`, a cached candidate, kept if
        the repository's checksums confirm it) and verified against the repository's
        checksum files; the strongest of them and the `.asc` signature recorded."""
        repo = self.locate(coord)
        sums = self.checksums(repo, coord)
        path = self._fetch(coord, repo, sums, None, reuse)
        strongest = next((a for a in (*CHECKSUMS, "md5") if a in sums), None)
        return LockEntry(path.name, repo.url, path.stat().st_size, strongest,
                         self.signature(repo, coord, path))

    def signature(self, repo: Repository, coord: Coordinate, path: Path) -> str:
        """`none`, `unverified[:issuer]`, or `verified:<fingerprint>` when
        `$OCIFORGE_MAVEN_KEYRING` names a keyring (a bad signature is an error)."""
        from .. import pgpsig

        _, text = self.sidecar(repo, coord, "asc")
        if text is None:
            return "none"
        keyring = os.environ.get(KEYRING_ENV)
        if not keyring:
            key = pgpsig.issuer(text)
            return f"unverified:{key}" if key else "unverified"
        asc = self.ctx.scratch_root / f"{os.getpid()}-{coord.filename}.asc"
        asc.parent.mkdir(parents=True, exist_ok=True)
        asc.write_text(text)
        try:
            return "verified:" + pgpsig.verify(path, asc, Path(keyring), str(coord))
        finally:
            asc.unlink(missing_ok=True)

    def _fetch(self, coord: Coordinate, repo: Repository, sums: dict[str, tuple[str, str]],
               pin: str | None, reuse: Path | None) -> Path:
        url = f"{repo.url}/{coord.path}"
        if not sums and pin is None:
            raise IntegrityError(f"{coord}: {repo.url} publishes no checksum file "
                                 f"(.sha1, .sha256, .sha512, .md5) for {coord.filename}; "
                                 "refusing an unverified first download")
        pins = {a: d for a, (d, _) in sums.items()} or {"sha256": pin or ""}
        if reuse is not None and sums:
            try:
                return verify_local(reuse, pins)
            except IntegrityError:
                pass  # the repository now serves other bytes: download them
        try:
            path = fetch(url, pins, session=self.ctx.session, policy=self.ctx.retry,
                         auth=self.auth(repo))
        except IntegrityError as e:
            if e.algorithm is None or e.expected is None or e.got is None:
                raise IntegrityError(f"{coord}: {e}") from None
            algo, stated, got = e.algorithm, e.expected, e.got
            if algo in sums:
                raise IntegrityError(f"{coord}: the file from {repo.url} does not match "
                                     f"{sums[algo][1]} ({algo} stated {stated}, "
                                     f"got {got})") from None
            raise self.lock_mismatch(coord, repo, stated, got) from None
        except FetchError as e:
            raise FetchError(f"{coord}: {e}", url=e.url, status=e.status) from None
        if pin is not None and path.name != pin:
            raise self.lock_mismatch(coord, repo, pin, path.name)
        return path

    def lock_mismatch(self, coord: Coordinate, repo: Repository, pinned: str,
                      got: str) -> IntegrityError:
        return IntegrityError(f"{coord}: the file from {repo.url} has sha256 {got}, but "
                              f"{self.source.lock_file} pins sha256 {pinned}; if the change "
                              "is expected, re-pin with `ociforge lock`")


def available_versions(source: MavenSource, ctx: BuildContext, coord: Coordinate
                       ) -> tuple[list[str], list[str]]:
    """(versions, repositories that list the artifact): the union of the
    `maven-metadata.xml` files of the source's repositories, read with the same
    repositories, mirrors and credentials as a download. A repository without the
    file (404) lists nothing; one that does not answer is a FetchError."""
    from xml.etree import ElementTree

    resolver = _Resolver(source, ctx)
    path = f"{coord.group.replace('.', '/')}/{coord.artifact}/maven-metadata.xml"
    versions: dict[str, None] = {}
    found: list[str] = []
    for repo in resolver.repos:
        url = f"{repo.url}/{path}"
        body = resolver.get_optional(repo, coord, url)
        if body is None:
            continue
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError as e:
            raise FetchError(f"{coord}: {url} is not XML ({e})", url=url) from None
        found.append(repo.url)
        versions.update((v.text.strip(), None) for v in root.iter()  # any namespace
                        if v.tag.rsplit("}", 1)[-1] == "version" and v.text and v.text.strip())
    return list(versions), found


# -- the source ----------------------------------------------------------------------


class MavenSource(SourceBase):
    kind: Literal["maven"]
    artifacts: list[Annotated[str, AfterValidator(_coordinate)]] = Field(min_length=1)
    lock_file: ProjectPath = Field(alias="lock")  # the lock file, relative to the project
    dest: str = "/opt/spark/jars"
    repositories: list[RepositorySpec] = []
    transitive: bool = False
    # platform -> the classifier its artifacts take there: a jar built per architecture
    # (rapids-4-spark's `cuda12-arm64`). Such a platform pins its own lock file
    # (`x.arm64.lock`); every other platform takes the artifacts as written.
    classifiers: dict[Annotated[str, Field(pattern=PLATFORM_PATTERN)],
                      Annotated[str, Field(pattern=rf"^{_PART}$")]] = {}

    @field_validator("transitive")
    @classmethod
    def _no_transitive(cls, v: bool) -> bool:
        if v:
            raise ValueError("transitive resolution is not supported: list every jar "
                             "(the Spark add-ons are shaded bundles)")
        return v

    @field_validator("dest")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"dest {v!r} must be an absolute path in the image")
        return v.rstrip("/") or "/"

    @model_validator(mode="after")
    def _distinct(self) -> MavenSource:
        seen: dict[str, str] = {}
        for c in self.coordinates():
            if c.filename in seen:
                raise ValueError(f"{seen[c.filename]} and {c} both become {c.filename}")
            seen[c.filename] = str(c)
        if self.classifiers and any(c.classifier for c in self.coordinates()):
            raise ValueError("with 'classifiers' (per platform) the artifacts name none "
                             "of their own")
        return self

    def for_platform(self, platform: str) -> MavenSource:
        """The artifacts with `platform`'s classifier, pinned in that platform's own lock
        file; itself on a platform without one (the same key and blob everywhere)."""
        classifier = self.classifiers.get(platform)
        if classifier is None:
            return self
        lock = self.lock_file if platform == DEFAULT_PLATFORM else \
            arch_lock_file(self.lock_file, debian_arch(platform))
        return self.model_copy(update={
            "artifacts": [str(replace(c, classifier=classifier)) for c in self.coordinates()],
            "lock_file": lock, "classifiers": {}})

    def coordinates(self) -> list[Coordinate]:
        return [Coordinate.parse(a) for a in self.artifacts]

    def lock_path(self, ctx: BuildContext) -> Path:
        return ctx.project_path(self.lock_file)

    def _resolved(self, ctx: BuildContext, fn: Callable[[_Resolver], T]) -> T:
        resolver = _Resolver(self, ctx)
        try:
            return fn(resolver)
        finally:
            resolver.close()

    def lock(self, ctx: BuildContext, update: bool = False) -> list[LockResult]:
        """Pin the coordinates the lock lacks (all of them with `update`, as `ociforge
        lock` does): the only step that needs the network. Written all or none."""
        path = self.lock_path(ctx)
        before = read_lock(path)
        todo = [c for c in self.coordinates() if update or str(c) not in before]
        if todo:
            def repin(resolver: _Resolver) -> dict[str, LockEntry]:
                out = {}
                for c in todo:
                    prev = before.get(str(c))
                    out[str(c)] = resolver.pin(c, cached({"sha256": prev.sha256})
                                               if prev else None)
                return out

            after = update_lock(path, self._resolved(ctx, repin))
            changed = any(before.get(str(c)) != after.get(str(c)) for c in todo)
        else:
            changed = False
        return [LockResult(self.lock_file, len(self.coordinates()), changed)]

    def check_lock(self, ctx: BuildContext) -> list[LockResult]:
        """The lock holds a pin for every coordinate (no network; never resolves)."""
        path = self.lock_path(ctx)
        if not path.exists():
            raise LockError(f"{self.lock_file} is missing")
        entries = read_lock(path)
        missing = [str(c) for c in self.coordinates() if str(c) not in entries]
        if missing:
            raise LockError(f"{self.lock_file} has no pin for {', '.join(missing)}")
        return [LockResult(self.lock_file, len(self.coordinates()), False)]

    def pins(self, ctx: BuildContext) -> dict[str, LockEntry]:
        """This source's lock entries, as the lock phase left them (never resolves)."""
        try:
            self.check_lock(ctx)
        except LockError as e:
            raise LockError(f"{e}: run `ociforge lock`") from None
        entries = read_lock(self.lock_path(ctx))
        return {str(c): entries[str(c)] for c in self.coordinates()}

    def resolve(self, ctx: BuildContext) -> str:
        """Re-pin every artifact from the repositories (`ociforge lock`): the way to
        accept a changed digest. Returns the lock lines of this source."""
        self.lock(ctx, update=True)
        entries = read_lock(self.lock_path(ctx))
        return render_lock({str(c): entries[str(c)] for c in self.coordinates()})

    def key_material(self, ctx: BuildContext) -> dict[str, Any]:
        # The repositories are not part of the key: the same pinned bytes from a
        # mirror are the same layer.
        pins = self.pins(ctx)
        return {"kind": "maven", "v": 1, "dest": self.dest,
                "artifacts": [[str(c), c.filename, pins[str(c)].sha256]
                              for c in self.coordinates()]}

    def populate(self, tree: Tree, ctx: BuildContext, workdir: Path) -> dict[str, Any]:
        pins = self.pins(ctx)
        resolvers: list[_Resolver] = []  # made on the first download, if any
        artifacts = []
        try:
            for c in self.coordinates():
                pin = pins[str(c)]
                path, repository = self._jar(ctx, c, pin, resolvers)
                tree.add_from_disk(path, f"{self.dest}/{c.filename}", mode=0o644)
                artifacts.append({"coordinates": str(c), "filename": c.filename,
                                  "sha256": pin.sha256, "repository": repository})
        finally:
            for resolver in resolvers:
                resolver.close()
        return {"lock": self.lock_file, "dest": self.dest, "artifacts": artifacts}

    def _jar(self, ctx: BuildContext, c: Coordinate, pin: LockEntry,
             resolvers: list[_Resolver]) -> tuple[Path, str]:
        """The jar, verified against the lock, and the repository it came from: the
        downloads cache when it holds a good copy, else the repositories."""
        came_from = [pin.repository]

        def download() -> Path:
            if not resolvers:
                resolvers.append(_Resolver(self, ctx))
            path, repo = resolvers[0].download(c, pin.sha256)
            came_from[0] = repo.url
            return path

        return obtain({"sha256": pin.sha256}, str(c), download), came_from[0]
