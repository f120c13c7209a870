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
    ValidationError,
    field_validator,
    model_validator,
)

from .checks.model import CheckSet
from .errors import RecipeError
from .matrix import FeatureDef, Features, MatrixDef, expand, validation_error
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
    base: str | None = None            # start from this image (its layers, config, features)
    layers: list[str] = []
    features: list[str] = []           # add-ons (see `features:`), with what they require
    vars: dict[str, str] = {}          # for feature templates: {line}, {version}, …
    aliases: list[str] = []
    config: ImageConfig = ImageConfig()
    annotations: dict[str, str] = {}
    repository: str | None = None
    tag: str = "latest"
    compression: Literal["gzip", "zstd", "none"] = "gzip"
    platform: Literal["linux/amd64", "linux/arm64"] = "linux/amd64"

    @model_validator(mode="after")
    def _has_layers(self) -> ImageDef:
        if not self.layers and self.base is None:
            raise ValueError("give 'layers' (or a 'base' image to start from)")
        return self


class RecipeFile(Model):
    layers: dict[str, LayerDef] = {}
    images: dict[str, ImageDef] = {}
    matrix: dict[str, MatrixDef] = {}
    features: dict[str, FeatureDef] = {}
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
        self.features = Features()
        self.aliases: dict[str, str] = {}
        self.origin: dict[str, Path] = {}
        # Image data before features were applied: what `--with` and `base:` build on.
        self._raw: dict[str, dict[str, Any]] = {}
        self._where: dict[str, str] = {}

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
            for name, feature in rf.features.items():
                proj.features.add(name, feature, path)
            for name, image in rf.images.items():
                proj._add_raw(name, image.model_dump(exclude_unset=True), path,
                              f"images.{name}")
            for mname, matrix in rf.matrix.items():
                for name, raw in expand(path, mname, matrix):
                    proj._add_raw(name, raw, path, f"matrix.{mname}.image ({name})")
            for name, cs in rf.checks.items():
                proj._add("check set", proj.checks, name, cs, path)
        for name in list(proj._raw):
            proj._finish(name, set())
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

    def _add_raw(self, name: str, raw: dict[str, Any], path: Path, where: str) -> None:
        self._add("image", self._raw, name, raw, path)
        self._where[name] = where

    def _finish(self, name: str, seen: set[str]) -> ImageDef:
        """Validate image `name` with its base merged in and its features applied."""
        if name in self.images:
            return self.images[name]
        path, where = self.origin["image:" + name], self._where[name]
        raw = self._raw[name]
        if raw.get("base"):
            base = raw["base"]
            if base in seen or base not in self._raw:
                why = "is circular" if base in seen else \
                    f"is not an image{suggest(base, list(self._raw))}"
                raise RecipeError(f"{path}: field '{where}.base': {base!r} {why}")
            self._finish(base, seen | {name})
            raw = merge_image(self._raw[base], raw)
            self._raw[name] = raw
        data = self.features.apply(raw, f"{path}: field '{where}.features'")
        data.pop("base", None)
        try:
            image = ImageDef.model_validate(data)
        except ValidationError as e:
            raise validation_error(path, where, e) from None
        self.images[name] = image
        for alias in image.aliases:
            if alias in self._raw or alias in self.aliases:
                raise RecipeError(f"{path}: field '{where}.aliases': {alias!r} is already "
                                  "an image or an alias")
            self.aliases[alias] = name
        return image

    def _check_references(self) -> None:
        for name, cs in self.checks.items():
            if cs.features:  # images may gain features later (`--with`)
                for f in cs.features:
                    self.features.closure([f], f"{self.origin['check set:' + name]}: "
                                               f"field 'checks.{name}.features'")
                continue
            if not any(cs.applies_to(image, self.images[image].features)
                       for image in self.images):
                raise RecipeError(f"{self.origin['check set:' + name]}: field 'checks.{name}."
                                  f"images': {cs.images} match no image")
        for name in self.images:
            self._check_layers(name)

    def _check_layers(self, name: str) -> None:
        for i, layer in enumerate(self.images[name].layers):
            if layer not in self.layers:
                raise RecipeError(
                    f"{self.origin['image:' + name]}: field '{self._where[name]}."
                    f"layers[{i}]': unknown layer {layer!r}{suggest(layer, list(self.layers))}")

    def swap_layer(self, old: str, new: str) -> None:
        """Use layer `new` wherever images use `old` (for this run only)."""
        self.layer(old)
        self.layer(new)
        for name, image in self.images.items():
            layers = [new if ln == old else ln for ln in image.layers]
            self.images[name] = image.model_copy(update={"layers": layers})

    def with_features(self, name: str, wanted: list[str]) -> str:
        """The image `name` plus features, registered under a name that says so
        (`spark-4.1.1` + s3a,celeborn -> `spark-4.1.1-s3a-celeborn`)."""
        name = self.resolve(name)
        where = f"--with for {name}: field 'features"
        image = self.images[name]
        derived, added = self.features.derived_name(name, image.features, wanted, where)
        if derived in self.images or not added:
            return derived
        raw = merge_image(self._raw[name], {"features": added})
        raw["tag"] = f"{raw.get('tag', 'latest')}-{'-'.join(added)}"
        config = dict(raw.get("config", {}))
        labels = dict(config.get("labels", {}))
        if labels.get("org.opencontainers.image.title") == name:
            labels["org.opencontainers.image.title"] = derived
        config["labels"] = labels
        raw["config"] = config
        if raw.get("annotations", {}).get("org.opencontainers.image.title") == name:
            raw["annotations"] = {**raw["annotations"],
                                  "org.opencontainers.image.title": derived}
        self._raw[derived] = raw
        self.origin["image:" + derived] = self.origin["image:" + name]
        self._where[derived] = f"{self._where[name]} --with {','.join(added)}"
        self._finish(derived, set())
        self._check_layers(derived)
        return derived

    def resolve(self, name: str) -> str:
        """An image name or alias -> the image name; unknown names get the nearest."""
        if name in self.images:
            return name
        if name in self.aliases:
            return self.aliases[name]
        raise RecipeError(f"unknown image {name!r}"
                          f"{suggest(name, [*self.images, *self.aliases])}")

    def image(self, name: str) -> ImageDef:
        return self.images[self.resolve(name)]

    def layer(self, name: str) -> LayerDef:
        if name not in self.layers:
            raise RecipeError(f"unknown layer {name!r}{suggest(name, list(self.layers))}")
        return self.layers[name]


def merge_image(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """`own` on top of `base`: features and layers are appended, config, env, labels
    and annotations merged key by key, other fields replaced."""
    out = {k: v for k, v in base.items() if k not in ("aliases", "base")}
    for key, value in own.items():
        if key in ("layers", "features"):
            out[key] = [*out.get(key, []), *[v for v in value if v not in out.get(key, [])]]
        elif key == "config":
            config = dict(out.get("config", {}))
            for ck, cv in value.items():
                config[ck] = {**config.get(ck, {}), **cv} if ck in ("env", "labels") else cv
            out["config"] = config
        elif key in ("annotations", "vars"):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out
