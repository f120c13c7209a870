"""Recipes: YAML validated by pydantic. Errors name the file and the field.

A project has `layers/*.yaml` (one reusable layer per file, named by the file
stem) and `recipes/*.yaml` (images, and optionally inline layers):

    images:
      hello:
        layers: [busybox, hello-files]
        config: {entrypoint: ["/bin/sh"], user: "185:185"}
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .checks.model import CheckSet
from .errors import RecipeError
from .sources import SourceSpec
from .sources.base import Owner

# libyaml's loader when PyYAML was built with it (its wheels are): ~8x faster.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LayerDef(Model):
    """One layer: a source, or several whose files are merged (later ones win)."""

    description: str = ""
    owner: Owner = (0, 0)
    source: SourceSpec | None = None
    sources: list[SourceSpec] = []

    @model_validator(mode="after")
    def _one_form(self) -> LayerDef:
        if (self.source is None) == (not self.sources):
            raise ValueError("give either 'source' or a non-empty 'sources' list")
        return self

    def all_sources(self) -> list[Any]:
        return [self.source] if self.source is not None else list(self.sources)

    @property
    def kind(self) -> str:
        return "+".join(s.kind for s in self.all_sources())


class ImageConfig(Model):
    """The runtime config of an image (OCI image config `config` object)."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: dict[str, str] = {}
    user: str | None = None
    workdir: str | None = None
    labels: dict[str, str] = {}
    ports: list[str] = []
    volumes: list[str] = []
    stop_signal: str | None = None

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[str]) -> list[str]:
        out = []
        for p in v:
            p = str(p)
            out.append(p if "/" in p else f"{p}/tcp")
        return out


class ImageDef(Model):
    description: str = ""
    layers: list[str] = Field(min_length=1)
    config: ImageConfig = ImageConfig()
    annotations: dict[str, str] = {}
    repository: str | None = None
    tag: str = "latest"
    compression: Literal["gzip", "zstd", "none"] = "gzip"
    platform: Literal["linux/amd64", "linux/arm64"] = "linux/amd64"


class RecipeFile(Model):
    layers: dict[str, LayerDef] = {}
    images: dict[str, ImageDef] = {}
    checks: dict[str, CheckSet] = {}


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _validation_message(path: Path, err: ValidationError, prefix: str = "") -> str:
    errors = err.errors()
    first = errors[0]
    # Discriminated unions add the tag ("files", "archive") to the location: keep it,
    # it tells which source kind the field belongs to.
    loc = _loc(tuple(first["loc"]))
    field = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "missing":
        msg = "required field is missing"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path}: field '{field}': {msg}{more}"


def load_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as e:
        raise RecipeError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"{path}{where}: malformed YAML: {problem}") from None


def suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


class Project:
    """All layers and images of a project directory, validated and cross-checked."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.layers: dict[str, LayerDef] = {}
        self.images: dict[str, ImageDef] = {}
        self.checks: dict[str, CheckSet] = {}
        self.origin: dict[str, Path] = {}

    @classmethod
    def load(cls, root: Path) -> Project:
        proj = cls(root)
        layers_dir, recipes_dir = proj.root / "layers", proj.root / "recipes"
        if not layers_dir.is_dir() and not recipes_dir.is_dir():
            raise RecipeError(f"{proj.root}: no layers/ or recipes/ directory here "
                              "(use --project DIR or run from a project)")
        for path in sorted(layers_dir.glob("*.yaml")) if layers_dir.is_dir() else []:
            data = load_yaml(path)
            if not isinstance(data, dict):
                raise RecipeError(f"{path}: a layer file must be a mapping with a 'source'")
            try:
                layer = LayerDef.model_validate(data)
            except ValidationError as e:
                raise RecipeError(_validation_message(path, e)) from None
            proj._add_layer(path.stem, layer, path)
        for path in sorted(recipes_dir.glob("*.yaml")) if recipes_dir.is_dir() else []:
            data = load_yaml(path) or {}
            if isinstance(data, dict):
                # `x-…` keys hold YAML anchors shared by images (as in compose files).
                data = {k: v for k, v in data.items() if not str(k).startswith("x-")}
            try:
                rf = RecipeFile.model_validate(data)
            except ValidationError as e:
                raise RecipeError(_validation_message(path, e)) from None
            for name, layer in rf.layers.items():
                proj._add_layer(name, layer, path)
            for name, image in rf.images.items():
                proj._add_image(name, image, path)
            for name, cs in rf.checks.items():
                proj._add("check set", proj.checks, name, cs, path)
        proj._check_references()
        return proj

    def _add(self, what: str, table: dict[str, Any], name: str, value: Any, path: Path) -> None:
        """Register a named layer, image or check set, once, remembering its file."""
        if what != "check set" and not re.match(NAME_PATTERN, name):
            raise RecipeError(f"{path}: {what} name {name!r} must match {NAME_PATTERN}")
        if name in table:
            raise RecipeError(f"{path}: {what} {name!r} is already defined in "
                              f"{self.origin[what + ':' + name]}")
        table[name] = value
        self.origin[what + ":" + name] = path

    def _add_layer(self, name: str, layer: LayerDef, path: Path) -> None:
        self._add("layer", self.layers, name, layer, path)

    def _add_image(self, name: str, image: ImageDef, path: Path) -> None:
        self._add("image", self.images, name, image, path)

    def _check_references(self) -> None:
        for name, cs in self.checks.items():
            if not any(cs.applies_to(image) for image in self.images):
                raise RecipeError(f"{self.origin['check set:' + name]}: field 'checks.{name}."
                                  f"images': {cs.images} match no image")
        for name, image in self.images.items():
            for i, layer in enumerate(image.layers):
                if layer not in self.layers:
                    raise RecipeError(
                        f"{self.origin['image:' + name]}: field 'images.{name}.layers[{i}]': "
                        f"unknown layer {layer!r}{suggest(layer, list(self.layers))}")

    def swap_layer(self, old: str, new: str) -> None:
        """Use layer `new` wherever images use `old` (for this run only)."""
        self.layer(old)
        self.layer(new)
        for name, image in self.images.items():
            layers = [new if ln == old else ln for ln in image.layers]
            self.images[name] = image.model_copy(update={"layers": layers})

    def image(self, name: str) -> ImageDef:
        if name not in self.images:
            raise RecipeError(f"unknown image {name!r}{suggest(name, list(self.images))}")
        return self.images[name]

    def layer(self, name: str) -> LayerDef:
        if name not in self.layers:
            raise RecipeError(f"unknown layer {name!r}{suggest(name, list(self.layers))}")
        return self.layers[name]
