"""`debian`: a base root filesystem from Debian packages, built with mmdebstrap from
exactly the packages of its lock.

`ociforge lock` resolves the layer with apt itself: mmdebstrap runs against the
layer's suites (the release, `-updates` and `-security` by default), apt verifies the
`Release` signature chain with the keyring, and every installed package, essential
ones included, is pinned from the signed `Packages` indexes apt fetched (version,
suite, `.deb` filename and sha256; see debianlock.py). A build never resolves: it
fetches the locked `.deb`s by sha256 into the downloads cache (the mirror, else the
snapshot archive at the lock's date), makes a local repository of exactly them, and
runs mmdebstrap on it, so the layer's key is the lock and the same lock gives the same
root filesystem on any machine on any day. mmdebstrap with SOURCE_DATE_EPOCH is
reproducible except for the Java `cacerts` keystore (written with the current time in
each entry; ociforge rewrites it, see jks.py) and `/etc/apt/sources.list` (it names the
repository built from; ociforge writes Debian's own archives there).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from ..archives import import_archive
from ..digests import file_hexdigest
from ..errors import BuildError, LockError
from ..fetch import admit
from ..jks import pem_certificates, write_jks
from ..net.redact import redact, redact_text
from ..platforms import DEFAULT_PLATFORM, arch_lock_file, debian_arch
from ..spec import ProjectPath
from ..tartree import FILE, SYMLINK, Entry, Tree
from .archive import ArchiveCaps
from .base import BuildContext, LockResult, SourceBase, Spec
from .debianlock import DebianLock, Installed, paragraphs, pin_installed, read_lock, write_lock
from .debianrepo import (
    DEFAULT_SNAPSHOT_ARCHIVE,
    fetch_locked,
    serve_repository,
    snapshot_url,
    write_repository,
)

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
CACERTS = "etc/ssl/certs/java/cacerts"
DOC_EXCLUDES = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
]


class DebianUser(Spec):
    name: str = Field(pattern=r"^[a-z_][a-z0-9_-]*$")
    uid: int = Field(ge=1, le=65534)
    gid: int = Field(ge=1, le=65534)
    home: str | None = None
    shell: str = "/bin/bash"


class DebianSource(SourceBase, ArchiveCaps):
    kind: Literal["debian"]
    # Re-resolving gives other pins on another day: only `ociforge lock --update` does.
    moving: ClassVar[bool] = True
    lock_file: ProjectPath = Field(alias="lock")  # the lock file, relative to the project
    suite: str = "bookworm"
    updates: bool = True   # also <suite>-updates
    security: bool = True  # also <suite>-security, from the security archive
    variant: Literal["extract", "custom", "essential", "apt", "minbase", "required"] = "apt"
    packages: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+(=[\w.+:~-]+)?$")]] = []
    components: list[str] = ["main"]
    architecture: str = "amd64"
    # Where packages come from: not keyed (the lock pins the bytes). Environment:
    # $OCIFORGE_DEBIAN_MIRROR, $OCIFORGE_DEBIAN_SECURITY_MIRROR, $OCIFORGE_DEBIAN_SNAPSHOT.
    mirror: str | None = None
    security_mirror: str | None = None
    # Where a locked version the mirror has dropped is fetched from: a URL template
    # with {archive} (debian, debian-security) and {timestamp} (the lock's `resolved`).
    snapshot_archive: str | None = None
    # Resolve against the snapshot archive at this time instead of the mirror.
    snapshot: str | None = Field(None, pattern=r"^\d{8}T\d{6}Z$")
    # The keyring apt verifies the suites' Release files with ($OCIFORGE_DEBIAN_KEYRING).
    keyring: str | None = None
    # For an unsigned local repository (air-gapped mirrors without keys): no signature check.
    trusted: bool = False
    exclude_docs: bool = True
    # Clear setuid/setgid bits on files: a container under Pod Security Standards
    # `restricted` cannot use them (no privilege escalation), and scanners flag them.
    strip_setuid: bool = False
    users: list[DebianUser] = []

    # -- where from ------------------------------------------------------------------

    def suites(self) -> tuple[str, ...]:
        return (self.suite, *([f"{self.suite}-updates"] if self.updates else []),
                *([f"{self.suite}-security"] if self.security else []))

    def mirror_for(self, suite: str) -> str:
        security = suite.endswith("-security")
        if self.snapshot:
            return snapshot_url(self.snapshot_template(), suite, self.snapshot)
        if security:
            return self.security_mirror or os.environ.get("OCIFORGE_DEBIAN_SECURITY_MIRROR",
                                                          DEFAULT_SECURITY_MIRROR)
        return self.mirror or os.environ.get("OCIFORGE_DEBIAN_MIRROR", DEFAULT_MIRROR)

    def mirror_url(self) -> str:
        return self.mirror_for(self.suite)

    def snapshot_template(self) -> str:
        return self.snapshot_archive or os.environ.get("OCIFORGE_DEBIAN_SNAPSHOT",
                                                       DEFAULT_SNAPSHOT_ARCHIVE)

    def keyring_path(self) -> str:
        return self.keyring or os.environ.get("OCIFORGE_DEBIAN_KEYRING", DEFAULT_KEYRING)

    def source_lines(self) -> list[str]:
        if self.trusted:
            opts = "[trusted=yes] "
        else:
            keyring = self.keyring_path()
            if not Path(keyring).is_file():
                raise BuildError(f"the Debian keyring {keyring} does not exist (apt needs it "
                                 "to verify the suites' Release signatures): apt-get install "
                                 "debian-archive-keyring, or set keyring / "
                                 "$OCIFORGE_DEBIAN_KEYRING")
            opts = f"[signed-by={keyring}] "
        return [f"deb {opts}{self.mirror_for(s)} {s} {' '.join(self.components)}"
                for s in self.suites()]

    # -- mmdebstrap ------------------------------------------------------------------

    def _options(self, *, users: bool) -> list[str]:
        cmd = [f"--variant={self.variant}", f"--architectures={self.architecture}"]
        if self.packages:
            cmd.append("--include=" + ",".join(self.packages))
        if self.exclude_docs:
            cmd += [f"--dpkgopt={o}" for o in DOC_EXCLUDES]
            # openjdk's post-install script needs this directory even without man pages.
            cmd.append('--essential-hook=mkdir -p "$1/usr/share/man/man1"')
        for u in self.users if users else []:
            home = u.home or f"/home/{u.name}"
            cmd.append(f'--customize-hook=chroot "$1" groupadd -g {u.gid} {u.name}')
            cmd.append(f'--customize-hook=chroot "$1" useradd -u {u.uid} -g {u.gid} -m '
                       f'-d {home} -s {u.shell} {u.name}')
        return cmd

    def resolve_command(self, out: Path) -> list[str]:
        """apt resolves against the real suites; the hooks copy out what it installed,
        the indexes it verified and the `.deb`s it fetched (nothing else is kept)."""
        # The extract variant runs no customize hooks, and installs nothing with dpkg.
        hook = "--extract-hook" if self.variant == "extract" else "--customize-hook"
        cmd = ["mmdebstrap", "--mode=auto", "--format=null", *self._options(users=False),
               f"{hook}=sync-out /var/lib/apt/lists {out}/lists",
               f"{hook}=sync-out /var/cache/apt/archives {out}/debs"]
        if self.variant != "extract":
            cmd.append(f"--customize-hook=copy-out /var/lib/dpkg/status {out}")
        if self.snapshot:
            cmd.append("--aptopt=Acquire::Check-Valid-Until \"false\"")
        return [*cmd, self.suite, "/dev/null", *self.source_lines()]

    def command(self, output: str, repo_line: str) -> list[str]:
        """The build: mmdebstrap from the local repository of the locked `.deb`s."""
        return ["mmdebstrap", "--mode=auto", "--format=tar", "--skip=output/dev",
                "--skip=output/mknod", *self._options(users=True), self.suite, output,
                repo_line]

    def _run(self, cmd: list[str], sde: int) -> None:
        if shutil.which("mmdebstrap") is None:
            raise BuildError("the debian source needs mmdebstrap: apt-get install mmdebstrap "
                             "(as a non-root user also uidmap, with subuid/subgid ranges)")
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(sde), "LC_ALL": "C.UTF-8"}
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, check=False)
        if proc.returncode != 0:
            raise BuildError(self._explain(proc.stdout))

    def for_platform(self, platform: str) -> DebianSource:
        """The root filesystem for `platform`'s Debian architecture, from its own lock
        (`x.lock` for linux/amd64, `x.arm64.lock` for linux/arm64). Maintainer scripts of a
        foreign architecture run under qemu-user-static through binfmt_misc."""
        arch = debian_arch(platform)
        if arch == self.architecture:
            return self
        lock = self.lock_file if platform == DEFAULT_PLATFORM else \
            arch_lock_file(self.lock_file, arch)
        return self.model_copy(update={"architecture": arch, "lock_file": lock})

    # -- lock ------------------------------------------------------------------------

    def lock_path(self, ctx: BuildContext) -> Path:
        return ctx.project_path(self.lock_file)

    def _inconsistency(self, lock: DebianLock) -> str | None:
        asked = {"suites": " ".join(self.suites()), "architecture": self.architecture,
                 "components": " ".join(self.components), "variant": self.variant,
                 "include": " ".join(sorted(self.packages))}
        has = {"suites": " ".join(lock.suites), "architecture": lock.architecture,
               "components": " ".join(lock.components), "variant": lock.variant,
               "include": " ".join(sorted(lock.include))}
        for field, want in asked.items():
            if has[field] != want:
                return f"was resolved for {field} {has[field]!r}, the layer asks for {want!r}"
        pinned = lock.by_name()
        for spec in self.packages:
            name, _, version = spec.partition("=")
            if name not in pinned or (version and pinned[name].version != version):
                return f"does not pin {spec}"
        return None

    def current_lock(self, ctx: BuildContext) -> DebianLock:
        """The lock, read and checked against the layer definition (no network)."""
        try:
            lock = read_lock(self.lock_path(ctx))
        except LockError as e:
            raise LockError(str(e).replace(str(self.lock_path(ctx)), self.lock_file)) from None
        problem = self._inconsistency(lock)
        if problem:
            raise LockError(f"{self.lock_file} {problem}")
        return lock

    def check_lock(self, ctx: BuildContext) -> list[LockResult]:
        return [LockResult(self.lock_file, len(self.current_lock(ctx).packages), False)]

    def lock(self, ctx: BuildContext, update: bool = False) -> list[LockResult]:
        """Resolve when the lock is missing or no longer matches the layer (always with
        `update`); the file is rewritten only when a pin or the definition changed."""
        try:
            current: DebianLock | None = self.current_lock(ctx)
        except LockError:
            current = None
        if current is not None and not update:
            return [LockResult(self.lock_file, len(current.packages), False)]
        new = self.resolve(ctx)
        changed = current is None or current.packages != new.packages
        if changed:
            write_lock(self.lock_path(ctx), new)
        return [LockResult(self.lock_file, len(new.packages), changed)]

    def resolve(self, ctx: BuildContext) -> DebianLock:
        """Run apt (through mmdebstrap) against the suites and pin what it installed;
        the `.deb`s it fetched (and verified) go into the downloads cache."""
        ctx.scratch_root.mkdir(parents=True, exist_ok=True)
        resolved = self.snapshot or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        with tempfile.TemporaryDirectory(dir=ctx.scratch_root, prefix="debian-lock-") as tmp:
            out = Path(tmp)
            self._run(self.resolve_command(out), ctx.sde)
            installed = _installed(out)
            if not installed:
                raise BuildError(f"{self.lock_file}: apt installed nothing for "
                                 f"{', '.join(self.suites())}")
            try:
                packages = pin_installed(installed, _indexes(out / "lists"), self.suites())
            except LockError as e:
                raise BuildError(f"{self.lock_file}: {e}") from None
            by_sha = {p.sha256: p for p in packages}
            for deb in sorted((out / "debs").glob("*.deb")):
                sha = file_hexdigest(deb)
                if sha in by_sha:
                    admit(deb, {"sha256": sha})
        return DebianLock(self.suites(), self.architecture, tuple(self.components),
                          self.variant, tuple(self.packages), resolved, tuple(packages))

    # -- layer -----------------------------------------------------------------------

    def key_material(self, ctx: BuildContext) -> dict[str, Any]:
        # The lock is the key: the exact packages, not the list asked for nor the
        # mirror (where bytes come from, not what they are); then how they are laid out.
        try:
            lock = self.current_lock(ctx)
        except LockError as e:
            raise LockError(f"{e}: run `ociforge lock`") from None
        options = self.model_dump(include={"suite", "variant", "architecture", "components",
                                           "exclude_docs", "strip_setuid", "users"})
        # The suites name /etc/apt/sources.list's lines.
        return {"kind": "debian", "v": 2, **options, "suites": list(self.suites()),
                "packages": [p.pin() for p in lock.packages]}

    def populate(self, tree: Tree, ctx: BuildContext, workdir: Path) -> dict[str, Any]:
        lock = self.current_lock(ctx)
        debs = fetch_locked(lock, ctx, self.mirror_for, self.snapshot_template())
        repo = workdir / "repo"
        write_repository(repo, debs)
        out = workdir / "rootfs.tar"
        with serve_repository(repo) as line:
            self._run(self.command(str(out), line), ctx.sde)
        shutil.rmtree(repo)
        import_archive(out, tree, workdir / "rootfs", maps=[], sde=ctx.sde,
                       preserve_owners=True, limits=self.limits())
        out.unlink()
        _verify(dpkg_packages(tree), lock, self.lock_file)
        write_sources_list(tree, self.suites(), self.components)
        stripped = strip_setuid_bits(tree) if self.strip_setuid else []
        rewritten = rewrite_java_cacerts(tree, workdir / "cacerts", ctx.sde)
        return {"suite": self.suite, "suites": list(self.suites()),
                "mirror": redact(self.mirror_url()), "snapshot": self.snapshot,
                "lock": self.lock_file, "resolved": lock.resolved,
                "java_cacerts_rewritten": rewritten, "setuid_stripped": stripped,
                # From the lock (the dpkg status file holds the same, checked above).
                "packages": [{"name": p.name, "version": p.version,
                              "architecture": p.architecture, "source": p.source,
                              "suite": p.suite} for p in lock.packages]}

    def _explain(self, output: str) -> str:
        output = redact_text(output)  # apt may print the mirror with its credentials
        unsigned = re.search(r"NO_PUBKEY \S+|BADSIG \S+|is not signed", output)
        if unsigned and not self.trusted:
            return (f"apt could not verify the Release signature of {', '.join(self.suites())}"
                    f" on {redact(self.mirror_url())} with the keyring {self.keyring_path()} "
                    f"({unsigned.group(0)})")
        missing = re.findall(r"Unable to locate package (\S+)", output)
        if missing:
            return (f"Debian package(s) {', '.join(sorted(set(missing)))} not found in "
                    f"{', '.join(self.suites())} ({', '.join(self.components)}) on "
                    f"{redact(self.mirror_url())}")
        tail = " | ".join(line for line in output.strip().splitlines()[-4:] if line.strip())
        return f"mmdebstrap failed for {self.suite}: {tail}"


def _installed(out: Path) -> list[Installed]:
    """What apt installed (the dpkg status file); for the `extract` and `custom`
    variants, which install nothing through dpkg, the `.deb`s it fetched."""
    status = out / "status"
    found = parse_dpkg_status(status.read_text()) if status.exists() else []
    if found:
        return [Installed(p["name"], p["version"], p["architecture"]) for p in found]
    debs = []
    for deb in sorted((out / "debs").glob("*.deb")):
        name, version, arch = deb.name[:-4].split("_")
        debs.append(Installed(name, version.replace("%3a", ":"), arch))
    return debs


def _indexes(lists: Path) -> dict[str, list[Path]]:
    """suite → the Packages files apt verified (apt's list names: …_dists_SUITE_…)."""
    out: dict[str, list[Path]] = {}
    for f in sorted(lists.glob("*_Packages")):
        m = re.search(r"_dists_([^_]+)_", f.name)
        if m:
            out.setdefault(m.group(1), []).append(f)
    return out


def _verify(installed: list[dict[str, str]], lock: DebianLock, lock_file: str) -> None:
    """The built root filesystem holds exactly the locked packages (when dpkg installed
    them: the `extract` variant leaves no status file)."""
    if not installed:
        return
    got = {(p["name"], p["version"], p["architecture"]) for p in installed}
    want = {(p.name, p.version, p.architecture) for p in lock.packages}
    if got != want:
        extra = sorted(f"{n}={v}" for n, v, _ in got - want)
        lacking = sorted(f"{n}={v}" for n, v, _ in want - got)
        raise BuildError(f"the root filesystem does not match {lock_file}: installed but "
                         f"not locked: {', '.join(extra) or 'none'}; locked but not "
                         f"installed: {', '.join(lacking) or 'none'}")


def write_sources_list(tree: Tree, suites: tuple[str, ...], components: list[str]) -> None:
    """apt's sources in the image: Debian's own archives for the layer's suites (the
    build used a local repository; naming it, or the mirror, would make the bytes
    depend on where they were fetched from)."""
    lines = [f"deb {DEFAULT_SECURITY_MIRROR if s.endswith('-security') else DEFAULT_MIRROR} "
             f"{s} {' '.join(components)}\n" for s in suites]
    data = "".join(lines).encode()
    old = tree.entries.get("etc/apt/sources.list")
    mode, mtime = (old.mode, old.mtime) if old is not None else (0o644, 0)
    tree.add(Entry("etc/apt/sources.list", FILE, mode, 0, 0, mtime, src=data, size=len(data)))


def strip_setuid_bits(tree: Tree) -> list[str]:
    """Clear setuid/setgid on regular files; returns the paths changed."""
    changed = []
    for path, entry in tree.entries.items():
        if entry.kind == FILE and entry.mode & 0o6000:
            entry.mode &= ~0o6000
            changed.append("/" + path)
    return sorted(changed)


def _read(entry: Entry) -> bytes:
    if isinstance(entry.src, bytes):
        return entry.src
    assert entry.src is not None
    return entry.src.read_bytes()


def _resolve(tree: Tree, path: str, depth: int = 0) -> Entry | None:
    entry = tree.entries.get(path)
    if entry is None or depth > 16:
        return None
    if entry.kind == SYMLINK:
        target = entry.linkname
        parent = PurePosixPath(path).parent
        full = target.lstrip("/") if target.startswith("/") else str(parent / target)
        return _resolve(tree, os.path.normpath(full), depth + 1)
    return entry


def rewrite_java_cacerts(tree: Tree, workdir: Any, sde: int) -> bool:
    """Replace Debian's time-stamped cacerts by a deterministic keystore of the same
    certificates (aliases `debian:<file>.pem`, as ca-certificates-java names them)."""
    entry = tree.entries.get(CACERTS)
    if entry is None or entry.kind != FILE:
        return False
    certs: dict[str, bytes] = {}
    for path in sorted(tree.entries):
        if path.startswith("etc/ssl/certs/") and path.endswith(".pem") and path.count("/") == 3:
            target = _resolve(tree, path)
            if target is not None and target.kind == FILE:
                ders = pem_certificates(_read(target))
                if ders:
                    certs["debian:" + PurePosixPath(path).name] = ders[0]
    if not certs:
        raise BuildError(f"/{CACERTS} exists but no certificates were found to rebuild it")
    data = write_jks(certs, sde)
    tree.add(Entry(CACERTS, FILE, entry.mode, entry.uid, entry.gid, entry.mtime, src=data,
                   size=len(data)))
    return True


def dpkg_packages(tree: Tree) -> list[dict[str, str]]:
    """Installed packages from /var/lib/dpkg/status: name, version, arch, source."""
    entry = tree.entries.get("var/lib/dpkg/status")
    if entry is None:
        return []
    return parse_dpkg_status(_read(entry).decode("utf-8", "replace"))


def parse_dpkg_status(text: str) -> list[dict[str, str]]:
    """The installed packages of a dpkg status file, sorted by name (the SBOM reads a
    base layer's status file with this too, when its record lacks a field)."""
    out = []
    for fields in paragraphs(text):
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            source = fields.get("Source", fields["Package"]).split(" ")[0]
            out.append({"name": fields["Package"], "version": fields.get("Version", ""),
                        "architecture": fields.get("Architecture", ""), "source": source})
    return sorted(out, key=lambda p: p["name"])
