"""`ociforge diff A B`: what differs between two images, as a platform team reviews a
rebuild: layers added, removed and changed (matched by the layer names the image
history records), and from the layers' provenance the Debian packages, Python
distributions and jars whose versions changed, appeared or went, with the size delta.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .image import StoredImage
from .sbom.collect import collect_image
from .sbom.model import Inventory
from .store import Store

# Package groups and the SBOM component kinds in each.
GROUPS = {"debian": ("deb",), "python": ("pypi", "dist"), "jars": ("maven", "jar"),
          "archives": ("archive",)}
_HISTORY = re.compile(r"^ociforge layer (\S+) \(")
_VERSIONISH = re.compile(r"\d+(?:\.\d+)+")


@dataclass(frozen=True)
class LayerInfo:
    name: str
    diff_id: str
    size: int       # the compressed blob

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "diff_id": self.diff_id, "size": self.size}


def layer_names(img: StoredImage) -> list[LayerInfo]:
    """Each layer's name: the history's `ociforge layer NAME (kind)`, else its record's."""
    history = [h for h in img.config.get("history", []) if not h.get("empty_layer")]
    out = []
    for i, layer in enumerate(img.layers):
        m = _HISTORY.match(str(history[i].get("created_by", ""))) if i < len(history) else None
        name = m.group(1) if m else (layer.name or f"layer {i + 1}")
        out.append(LayerInfo(name, layer.diff_id, layer.descriptor.size))
    return out


@dataclass
class Diff:
    a: dict[str, Any]
    b: dict[str, Any]
    added: list[LayerInfo] = field(default_factory=list)
    removed: list[LayerInfo] = field(default_factory=list)
    changed: list[tuple[LayerInfo, LayerInfo]] = field(default_factory=list)
    unchanged: int = 0
    packages: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    undescribed: list[str] = field(default_factory=list)  # layers without provenance

    @property
    def size_delta(self) -> int:
        return int(self.b["size"]) - int(self.a["size"])

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed
                    or any(any(g.values()) for g in self.packages.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "size_delta": self.size_delta,
            "layers": {
                "added": [x.to_json() for x in self.added],
                "removed": [x.to_json() for x in self.removed],
                "changed": [{"a": x.to_json(), "b": y.to_json(), "size_delta": y.size - x.size}
                            for x, y in self.changed],
                "unchanged": self.unchanged},
            "packages": self.packages,
            "undescribed_layers": self.undescribed}


def _stem(name: str) -> str:
    """A layer name with its version numbers masked: spark-dist-4.1.1 → spark-dist-*."""
    return _VERSIONISH.sub("*", name)


def match_layers(a: list[LayerInfo], b: list[LayerInfo]
                 ) -> tuple[list[LayerInfo], list[LayerInfo], list[tuple[LayerInfo, LayerInfo]],
                            int]:
    """(added, removed, changed, unchanged): by name, then by name with versions masked
    (spark-dist-4.1.1 → spark-dist-4.1.4 is one layer changed), in B's order."""
    left = {x.name: x for x in a}
    changed, added, unchanged = [], [], 0
    for y in b:
        x = left.pop(y.name, None)
        if x is None:
            added.append(y)
        elif x.diff_id == y.diff_id:
            unchanged += 1
        else:
            changed.append((x, y))
    for y in list(added):
        same = [x for x in left.values() if _stem(x.name) == _stem(y.name)]
        if len(same) == 1:
            del left[same[0].name]
            added.remove(y)
            changed.append((same[0], y))
    return added, list(left.values()), changed, unchanged


def _versions(inv: Inventory, kinds: tuple[str, ...]) -> dict[str, str]:
    """name → version(s) of the inventory's components of these kinds."""
    found: dict[str, set[str]] = defaultdict(set)
    for c in inv.components:
        if c.kind in kinds:
            found[c.name].add(c.version or "?")
    return {n: ", ".join(sorted(v)) for n, v in found.items()}


def package_changes(a: Inventory, b: Inventory) -> dict[str, dict[str, list[dict[str, Any]]]]:
    out = {}
    for group, kinds in GROUPS.items():
        old, new = _versions(a, kinds), _versions(b, kinds)
        out[group] = {
            "changed": [{"name": n, "old": old[n], "new": new[n]}
                        for n in sorted(old.keys() & new.keys()) if old[n] != new[n]],
            "added": [{"name": n, "version": new[n]} for n in sorted(new.keys() - old.keys())],
            "removed": [{"name": n, "version": old[n]} for n in sorted(old.keys() - new.keys())]}
    return out


def _summary(img: StoredImage, label: str) -> dict[str, Any]:
    return {"name": label, "reference": img.reference, "digest": img.descriptor.digest,
            "size": img.size}


def diff_images(store: Store, a: StoredImage, b: StoredImage, label_a: str, label_b: str
                ) -> Diff:
    """The difference from `a` to `b`: layers by name, packages from the provenance of
    every layer (a shared layer lists the same packages on both sides, so only what
    differs remains; jar scans are cached by diff_id)."""
    la, lb = layer_names(a), layer_names(b)
    added, removed, changed, unchanged = match_layers(la, lb)
    out = Diff(_summary(a, label_a), _summary(b, label_b), added, removed, changed, unchanged)
    inv_a, inv_b = collect_image(store, a, label_a), collect_image(store, b, label_b)
    out.packages = package_changes(inv_a, inv_b)
    names = {x.diff_id: x.name for x in [*la, *lb]}
    out.undescribed = sorted({names[d] for d in [*inv_a.unknown_layers, *inv_b.unknown_layers]})
    return out
