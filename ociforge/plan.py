"""A build plan for N CI jobs: every distinct layer of a selection built by exactly one
job, largest first, then one publish stage that only stitches.

CI engines run matrix jobs in parallel with no order between them, so a layer that
builds on other images (a `builder` layer and its base images) must be built in the
same job as every layer of those images: such layers form one unit. Units are spread
over the jobs longest-processing-time first (the biggest unit to the least-loaded
job), the classic greedy that is within 4/3 of the best makespan. Layers with the
same input key are one unit too: one job builds them, the others would race it. Sizes come from the
layer records of the local store (the last build of each layer, any key), so a plan is
only as good as the store's memory; layers never built here weigh 0 and are listed
as such. The plan is a pure function of the recipes and those sizes: the same inputs
give the same jobs, which is what a CI matrix needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .recipes import Project
from .store import Store


@dataclass(frozen=True)
class PlanJob:
    index: int                       # 1-based, as CI shows it
    layers: tuple[str, ...]          # in the order they are first needed
    size: int                        # sum of the known layer sizes (bytes)

    def to_json(self) -> dict[str, Any]:
        return {"job": self.index, "layers": list(self.layers), "size": self.size}


@dataclass(frozen=True)
class Plan:
    images: Mapping[str, tuple[str, ...]]        # image → its layers
    needs: Mapping[str, tuple[str, ...]]         # layer → images it builds on
    sizes: Mapping[str, int]                     # layer → known size (0: unknown)
    jobs: tuple[PlanJob, ...]
    unknown: tuple[str, ...] = field(default=())  # layers with no size on record

    def to_json(self) -> dict[str, Any]:
        return {
            "images": {k: list(v) for k, v in self.images.items()},
            "needs": {k: list(v) for k, v in self.needs.items()},
            "jobs": [j.to_json() for j in self.jobs],
            "unknown_sizes": list(self.unknown),
            "publish": sorted(self.images),
        }

    def github_matrix(self) -> dict[str, Any]:
        """What `strategy.matrix` takes: one entry per build job."""
        return {"include": [{"job": j.index, "layers": " ".join(j.layers)}
                            for j in self.jobs]}


def known_sizes(store: Store) -> dict[str, int]:
    """Each layer name's size from its newest record in the store."""
    newest: dict[str, tuple[int, int]] = {}
    for rec in store.iter_records():
        seen = newest.get(rec.name)
        if seen is None or rec.built_at >= seen[0]:
            newest[rec.name] = (rec.built_at, rec.size)
    return {name: size for name, (_, size) in newest.items()}


class _Units:
    """Union-find over layer names: layers that must be built in one job."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def make_plan(project: Project, images: Iterable[str], jobs: int,
              sizes: Mapping[str, int], keys: Mapping[str, str] | None = None) -> Plan:
    """Partition the layers of `images` (resolved names) into at most `jobs` jobs.
    `keys` (layer → input key, where known): layers with the same inputs, e.g. two
    releases carrying one add-on jar, are one layer to build, so they share a job."""
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    image_layers = {name: tuple(project.resolve(name).layers) for name in images}
    order: dict[str, None] = {}
    needs: dict[str, tuple[str, ...]] = {}
    units = _Units()
    pending = [ln for layers in image_layers.values() for ln in layers]
    while pending:
        layer = pending.pop(0)
        if layer in order:
            continue
        order[layer] = None
        units.find(layer)
        bases = tuple(dict.fromkeys(
            img for src in project.layers[layer].all_sources() for img in src.needs_images()))
        if bases:
            needs[layer] = bases
        for base in bases:
            for base_layer in project.resolve(base).layers:
                units.join(layer, base_layer)
                pending.append(base_layer)
    first_with: dict[str, str] = {}
    for layer in order:
        if keys and (key := keys.get(layer)):
            units.join(layer, first_with.setdefault(key, layer))
    groups: dict[str, list[str]] = {}
    for layer in order:
        groups.setdefault(units.find(layer), []).append(layer)
    weighted = sorted(groups.values(),
                      key=lambda g: (-sum(sizes.get(ln, 0) for ln in g), g[0]))
    loads = [0] * min(jobs, len(weighted))
    members: list[list[str]] = [[] for _ in loads]
    for group in weighted:
        # Equal loads (layers of unknown size weigh 0): the job with fewer layers, so
        # a plan made on an empty store still spreads the work.
        i = min(range(len(loads)), key=lambda k: (loads[k], len(members[k]), k))
        loads[i] += sum(sizes.get(ln, 0) for ln in group)
        members[i].extend(group)
    position = {ln: i for i, ln in enumerate(order)}
    planned = tuple(PlanJob(i + 1, tuple(sorted(m, key=position.__getitem__)), loads[i])
                    for i, m in enumerate(members))
    return Plan(images=image_layers, needs=needs,
                sizes={ln: sizes.get(ln, 0) for ln in order}, jobs=planned,
                unknown=tuple(ln for ln in order if not sizes.get(ln)))
