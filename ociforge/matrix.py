"""Image matrices and features: many images from a few declarations.

A `matrix:` in a recipe file expands the cartesian product of its axes into images
from one template (`{var}` placeholders come from the axis values), so the Spark
family × version × variant table is declared once, not 28 times. A `features:`
entry is an add-on (S3A, Iceberg, GPU, …) that composes onto any image: layers per
Spark line, environment, labels, version-specific cases. Images name the features
they want; `ociforge assemble NAME --with a,b` derives a new image whose name says
what is inside.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import RecipeError

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
SPECIAL_KEYS = ("features", "aliases")
FEATURES_LABEL = "io.ociforge.features"


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureCase(_M):
    """Extra settings for the images whose `{version}` matches a pattern."""

    layers: list[str] = []
    env: dict[str, str] = {}
    labels: dict[str, str] = {}
    caveat: str = ""


class FeatureDef(_M):
    description: str = ""
    requires: list[str] = []
    layers: list[str] = []            # templates: "s3a-{line}"
    builtin: list[str] = []           # `{version}` patterns whose distribution has it already
    env: dict[str, str] = {}
    labels: dict[str, str] = {}
    ports: list[str] = []
    cmd: list[str] | None = None
    cases: dict[str, FeatureCase] = {}
    caveat: str = ""


class MatrixDef(_M):
    name: str                                            # template: "{family}-{version}{suffix}"
    axes: dict[str, dict[str, dict[str, Any] | None]] = Field(min_length=1)
    exclude: list[dict[str, str]] = []                   # axis -> fnmatch pattern
    image: dict[str, Any]                                # an image template


def fill(value: Any, variables: dict[str, str], where: str) -> Any:
    """Replace `{var}` in every string of `value`; an unknown name is a recipe error.
    `where` is "FILE: field 'PATH" (the closing quote is added here)."""
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            if m.group(1) not in variables:
                raise RecipeError(f"{where}': unknown placeholder {m.group(0)} "
                                  f"(known: {', '.join(sorted(variables))})")
            return variables[m.group(1)]
        return _VAR.sub(repl, value)
    if isinstance(value, list):
        return [fill(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, variables, f"{where}.{k}") for k, v in value.items()}
    return value


def _axis_value(path: Path, field: str, raw: dict[str, Any] | None
                ) -> tuple[dict[str, str], list[str], list[str]]:
    """(variables, features, alias templates) of one axis value."""
    variables: dict[str, str] = {}
    features: list[str] = []
    aliases: list[str] = []
    for key, v in (raw or {}).items():
        if key in SPECIAL_KEYS:
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise RecipeError(f"{path}: field '{field}.{key}': must be a list of names")
            (features if key == "features" else aliases).extend(v)
        elif isinstance(v, str | int | float) and not isinstance(v, bool):
            variables[key] = str(v)
        else:
            raise RecipeError(f"{path}: field '{field}.{key}': must be a string")
    return variables, features, aliases


def expand(path: Path, mname: str, matrix: MatrixDef) -> list[tuple[str, dict[str, Any]]]:
    """The (name, image data) pairs of a matrix, in axis order, exclusions left out."""
    axes = list(matrix.axes.items())
    for i, rule in enumerate(matrix.exclude):
        for axis in rule:
            if axis not in matrix.axes:
                raise RecipeError(f"{path}: field 'matrix.{mname}.exclude[{i}].{axis}': "
                                  f"not an axis (axes: {', '.join(matrix.axes)})")
    out = []
    for combo in itertools.product(*[list(values.items()) for _, values in axes]):
        keys = {axis: key for (axis, _), (key, _) in zip(axes, combo, strict=True)}
        if any(all(fnmatch.fnmatchcase(keys[a], p) for a, p in rule.items())
               for rule in matrix.exclude):
            continue
        variables: dict[str, str] = dict(keys)
        features: list[str] = []
        alias_templates: list[str] = []
        for (axis, _), (key, raw) in zip(axes, combo, strict=True):
            v, f, a = _axis_value(path, f"matrix.{mname}.axes.{axis}.{key}", raw)
            variables.update(v)
            features += f
            alias_templates += a
        where = f"{path}: field 'matrix.{mname}"
        name = fill(matrix.name, variables, where + ".name")
        data = fill(matrix.image, variables, where + ".image")
        data["features"] = [*data.get("features", []), *features]
        data["aliases"] = [*data.get("aliases", []),
                           *fill(alias_templates, variables, where + ".axes")]
        data["vars"] = {**variables, **data.get("vars", {})}
        out.append((name, data))
    return out


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

    def closure(self, wanted: list[str], where: str) -> list[str]:
        """`wanted` plus what they require, in canonical order. `where` is "FILE: field
        'PATH" for errors."""
        from .recipes import suggest

        seen: set[str] = set()
        stack = list(wanted)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            if name not in self.defs:
                raise RecipeError(f"{where}': unknown feature {name!r}"
                                  f"{suggest(name, list(self.defs))} "
                                  f"(features: {', '.join(self.defs) or 'none'})")
            seen.add(name)
            stack.extend(self.defs[name].requires)
        return [n for n in self.defs if n in seen]

    def cases_of(self, name: str, version: str) -> list[tuple[str, FeatureCase]]:
        return [(p, c) for p, c in self.defs[name].cases.items()
                if fnmatch.fnmatchcase(version, p)]

    def layers_of(self, name: str, variables: dict[str, str], where: str = "catalog"
                  ) -> list[str]:
        """The layers feature `name` adds to an image with these variables."""
        f, version = self.defs[name], variables.get("version", "")
        if any(fnmatch.fnmatchcase(version, p) for p in f.builtin):
            return []
        layers = fill(f.layers, variables, f"{where}.{name}.layers")
        for pattern, case in self.cases_of(name, version):
            layers += fill(case.layers, variables, f"{where}.{name}.cases.{pattern}.layers")
        return list(layers)

    def apply(self, image: dict[str, Any], where: str) -> dict[str, Any]:
        """Image data with its features' layers, environment and labels added."""
        names = self.closure(list(image.get("features", [])), where)
        variables = {k: str(v) for k, v in image.get("vars", {}).items()}
        version = variables.get("version", "")
        layers = list(image.get("layers", []))
        config = dict(image.get("config", {}))
        env, labels = dict(config.get("env", {})), dict(config.get("labels", {}))
        ports = list(config.get("ports", []))
        caveats: list[str] = []
        for name in names:
            f = self.defs[name]
            fwhere = f"{where}.{name}"
            if any(fnmatch.fnmatchcase(version, p) for p in f.builtin):
                continue
            layers += self.layers_of(name, variables, where)
            env.update(fill(f.env, variables, fwhere + ".env"))
            labels.update(fill(f.labels, variables, fwhere + ".labels"))
            ports += [p for p in f.ports if p not in ports]
            if f.cmd is not None:
                config["cmd"] = fill(f.cmd, variables, fwhere + ".cmd")
            if f.caveat:
                caveats.append(fill(f.caveat, variables, fwhere + ".caveat"))
            for pattern, case in self.cases_of(name, version):
                cwhere = f"{fwhere}.cases.{pattern}"
                env.update(fill(case.env, variables, cwhere + ".env"))
                labels.update(fill(case.labels, variables, cwhere + ".labels"))
                if case.caveat:
                    caveats.append(fill(case.caveat, variables, cwhere + ".caveat"))
        if names:
            labels[FEATURES_LABEL] = ",".join(names)
        if caveats:
            labels["io.ociforge.caveats"] = " | ".join(caveats)
        config.update(env=env, labels=labels, ports=ports)
        annotations = dict(image.get("annotations", {}))
        if annotations:
            annotations.update({k: v for k, v in labels.items() if k.startswith("io.ociforge.")})
        return {**image, "layers": layers, "config": config, "annotations": annotations,
                "features": names}

    def derived_name(self, base: str, have: list[str], wanted: list[str], where: str
                     ) -> tuple[str, list[str]]:
        """(name, new features): `spark-4.1.1` + s3a,celeborn -> `spark-4.1.1-s3a-celeborn`."""
        have_all = set(self.closure(have, where))
        asked = self.closure(wanted, where)
        explicit = [n for n in asked if n in wanted and n not in have_all]
        if not explicit:
            return base, []
        return f"{base}-{'-'.join(explicit)}", explicit


def validation_error(path: Path, where: str, err: ValidationError) -> RecipeError:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    return RecipeError(f"{path}: field '{where}{'.' + loc if loc else ''}': {msg}")
