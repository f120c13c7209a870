"""A build plan for N CI jobs: every distinct layer of a selection built by exactly one
job, largest first, then one publish stage that only stitches.

CI engines run matrix jobs in parallel with no order between them, so a layer that
builds on other images (a `builder` layer and its base images) must be built in the
same job as every layer of those images: such layers form one unit. Units are spread
over the jobs longest-processing-time first (the biggest unit to the least-loaded
job), the classic greedy that is within 4/3 of the best makespan. Layers with the
same input key are one unit too: one job builds them, the others would race it.

A layer whose bytes depend on the platform (Debian packages, wheels, per-platform
Maven classifiers) is built once per platform its images are made for: the job lists
it as `NAME@linux/arm64` for every platform but linux/amd64, the platform `layers
build` takes by default, which reads the same form. A layer the same on every
platform is listed once, by name. Sizes come from the
layer records of the local store (the last build of each layer, any key), so a plan is
only as good as the store's memory; layers never built here weigh 0 and are listed
as such. The plan is a pure function of the recipes and those sizes: the same inputs
give the same jobs, which is what a CI matrix needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .platforms import DEFAULT_PLATFORM, selected
from .recipes import Project
from .store import Store

PLATFORM_SEP = "@"


def token(layer: str, platform: str) -> str:
    """How a job names `layer` as built for `platform` (see the module docstring)."""
    return layer if platform == DEFAULT_PLATFORM else f"{layer}{PLATFORM_SEP}{platform}"


def parse_token(text: str, default: str = DEFAULT_PLATFORM) -> tuple[str, str]:
    """(layer, platform) of `NAME` or `NAME@OS/ARCH`."""
    name, sep, platform = text.partition(PLATFORM_SEP)
    return name, (platform if sep else default)


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
    sizes: Mapping[str, int]                     # job entry → known size (0: unknown)
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
    """Partition the layers of `images` (resolved names), on each platform they are
    made for (`$OCIFORGE_PLATFORMS` applies), into at most `jobs` jobs. `sizes` by
    job entry or, failing that, by layer name. `keys` (job entry → input key, where
    known): layers with the same inputs, e.g. two releases carrying one add-on jar,
    are one layer to build, so they share a job."""
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    image_layers = {name: tuple(project.resolve(name).layers) for name in images}
    order: dict[str, None] = {}
    needs: dict[str, tuple[str, ...]] = {}
    units = _Units()
    pending = entries(project, image_layers)
    while pending:
        entry = pending.pop(0)
        if entry in order:
            continue
        order[entry] = None
        units.find(entry)
        layer = parse_token(entry)[0]
        bases = tuple(dict.fromkeys(
            img for src in project.layers[layer].all_sources() for img in src.needs_images()))
        if bases:
            needs[layer] = bases
        for base in bases:  # built on the host's platform, with what it runs on
            for base_layer in project.resolve(base).layers:
                units.join(entry, base_layer)
                pending.append(base_layer)
    first_with: dict[str, str] = {}
    for layer in order:
        if keys and (key := keys.get(layer)):
            units.join(layer, first_with.setdefault(key, layer))
    groups: dict[str, list[str]] = {}
    for layer in order:
        groups.setdefault(units.find(layer), []).append(layer)
    def size(entry: str) -> int:  # the entry's own record, else its layer name's
        return sizes.get(entry) or sizes.get(parse_token(entry)[0], 0)

    weighted = sorted(groups.values(), key=lambda g: (-sum(size(e) for e in g), g[0]))
    loads = [0] * min(jobs, len(weighted))
    members: list[list[str]] = [[] for _ in loads]
    for group in weighted:
        # Equal loads (layers of unknown size weigh 0): the job with fewer layers, so
        # a plan made on an empty store still spreads the work.
        i = min(range(len(loads)), key=lambda k: (loads[k], len(members[k]), k))
        loads[i] += sum(size(e) for e in group)
        members[i].extend(group)
    position = {ln: i for i, ln in enumerate(order)}
    planned = tuple(PlanJob(i + 1, tuple(sorted(m, key=position.__getitem__)), loads[i])
                    for i, m in enumerate(members))
    return Plan(images=image_layers, needs=needs,
                sizes={e: size(e) for e in order}, jobs=planned,
                unknown=tuple(e for e in order if not size(e)))


def entries(project: Project, images: Iterable[str]) -> list[str]:
    """The job entries of the layers of `images` on each platform they are made for,
    in order, repeats included (a builder layer's base images not followed)."""
    return [_entry(project, ln, p) for name in images
            for p in selected(project.resolve(name).declared_platforms())
            for ln in project.resolve(name).layers]


def _entry(project: Project, layer: str, platform: str) -> str:
    """The job entry of `layer` on `platform`: its name alone where its bytes are the
    same on every platform."""
    definition = project.layer(layer)
    return layer if definition.for_platform(platform) is definition else token(layer, platform)
