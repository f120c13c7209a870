"""Features: add-ons (S3A, Iceberg, GPU, …) that compose onto any image.

A `features:` entry adds layers per Spark line, environment, labels and
version-specific cases. Images name the features they want; `ociforge assemble NAME
--with a,b` derives a new image whose name says what is inside.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from ..errors import RecipeError, suggest
from ..spec import Spec
from .loading import Where
from .matrix import fill
from .models import ImageSpec, Platform, Port

FEATURES_LABEL = "io.ociforge.features"
CAVEATS_LABEL = "io.ociforge.caveats"
_CATALOG = Where("catalog", "features")   # where `layers_of` errors point outside a recipe


class FeatureCase(Spec):
    """Extra settings for the images whose `{version}` matches a pattern."""

    layers: list[str] = []
    env: dict[str, str] = {}
    labels: dict[str, str] = {}
    caveat: str = ""


class FeatureDef(Spec):
    description: str = ""
    requires: list[str] = []
    layers: list[str] = []            # templates: "s3a-{line}"
    builtin: list[str] = []           # `{version}` patterns whose distribution has it already
    # `{version}` pattern -> why the feature cannot be had there (no artifact exists):
    # asking for it on such an image is a recipe error naming the reason.
    unavailable: dict[str, str] = {}
    # platform -> why the feature cannot be had there: images with it are built
    # without that platform, and asking for it is a recipe error naming the reason.
    unavailable_on: dict[Platform, str] = {}
    env: dict[str, str] = {}
    labels: dict[str, str] = {}
    ports: list[Port] = []
    cmd: list[str] | None = None
    cases: dict[str, FeatureCase] = {}
    caveat: str = ""


class Features:
    """The project's features, in declaration order (which is also the order in
    which their layers are stacked and their names appear in derived image names)."""

    def __init__(self) -> None:
        self.defs: dict[str, FeatureDef] = {}
        self.origin: dict[str, Path] = {}

    def add(self, name: str, feature: FeatureDef, path: Path) -> None:
        if name in self.defs:
            raise RecipeError(f"{path}: feature {name!r} is already defined in "
                              f"{self.origin[name]}")
        self.defs[name] = feature
        self.origin[name] = path

    def closure(self, wanted: list[str], where: Where) -> list[str]:
        """`wanted` plus what they require, in canonical order."""
        seen: set[str] = set()
        stack = list(wanted)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            if name not in self.defs:
                raise where.error(f"unknown feature {name!r}{suggest(name, list(self.defs))} "
                                  f"(features: {', '.join(self.defs) or 'none'})")
            seen.add(name)
            stack.extend(self.defs[name].requires)
        return [n for n in self.defs if n in seen]

    def cases_of(self, name: str, version: str) -> list[tuple[str, FeatureCase]]:
        return [(p, c) for p, c in self.defs[name].cases.items()
                if fnmatch.fnmatchcase(version, p)]

    def layers_of(self, name: str, variables: dict[str, str],
                  where: Where = _CATALOG) -> list[str]:
        """The layers feature `name` adds to an image with these variables."""
        f, version = self.defs[name], variables.get("version", "")
        if any(fnmatch.fnmatchcase(version, p) for p in f.builtin):
            return []
        layers = fill(f.layers, variables, where.at(name, "layers"))
        for pattern, case in self.cases_of(name, version):
            layers += fill(case.layers, variables, where.at(name, "cases", pattern, "layers"))
        return list(layers)

    def possible_layers(self, variables: dict[str, str], where: Where = _CATALOG,
                        platform: str | None = None) -> list[str]:
        """Every layer some feature available to an image with these variables (and on
        `platform`, if given) adds (`--with` included): what a matrix's layer templates
        must provide, and what `ociforge lock` locks for each platform."""
        version = variables.get("version", "")
        return [ln for name, f in self.defs.items()
                if not any(fnmatch.fnmatchcase(version, p) for p in f.unavailable)
                and platform not in f.unavailable_on
                for ln in self.layers_of(name, variables, where)]

    def apply(self, image: ImageSpec, where: Where) -> ImageSpec:
        """`image` with its features' layers, environment and labels added; `where` is
        the image's `features` field."""
        names = self.closure(image.features, where)
        variables = dict(image.vars)
        version = variables.get("version", "")
        layers = list(image.layers)
        config = image.config
        env, labels, ports = dict(config.env), dict(config.labels), list(config.ports)
        cmd = config.cmd
        caveats: list[str] = []
        off = dict(image.unavailable_platforms)
        for name in names:
            for platform, why in self.defs[name].unavailable_on.items():
                off.setdefault(platform, f"feature {name!r} is not available for {platform}: "
                                         f"{' '.join(why.split())}")
        # The features asked for first: their own reason, not a requirement's.
        for name in sorted(names, key=lambda n: n not in image.features):
            for pattern, why in self.defs[name].unavailable.items():
                if fnmatch.fnmatchcase(version, pattern):
                    raise where.error(f"feature {name!r} is not available for {version}: "
                                      f"{' '.join(why.split())}")
        for name in names:
            f = self.defs[name]
            if any(fnmatch.fnmatchcase(version, p) for p in f.builtin):
                continue
            fwhere = where.at(name)
            layers += self.layers_of(name, variables, where)
            env.update(fill(f.env, variables, fwhere.at("env")))
            labels.update(fill(f.labels, variables, fwhere.at("labels")))
            ports += [p for p in f.ports if p not in ports]
            if f.cmd is not None:
                cmd = fill(f.cmd, variables, fwhere.at("cmd"))
            if f.caveat:
                caveats.append(fill(f.caveat, variables, fwhere.at("caveat")))
            for pattern, case in self.cases_of(name, version):
                cwhere = fwhere.at("cases", pattern)
                env.update(fill(case.env, variables, cwhere.at("env")))
                labels.update(fill(case.labels, variables, cwhere.at("labels")))
                if case.caveat:
                    caveats.append(fill(case.caveat, variables, cwhere.at("caveat")))
        if names:
            labels[FEATURES_LABEL] = ",".join(names)
        if caveats:
            labels[CAVEATS_LABEL] = " | ".join(caveats)
        annotations = dict(image.annotations)
        if annotations:
            annotations.update({k: v for k, v in labels.items() if k.startswith("io.ociforge.")})
        config = config.model_copy(update={"env": env, "labels": labels, "ports": ports,
                                           "cmd": cmd})
        return image.model_copy(update={"layers": layers, "config": config,
                                        "annotations": annotations, "features": names,
                                        "unavailable_platforms": off})

    def derived_name(self, base: str, have: list[str], wanted: list[str], where: Where
                     ) -> tuple[str, list[str]]:
        """(name, new features): `spark-4.1.1` + s3a,celeborn -> `spark-4.1.1-s3a-celeborn`."""
        have_all = set(self.closure(have, where))
        asked = self.closure(wanted, where)
        explicit = [n for n in asked if n in wanted and n not in have_all]
        if not explicit:
            return base, []
        return f"{base}-{'-'.join(explicit)}", explicit
