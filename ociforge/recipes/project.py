"""A project: `layers/*.yaml` and `recipes/*.yaml`, validated and cross-checked.

A project has `layers/*.yaml` (one reusable layer per file, named by the file
stem) and `recipes/*.yaml` (images, and optionally inline layers, features,
matrices and check sets):

    images:
      hello:
        layers: [busybox, hello-files]
        config: {entrypoint: ["/bin/sh"], user: "185:185"}

Images are declared (`ImageSpec`) and resolved once (`ImageDef`): `Project.resolve`
takes a name or an alias to the resolved image, whatever bases and features it took.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checks.model import CheckSet
from ..errors import RecipeError, suggest
from ..spec import PROJECT_ROOT, Spec
from .features import FeatureDef, Features
from .loading import Where, load_yaml, validate
from .matrix import MatrixDef, expand, fill
from .models import ImageDef, ImageSpec, LayerDef, merge_image

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
TITLE_LABEL = "org.opencontainers.image.title"


class RecipeFile(Spec):
    layers: dict[str, LayerDef] = {}
    images: dict[str, ImageSpec] = {}
    matrix: dict[str, MatrixDef] = {}
    features: dict[str, FeatureDef] = {}
    checks: dict[str, CheckSet] = {}


@dataclass(frozen=True)
class _Declared:
    """An image as written, and where: its errors name that field."""

    spec: ImageSpec
    where: Where


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
        self._declared: dict[str, _Declared] = {}
        # Base merged in, features not applied yet: what `base:` and `--with` build on.
        self._merged: dict[str, ImageSpec] = {}
        self._swaps: list[tuple[str, str]] = []
        # Matrix layer templates: (where, templates, the matrix's images, recipe file).
        self._templates: list[tuple[Where, dict[str, dict[str, Any]], list[str], Path]] = []
        # The variables each templated layer was filled with (`outdated` reads them).
        self.layer_vars: dict[str, dict[str, str]] = {}
        # Path fields resolve against the checkout, symlinks included, as they load.
        self._context = {PROJECT_ROOT: self.root}

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
            proj._add("layer", proj.layers, path.stem,
                      validate(LayerDef, data, Where(str(path)), proj._context), path)
        for path in sorted(recipes_dir.glob("*.yaml")) if recipes_dir.is_dir() else []:
            proj._add_file(path)
        for template in proj._templates:
            proj._instantiate(*template)
        for name in list(proj._declared):
            proj._finish(name, set())
        proj._check_references()
        return proj

    def _add_file(self, path: Path) -> None:
        data = load_yaml(path) or {}
        if isinstance(data, dict):
            # `x-…` keys hold YAML anchors shared by images (as in compose files).
            data = {k: v for k, v in data.items() if not str(k).startswith("x-")}
        rf = validate(RecipeFile, data, Where(str(path)), self._context)
        for name, layer in rf.layers.items():
            self._add("layer", self.layers, name, layer, path)
        for name, feature in rf.features.items():
            self.features.add(name, feature, path)
        for name, image in rf.images.items():
            self._declare(name, image, path, Where(str(path), f"images.{name}"))
        for mname, matrix in rf.matrix.items():
            expanded = expand(Where(str(path), f"matrix.{mname}"), matrix)
            for name, image, where in expanded:
                self._declare(name, image, path, where)
            if matrix.layers:
                self._templates.append((Where(str(path), f"matrix.{mname}.layers"),
                                        matrix.layers, [n for n, _, _ in expanded], path))
        for name, cs in rf.checks.items():
            self._add("check set", self.checks, name, cs, path)

    def _add(self, what: str, table: dict[str, Any], name: str, value: Any, path: Path) -> None:
        """Register a named layer, image or check set, once, remembering its file."""
        if what != "check set" and not re.match(NAME_PATTERN, name):
            raise RecipeError(f"{path}: {what} name {name!r} must match {NAME_PATTERN}")
        if name in table:
            raise RecipeError(f"{path}: {what} {name!r} is already defined in "
                              f"{self.origin[what + ':' + name]}")
        table[name] = value
        self.origin[what + ":" + name] = path

    def _instantiate(self, where: Where, templates: dict[str, dict[str, Any]],
                     images: list[str], path: Path) -> None:
        """The layers a matrix's templates give: for each image, each template whose
        name it fills to a layer the image (or a feature it may take) uses. Two images
        filling one name differently is an error; so is a layers/ file of that name."""
        made: dict[str, tuple[LayerDef, str]] = {}
        for image in images:
            spec = self._declared[image].spec
            variables = dict(spec.vars)
            wanted = {*spec.layers, *self.features.possible_layers(variables)}
            for tname, tdata in templates.items():
                twhere = where.at(tname)
                name = fill(tname, variables, twhere)
                if name not in wanted:
                    continue
                layer = validate(LayerDef, fill(tdata, variables, twhere), twhere,
                                 self._context)
                if name in made:
                    if made[name][0] != layer:
                        raise twhere.error(f"layer {name!r} differs between images "
                                           f"{made[name][1]} and {image}")
                    continue
                made[name] = (layer, image)
                self._add("layer", self.layers, name, layer, path)
                self.layer_vars[name] = variables

    def _declare(self, name: str, image: ImageSpec, path: Path, where: Where) -> None:
        self._add("image", self._declared, name, _Declared(image, where), path)

    def _finish(self, name: str, seen: set[str]) -> ImageDef:
        """Resolve image `name` (and its bases first); register its aliases."""
        if name in self.images:
            return self.images[name]
        declared = self._declared[name]
        spec = declared.spec
        if spec.base:
            base = spec.base
            if base in seen or base not in self._declared:
                why = "is circular" if base in seen else \
                    f"is not an image{suggest(base, list(self._declared))}"
                raise declared.where.at("base").error(f"{base!r} {why}")
            self._finish(base, seen | {name})
            spec = merge_image(self._merged[base], spec)
        self._merged[name] = spec
        image = self.images[name] = self._image(name)
        for alias in image.aliases:
            if alias in self._declared or alias in self.aliases:
                raise declared.where.at("aliases").error(f"{alias!r} is already an image "
                                                         "or an alias")
            self.aliases[alias] = name
        return image

    def _image(self, name: str) -> ImageDef:
        """The one place a declared image becomes an ImageDef: its merged declaration
        with features applied and this run's layer swaps made."""
        where = self._declared[name].where
        spec = self.features.apply(self._merged[name], where.at("features"))
        layers = spec.layers
        for old, new in self._swaps:
            layers = [new if ln == old else ln for ln in layers]
        fields = {k: v for k, v in spec if k != "base"}
        return validate(ImageDef, {**fields, "layers": layers, "name": name}, where)

    def _check_references(self) -> None:
        for name, cs in self.checks.items():
            where = Where(str(self.origin["check set:" + name]), f"checks.{name}")
            if cs.features:  # images may gain features later (`--with`)
                for f in cs.features:
                    self.features.closure([f], where.at("features"))
                continue
            if not any(cs.applies_to(image.name, image.features)
                       for image in self.images.values()):
                raise where.at("images").error(f"{cs.images} match no image")
        for name in self.images:
            self._check_layers(name)

    def _check_layers(self, name: str) -> None:
        where = self._declared[name].where.at("layers")
        for i, layer in enumerate(self.images[name].layers):
            if layer not in self.layers:
                raise where.at(i).error(
                    f"unknown layer {layer!r}{suggest(layer, list(self.layers))}")

    def resolve(self, name: str) -> ImageDef:
        """An image name or alias -> the resolved image; unknown names get the nearest."""
        if name in self.images:
            return self.images[name]
        if name in self.aliases:
            return self.images[self.aliases[name]]
        raise RecipeError(f"unknown image {name!r}"
                          f"{suggest(name, [*self.images, *self.aliases])}")

    def layer(self, name: str) -> LayerDef:
        if name not in self.layers:
            raise RecipeError(f"unknown layer {name!r}{suggest(name, list(self.layers))}")
        return self.layers[name]

    def swap_layer(self, old: str, new: str) -> None:
        """Use layer `new` wherever images use `old` (for this run only), in the images
        resolved so far and in those `with_features` derives later."""
        self.layer(old)
        self.layer(new)
        self._swaps.append((old, new))
        for name in self.images:
            self.images[name] = self._image(name)

    def with_features(self, name: str, wanted: list[str]) -> ImageDef:
        """The image `name` (or alias) plus features, registered under a name that says
        so (`spark-4.1.1` + s3a,celeborn -> `spark-4.1.1-s3a-celeborn`); the image itself
        when it has them all already."""
        image = self.resolve(name)
        name = image.name
        derived, added = self.features.derived_name(
            name, image.features, wanted, Where(f"--with for {name}", "features"))
        if derived in self.images or not added:
            return self.images[derived]
        self.origin["image:" + derived] = self.origin["image:" + name]
        where = self._declared[name].where
        where = Where(where.source, f"{where.field} --with {','.join(added)}")
        self._declared[derived] = _Declared(
            validate(ImageSpec, self._derived(self._merged[name], name, derived, added), where),
            where)
        self._finish(derived, set())
        self._check_layers(derived)
        return self.images[derived]

    @staticmethod
    def _derived(base: ImageSpec, name: str, derived: str, added: list[str]) -> dict[str, Any]:
        """The declaration of `derived`: image `name` plus features `added`, tagged and
        titled after them."""
        own: dict[str, Any] = {"base": name, "features": added,
                               "tag": f"{base.tag}-{'-'.join(added)}"}
        if base.config.labels.get(TITLE_LABEL) == name:
            own["config"] = {"labels": {TITLE_LABEL: derived}}
        if base.annotations.get(TITLE_LABEL) == name:
            own["annotations"] = {TITLE_LABEL: derived}
        return own
