"""Checks read straight from tar headers: what the tar driver of
container-structure-test cannot see (ownership) and the parts of Pod Security
Standards `restricted` an image can satisfy by itself."""

from __future__ import annotations

import re
import stat
from typing import Any

from .imagefs import Node
from .model import CheckSet
from .report import CheckResult, failed, passed

KIND = "native"
# Names that are secrets whatever they hold; other files are judged by content
# (public certificates named *.pem are fine, a private key is not).
SECRET_NAMES = re.compile(
    r"(^|/)(id_rsa|id_dsa|id_ecdsa|id_ed25519|\.netrc|\.pgpass|\.git-credentials|"
    r"\.aws/credentials|\.docker/config\.json|[^/]+\.(p12|pfx))$")
SECRET_CONTENT = re.compile(
    rb"-----BEGIN (RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----|"
    rb"aws_secret_access_key\s*[=:]\s*[\"']?[A-Za-z0-9/+]{40}|\bAKIA[0-9A-Z]{16}\b")
# Trust stores and public certificates are expected; they are not secrets.
SECRET_ALLOWED = re.compile(r"^/(etc/ssl/|usr/share/ca-certificates/|etc/ca-certificates/|"
                            r"usr/lib/jvm/.*/lib/security/|etc/java-\d+-openjdk/security/)")
def _owner(node: Node) -> str:
    return f"{node.uid}:{node.gid}"


def check_files(image: str, fs: dict[str, Node], cs: CheckSet) -> list[CheckResult]:
    out = []
    for fc in cs.files:
        name = f"file {fc.path}"
        node = fs.get(fc.path.rstrip("/") or "/")
        if not fc.exists:
            out.append(failed(image, KIND, name, f"{fc.path} exists but must not")
                       if node else passed(image, KIND, name))
            continue
        if node is None:
            out.append(failed(image, KIND, name, f"{fc.path} is missing"))
            continue
        problems = []
        if fc.mode is not None and stat.S_IMODE(node.mode) != fc.mode:
            problems.append(f"mode {stat.S_IMODE(node.mode):04o}, expected {fc.mode:04o}")
        if fc.owner is not None and (node.uid, node.gid) != fc.owner:
            problems.append(f"owner {_owner(node)}, expected {fc.owner[0]}:{fc.owner[1]}")
        if fc.executable is not None and bool(node.mode & 0o111) != fc.executable:
            problems.append("not executable" if fc.executable else "executable")
        if fc.contains and node.content is not None:
            text = node.content.decode("utf-8", "replace")
            problems += [f"content does not match {p!r}" for p in fc.contains
                         if not re.search(p, text, re.M)]
        out.append(failed(image, KIND, name, f"{fc.path}: " + "; ".join(problems))
                   if problems else passed(image, KIND, name))
    return out


def check_user(image: str, config: dict[str, Any]) -> CheckResult:
    user = str(config.get("config", {}).get("User", "") or "")
    uid, _, gid = user.partition(":")
    if not uid:
        return failed(image, KIND, "user non-root", "no USER set: the image runs as root")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        return failed(image, KIND, "user non-root",
                      f"USER {user!r} is not numeric (runAsNonRoot cannot verify names)")
    if int(uid) == 0:
        return failed(image, KIND, "user non-root", f"USER {user!r} is root")
    return passed(image, KIND, "user non-root", f"USER {user}")


def check_setuid(image: str, fs: dict[str, Node]) -> CheckResult:
    bad = sorted(n.path for n in fs.values() if n.kind == "file" and n.mode & 0o6000)
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        return failed(image, KIND, "no setuid/setgid files",
                      "setuid/setgid: " + ", ".join(bad[:5]) + more)
    return passed(image, KIND, "no setuid/setgid files")


def check_world_writable(image: str, fs: dict[str, Node], allowed: list[str]) -> CheckResult:
    bad = []
    for n in fs.values():
        if n.kind in ("symlink", "hardlink") or not n.mode & 0o002:
            continue
        sticky_tmp = n.kind == "dir" and n.mode & stat.S_ISVTX and n.path in allowed
        if not sticky_tmp:
            bad.append(n.path)
    if bad:
        return failed(image, KIND, "no world-writable paths",
                      "world-writable: " + ", ".join(sorted(bad)[:5]))
    return passed(image, KIND, "no world-writable paths")


def check_secrets(image: str, fs: dict[str, Node]) -> CheckResult:
    bad = []
    for n in fs.values():
        if n.kind != "file" or SECRET_ALLOWED.match(n.path):
            continue
        if SECRET_NAMES.search(n.path) or n.secret:
            bad.append(n.path)
    if bad:
        return failed(image, KIND, "no secrets", "secret-looking files: " +
                      ", ".join(sorted(bad)[:5]))
    return passed(image, KIND, "no secrets")


_DIST_INFO = re.compile(r"^(?P<dir>.*)/(?P<name>[^/]+?)-(?P<version>[^-/]+)\.dist-info$")


def check_python_distributions(image: str, fs: dict[str, Node]) -> CheckResult:
    """One version per Python distribution in each site directory: layers stacked
    from separately resolved pip sets could otherwise leave two (and Python imports
    whichever files were written last, while metadata claims both)."""
    seen: dict[tuple[str, str], list[str]] = {}
    for n in fs.values():
        m = _DIST_INFO.match(n.path) if n.kind == "dir" else None
        if m:
            key = (m.group("dir"), re.sub(r"[-_.]+", "-", m.group("name")).lower())
            seen.setdefault(key, []).append(m.group("version"))
    dups = {k: sorted(v) for k, v in seen.items() if len(v) > 1}
    name = "one version per Python distribution"
    if dups:
        return failed(image, KIND, name, "; ".join(
            f"{pkg} {' and '.join(vs)} in {d}" for (d, pkg), vs in sorted(dups.items())))
    return passed(image, KIND, name)


def check_writable(image: str, fs: dict[str, Node], cs: CheckSet) -> list[CheckResult]:
    out = []
    for path in cs.writable:
        name = f"writable {path}"
        node = fs.get(path.rstrip("/"))
        if node is None or node.kind != "dir":
            out.append(failed(image, KIND, name, f"{path} is not a directory in the image"))
        elif path in cs.world_writable_allowed and node.mode & 0o1002 == 0o1002:
            out.append(passed(image, KIND, name, "sticky, world-writable"))
        elif (node.uid, node.gid) != cs.writable_owner or not node.mode & 0o200:
            out.append(failed(image, KIND, name, f"{path} is {_owner(node)} "
                              f"{stat.S_IMODE(node.mode):04o}, expected owner "
                              f"{cs.writable_owner[0]}:{cs.writable_owner[1]} and writable"))
        else:
            out.append(passed(image, KIND, name))
    return out


def run(image: str, fs: dict[str, Node], config: dict[str, Any], sets: list[CheckSet]
        ) -> list[CheckResult]:
    """Each set's own file and writable-path checks, then the image-wide ones once
    (on when any matching set asks for them)."""
    out: list[CheckResult] = []
    for cs in sets:
        out += check_files(image, fs, cs)
        out += check_writable(image, fs, cs)
    if any(cs.non_root for cs in sets):
        out.append(check_user(image, config))
    if any(cs.no_setuid for cs in sets):
        out.append(check_setuid(image, fs))
    allowed = sorted({p for cs in sets for p in cs.world_writable_allowed})
    out.append(check_world_writable(image, fs, allowed))
    if any(cs.no_secrets for cs in sets):
        out.append(check_secrets(image, fs))
    out.append(check_python_distributions(image, fs))
    return out

