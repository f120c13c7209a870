"""Duplicate classes across jars: the same class shipped twice (for example the AWS
SDK v2 in both `software.amazon.awssdk:bundle` and `iceberg-aws-bundle`) loads from
whichever jar comes first on the classpath, so version clashes show up at run time,
far from their cause. This reads the jars' zip directories straight from the layers."""

from __future__ import annotations

import fnmatch
import shutil
import tempfile
import zipfile
from typing import IO

from .imagefs import Node
from .model import DuplicateClassCheck
from .report import CheckResult, failed, passed

KIND = "native"
SPOOL = 64 * 1024 * 1024


def _classes(member: IO[bytes], prefixes: tuple[str, ...]) -> set[str]:
    with tempfile.SpooledTemporaryFile(max_size=SPOOL) as tmp:
        shutil.copyfileobj(member, tmp, 1024 * 1024)
        tmp.seek(0)
        try:
            names = zipfile.ZipFile(tmp).namelist()
        except zipfile.BadZipFile:
            return set()
    return {n for n in names if n.endswith(".class") and not n.startswith("META-INF/")
            and n.startswith(prefixes)}


def _prefixes(spec: DuplicateClassCheck) -> tuple[str, ...]:
    return tuple(spec.packages or [""])


class JarIndex:
    """The classes of the jars the checks name, collected as `imagefs.load` streams the
    layers past `visit`: one pass over the image for all duplicate-class checks. Per
    jar path, the version in the uppermost layer that has it."""

    def __init__(self, specs: list[DuplicateClassCheck]) -> None:
        self.specs = specs
        self.found: dict[str, set[str]] = {}

    def visit(self, path: str, member: IO[bytes]) -> None:
        wanted = [s for s in self.specs if fnmatch.fnmatchcase(path, s.jars)]
        if wanted:
            self.found[path] = _classes(member, tuple(p for s in wanted
                                                      for p in _prefixes(s)))

    def check(self, image: str, fs: dict[str, Node], spec: DuplicateClassCheck
              ) -> CheckResult:
        name = f"no class twice in {spec.jars}" + (
            f" under {', '.join(spec.packages)}" if spec.packages else "")
        found = {path: {c for c in classes if c.startswith(_prefixes(spec))}
                 for path, classes in self.found.items()
                 if fnmatch.fnmatchcase(path, spec.jars)}
        return _verdict(image, name, fs, found)


def _verdict(image: str, name: str, fs: dict[str, Node], found: dict[str, set[str]]
             ) -> CheckResult:
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
