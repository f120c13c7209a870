"""Image matrices: many images from one template.

A `matrix:` in a recipe file expands the cartesian product of its axes into images
from one template (`{var}` placeholders come from the axis values), so the Spark
family × version × variant table is declared once, not 28 times. A few lines can ask
for a product of billions (eight axes that alias one ten-value mapping), so a matrix
may expand to at most `MAX_NODES` template nodes in all.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import re
from typing import Any

from pydantic import Field

from ..spec import Spec
from .loading import MAX_NODES, Where, validate
from .models import ImageSpec

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
SPECIAL_KEYS = ("features", "aliases")


class MatrixDef(Spec):
    name: str                                            # template: "{family}-{version}{suffix}"
    axes: dict[str, dict[str, dict[str, Any] | None]] = Field(min_length=1)
    exclude: list[dict[str, str]] = []                   # axis -> fnmatch pattern
    image: dict[str, Any]                                # an image template
    # Layer templates ("spark-dist-{version}": a layer definition with {vars}): one
    # layer per distinct name among the layers the matrix's images can use, so a new
    # Spark version is one axis value plus `ociforge lock`.
    layers: dict[str, dict[str, Any]] = {}


def fill(value: Any, variables: dict[str, str], where: Where) -> Any:
    """Replace `{var}` in every string of `value`; an unknown name is a recipe error
    at `where` (the field `value` came from)."""
    def walk(value: Any, keys: tuple[str, ...]) -> Any:
        if isinstance(value, str):
            def repl(m: re.Match[str]) -> str:
                if m.group(1) not in variables:
                    raise where.at(*keys).error(f"unknown placeholder {m.group(0)} "
                                                f"(known: {', '.join(sorted(variables))})")
                return variables[m.group(1)]
            return _VAR.sub(repl, value) if "{" in value else value
        if isinstance(value, list):
            return [walk(v, keys) for v in value]
        if isinstance(value, dict):
            return {k: walk(v, (*keys, str(k))) for k, v in value.items()}
        return value
    return walk(value, ())


def _axis_value(where: Where, raw: dict[str, Any] | None
                ) -> tuple[dict[str, str], list[str], list[str]]:
    """(variables, features, alias templates) of one axis value."""
    variables: dict[str, str] = {}
    features: list[str] = []
    aliases: list[str] = []
    for key, v in (raw or {}).items():
        if key in SPECIAL_KEYS:
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise where.at(key).error("must be a list of names")
            (features if key == "features" else aliases).extend(v)
        elif isinstance(v, str | int | float) and not isinstance(v, bool):
            variables[key] = str(v)
        else:
            raise where.at(key).error("must be a string")
    return variables, features, aliases


def _nodes(value: Any, limit: int) -> int:
    """How many values `value` holds, nested ones included (counting stops past `limit`)."""
    count, stack = 0, [value]
    while stack and count <= limit:
        v = stack.pop()
        count += 1
        if isinstance(v, dict):
            stack += v.values()
        elif isinstance(v, list):
            stack += v
    return count


def _check_size(where: Where, matrix: MatrixDef) -> None:
    """Refuse, before expanding, a matrix whose images would hold more than MAX_NODES
    values in all (each image: its template, one value of each axis)."""
    images = math.prod(len(values) for values in matrix.axes.values())
    each = _nodes(matrix.image, MAX_NODES) + sum(
        max((_nodes(v, MAX_NODES) for v in values.values()), default=0)
        for values in matrix.axes.values())
    if images * each > MAX_NODES:
        raise where.at("axes").error(
            f"{images:,} combinations of {each:,} template values each: more than the "
            f"{MAX_NODES:,} a matrix may expand to (split it, or use fewer values)")


def expand(where: Where, matrix: MatrixDef) -> list[tuple[str, ImageSpec, Where]]:
    """The images of a matrix (at `where`, e.g. `matrix.spark`) in axis order,
    exclusions left out: (name, image, where its template is) each."""
    _check_size(where, matrix)
    axes = list(matrix.axes.items())
    for i, rule in enumerate(matrix.exclude):
        for axis in rule:
            if axis not in matrix.axes:
                raise where.at("exclude", i, axis).error(
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
            v, f, a = _axis_value(where.at("axes", axis, key), raw)
            variables.update(v)
            features += f
            alias_templates += a
        # A value may name others (`cloud: "{version}"` in a line shared by versions).
        variables = {k: fill(v, variables, where.at("axes", k)) for k, v in variables.items()}
        name = fill(matrix.name, variables, where.at("name"))
        data = fill(matrix.image, variables, where.at("image"))
        data["features"] = [*data.get("features", []), *features]
        data["aliases"] = [*data.get("aliases", []),
                           *fill(alias_templates, variables, where.at("axes"))]
        data["vars"] = {**variables, **data.get("vars", {})}
        image_where = where.at(f"image ({name})")
        out.append((name, validate(ImageSpec, data, image_where), image_where))
    return out
