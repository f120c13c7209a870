"""Duplicate classes across jars: the same class shipped twice (for example the AWS
SDK v2 in both `software.amazon.awssdk:bundle` and `iceberg-aws-bundle`) loads from
whichever jar comes first on the classpath, so version clashes show up at run time,
far from their cause. This reads the jars' zip directories straight from the layers
(see layerindex: each layer's jars are listed once and cached)."""

from __future__ import annotations

import fnmatch

from ..image import StoredImage
from .imagefs import Node
from .layerindex import LayerIndex
from .model import DuplicateClassCheck
from .report import CheckResult, failed, passed

KIND = "native"


def _prefixes(spec: DuplicateClassCheck) -> tuple[str, ...]:
    return tuple(spec.packages or [""])


def check(image: StoredImage, index: LayerIndex, fs: dict[str, Node],
          spec: DuplicateClassCheck) -> CheckResult:
    """Per jar path of the final filesystem, the classes of the version in the
    uppermost layer that has it (each layer's jars listed once, cached)."""
    name = f"no class twice in {spec.jars}" + (
        f" under {', '.join(spec.packages)}" if spec.packages else "")
    layers = sorted({n.layer for n in fs.values()
                     if n.kind == "file" and fnmatch.fnmatchcase(n.path, spec.jars)})
    found: dict[str, set[str]] = {}
    for i in layers:
        for path, classes in index.jar_classes(image.layers[i], spec.jars,
                                               _prefixes(spec)).items():
            if path in fs and fs[path].layer == i:
                found[path] = set(classes)
    return _verdict(image.name, name, fs, found)


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
