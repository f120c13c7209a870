"""The `pypi` source's lock file: one line per distribution file, written by `ociforge lock`.

    package==version filename sha256:<hex>

One file may serve many layers (`layers/locks/spark-dist.lock` holds every Spark
distribution of the matrix), so adding a Spark version is a line in the recipe and
`ociforge lock`, which appends the file's sha256 as the index states it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import RecipeError
from ..store import atomic_write

LOCK_HEADER = ("# ociforge pypi lock: package==version, distribution file, its sha256 as the\n"
               "# package index states it. Written by `ociforge lock`; commit it.")
_LINE = re.compile(r"^(\S+)==(\S+)\s+(\S+)\s+sha256:([0-9a-f]{64})$")


@dataclass(frozen=True)
class FilePin:
    package: str
    version: str
    sha256: str


def read_lock(path: Path) -> dict[str, FilePin]:
    """filename → pin; an absent file is an empty lock."""
    if not path.exists():
        return {}
    out: dict[str, FilePin] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise RecipeError(f"{path}:{n}: not a lock line (`package==version filename "
                              "sha256:<hex>`)")
        out[m.group(3)] = FilePin(m.group(1), m.group(2), m.group(4))
    return out


def write_lock(path: Path, pins: dict[str, FilePin]) -> None:
    lines = [LOCK_HEADER] + [f"{p.package}=={p.version} {name} sha256:{p.sha256}"
                             for name, p in sorted(pins.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, ("\n".join(lines) + "\n").encode())
