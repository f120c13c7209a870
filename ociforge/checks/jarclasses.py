"""Duplicate classes across jars: the same class shipped twice (for example the AWS
SDK v2 in both `software.amazon.awssdk:bundle` and `iceberg-aws-bundle`) loads from
whichever jar comes first on the classpath, so version clashes show up at run time,
far from their cause. This reads the jars' zip directories straight from the layers."""

from __future__ import annotations

import fnmatch
import shutil
import tempfile
import zipfile
from typing import Any

from ..image import StoredImage
from . import imagefs
from .imagefs import Node
from .model import DuplicateClassCheck
from .report import CheckResult, failed, passed

KIND = "native"
SPOOL = 64 * 1024 * 1024


def _classes(member: Any, prefixes: list[str]) -> set[str]:
    with tempfile.SpooledTemporaryFile(max_size=SPOOL) as tmp:
        shutil.copyfileobj(member, tmp, 1024 * 1024)
        tmp.seek(0)
        try:
            names = zipfile.ZipFile(tmp).namelist()
        except zipfile.BadZipFile:
            return set()
    return {n for n in names if n.endswith(".class") and not n.startswith("META-INF/")
            and n.startswith(tuple(prefixes))}


def jar_classes(image: StoredImage, pattern: str, prefixes: list[str]) -> dict[str, set[str]]:
    """jar path -> its classes under `prefixes`, for jars matching `pattern` (the
    version of each path in the uppermost layer that has it)."""
    out: dict[str, set[str]] = {}
    for tar, ti, path in imagefs.members(image):
        if ti.isreg() and fnmatch.fnmatchcase(path, pattern):
            f = tar.extractfile(ti)
            out[path] = _classes(f, prefixes) if f else set()
    return out


def check(stored: StoredImage, fs: dict[str, Node], spec: DuplicateClassCheck) -> CheckResult:
    image = stored.name
    name = f"no class twice in {spec.jars}" + (
        f" under {', '.join(spec.packages)}" if spec.packages else "")
    found = jar_classes(stored, spec.jars, spec.packages or [""])
    owners: dict[str, list[str]] = {}
    for path, classes in sorted(found.items()):
        if path in fs:  # deleted by a later layer's whiteout otherwise
            for cls in classes:
                owners.setdefault(cls, []).append(path.rsplit("/", 1)[-1])
    dups = {c: jars for c, jars in owners.items() if len(jars) > 1}
    if not dups:
        return passed(image, KIND, name)
    pairs: dict[tuple[str, ...], int] = {}
    for jars in dups.values():
        pairs[tuple(jars)] = pairs.get(tuple(jars), 0) + 1
    detail = "; ".join(f"{n} classes in {' and '.join(j)}" for j, n in sorted(pairs.items()))
    example = sorted(dups)[0].removesuffix(".class").replace("/", ".")
    return failed(image, KIND, name, f"{len(dups)} duplicate classes: {detail} "
                                     f"(e.g. {example})")
