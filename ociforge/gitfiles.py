"""Which checkout files git vouches for: tracked, unmodified, stored byte for byte.

A fresh CI runner has a fresh checkout (new inodes, new mtimes), so the stat-keyed
digest cache of another runner is of no use to it; git's index is. `git diff-files`
compares each tracked file with its index entry (by stat, and by content where the
stat is racy), so a file it does not list holds exactly the bytes of the blob id the
index names, provided git converts nothing on checkout: no `core.autocrlf`, no
`text`/`eol`, `filter`, `ident` or `working-tree-encoding` attribute. Such a file's
sha256 can be taken from a table of blob id -> sha256 computed by another runner
(`ociforge plan --json`), because equal blob ids mean equal bytes. Anything git
cannot vouch for (no git, not a repository, modified, untracked, converted, a
symlink) is simply absent, and gets hashed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# Attributes that make checkout change bytes; `-text` (unset) is the one safe value set.
_CONVERTING = ("text", "eol", "filter", "ident", "working-tree-encoding")
_SAFE = (b"unspecified", b"unset")


def _git(top: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", "-C", str(top), *args], input=stdin, capture_output=True,
                          check=True, timeout=120).stdout


def clean_blobs(root: Path) -> dict[str, str]:
    """Absolute path -> git blob id of every regular file under `root` that git says
    is unmodified and unconverted; {} where git cannot tell."""
    try:
        top = Path(os.fsdecode(_git(root, "rev-parse", "--show-toplevel").strip()))
        autocrlf = subprocess.run(["git", "-C", str(top), "config", "--get", "core.autocrlf"],
                                  capture_output=True, text=True, timeout=60).stdout.strip()
        if autocrlf not in ("", "false"):
            return {}
        rel = os.path.relpath(os.path.realpath(root), os.path.realpath(top))
        spec = [] if rel == "." else ["--", rel]
        # (not --eol: it reads every file to tell its line endings)
        listed = _git(top, "ls-files", "-s", "-z", *spec).split(b"\0")
        modified = set(_git(top, "diff-files", "--name-only", "-z", *spec).split(b"\0"))
    except (OSError, subprocess.SubprocessError):
        return {}
    blobs: dict[bytes, str] = {}
    for entry in listed:
        head, _, path = entry.partition(b"\t")
        fields = head.split()
        if len(fields) != 3 or fields[0] not in (b"100644", b"100755") or fields[2] != b"0":
            continue
        if path not in modified:
            blobs[path] = fields[1].decode()
    if not blobs:
        return {}
    try:
        attrs = _git(top, "check-attr", "--stdin", "-z", *_CONVERTING,
                     stdin=b"\0".join(blobs) + b"\0").split(b"\0")
    except (OSError, subprocess.SubprocessError):
        return {}
    for i in range(0, len(attrs) - 2, 3):  # path, attribute, value
        if attrs[i + 2] not in _SAFE:
            blobs.pop(attrs[i], None)
    base = os.path.realpath(top)
    return {os.path.join(base, os.fsdecode(p)): b for p, b in blobs.items()}
