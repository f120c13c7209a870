"""`debian`: a base root filesystem from Debian packages, built with mmdebstrap.

mmdebstrap with SOURCE_DATE_EPOCH is reproducible except for the Java `cacerts`
keystore, which ca-certificates-java writes with the current time in each entry;
ociforge rewrites it deterministically (see jks.py). Without a `snapshot` date
the same recipe resolves to whatever the mirror serves on the day it is first
built; the layer is then cached by its definition, and the exact package
versions are recorded in its provenance (from the dpkg status file).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import Field

from ..archives import import_archive
from ..errors import BuildError
from ..jks import pem_certificates, write_jks
from ..net.redact import redact, redact_text
from ..tartree import FILE, SYMLINK, Entry, Tree
from .archive import ArchiveCaps
from .base import BuildContext, SourceBase, Spec

DEFAULT_MIRROR = "http://deb.debian.org/debian"
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
    suite: str = "bookworm"
    variant: Literal["extract", "custom", "essential", "apt", "minbase", "required"] = "apt"
    packages: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+(=[\w.+:~-]+)?$")]] = []
    components: list[str] = ["main"]
    architecture: str = "amd64"
    mirror: str | None = None
    snapshot: str | None = Field(None, pattern=r"^\d{8}T\d{6}Z$")
    # For an unsigned local repository (tests, air-gapped mirrors without keys).
    trusted: bool = False
    exclude_docs: bool = True
    # Clear setuid/setgid bits on files: a container under Pod Security Standards
    # `restricted` cannot use them (no privilege escalation), and scanners flag them.
    strip_setuid: bool = False
    users: list[DebianUser] = []

    def key_material(self, ctx: BuildContext) -> dict[str, Any]:
        # The mirror URL is where bytes come from, not what they are: not keyed. Fields
        # left at their defaults are not keyed either, so adding an optional field does
        # not invalidate every cached base (changing a default bumps the layer format).
        data = self.model_dump(exclude={"mirror", "kind", "max_size", "max_members"},
                               exclude_defaults=True)
        data["packages"] = sorted(self.packages)
        return {"kind": "debian", **data}

    def mirror_url(self) -> str:
        if self.snapshot:
            return f"https://snapshot.debian.org/archive/debian/{self.snapshot}/"
        return self.mirror or os.environ.get("OCIFORGE_DEBIAN_MIRROR", DEFAULT_MIRROR)

    def command(self, output: str) -> list[str]:
        cmd = ["mmdebstrap", "--mode=auto", f"--variant={self.variant}", "--format=tar",
               f"--architectures={self.architecture}", f"--components={','.join(self.components)}",
               "--skip=output/dev", "--skip=output/mknod"]
        if self.packages:
            cmd.append("--include=" + ",".join(self.packages))
        if self.exclude_docs:
            cmd += [f"--dpkgopt={o}" for o in DOC_EXCLUDES]
            # openjdk's post-install script needs this directory even without man pages.
            cmd.append('--essential-hook=mkdir -p "$1/usr/share/man/man1"')
        for u in self.users:
            home = u.home or f"/home/{u.name}"
            cmd.append(f'--customize-hook=chroot "$1" groupadd -g {u.gid} {u.name}')
            cmd.append(f'--customize-hook=chroot "$1" useradd -u {u.uid} -g {u.gid} -m '
                       f'-d {home} -s {u.shell} {u.name}')
        if self.snapshot:
            cmd.append("--aptopt=Acquire::Check-Valid-Until \"false\"")
        mirror = self.mirror_url()
        if self.trusted:
            mirror = f"deb [trusted=yes] {mirror} {self.suite} {' '.join(self.components)}"
        cmd += [self.suite, output, mirror]
        return cmd

    def populate(self, tree: Tree, ctx: BuildContext, workdir: Path) -> dict[str, Any]:
        if shutil.which("mmdebstrap") is None:
            raise BuildError("the debian source needs mmdebstrap: apt-get install mmdebstrap "
                             "(as a non-root user also uidmap, with subuid/subgid ranges)")
        out = workdir / "rootfs.tar"
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(ctx.sde), "LC_ALL": "C.UTF-8"}
        proc = subprocess.run(self.command(str(out)), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False)
        if proc.returncode != 0:
            raise BuildError(self._explain(proc.stdout))
        import_archive(out, tree, workdir / "rootfs", maps=[], sde=ctx.sde,
                       preserve_owners=True, limits=self.limits())
        out.unlink()
        stripped = strip_setuid_bits(tree) if self.strip_setuid else []
        rewritten = rewrite_java_cacerts(tree, workdir / "cacerts", ctx.sde)
        return {"suite": self.suite, "mirror": redact(self.mirror_url()),
                "snapshot": self.snapshot,
                "java_cacerts_rewritten": rewritten, "setuid_stripped": stripped,
                "packages": dpkg_packages(tree)}

    def _explain(self, output: str) -> str:
        output = redact_text(output)  # apt may print the mirror with its credentials
        missing = re.findall(r"Unable to locate package (\S+)", output)
        if missing:
            return (f"Debian package(s) {', '.join(sorted(set(missing)))} not found in "
                    f"{self.suite} ({', '.join(self.components)}) on "
                    f"{redact(self.mirror_url())}")
        tail = " | ".join(line for line in output.strip().splitlines()[-4:] if line.strip())
        return f"mmdebstrap failed for {self.suite}: {tail}"


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
    for para in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in para.splitlines():
            if line and not line[0].isspace() and ":" in line:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            source = fields.get("Source", fields["Package"]).split(" ")[0]
            out.append({"name": fields["Package"], "version": fields.get("Version", ""),
                        "architecture": fields.get("Architecture", ""), "source": source})
    return sorted(out, key=lambda p: p["name"])
