"""`Project.resolve`: a name or alias to the image that gets assembled, with its bases
merged in and its features applied, whatever path the recipes took to declare it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ociforge.errors import RecipeError
from ociforge.recipes import Project

from conftest import write

RECIPES = """\
features:
  metrics:
    description: a metrics agent
    layers: ["metrics-{line}"]
    env: {METRICS: "on"}
    labels: {io.example.metrics: "{line}"}
    ports: ["9090"]
  tracing:
    requires: [metrics]
    layers: [tracing]
images:
  os:
    layers: [os]
    aliases: [base-os]
    vars: {line: "1"}
    config:
      env: {LANG: C.UTF-8}
      labels: {org.opencontainers.image.title: os}
      ports: ["8080"]
    tag: "1.0"
  runtime:
    base: os
    layers: [runtime]
    config: {env: {TZ: UTC}, user: "185:185"}
  app:
    base: runtime
    features: [tracing]
    config:
      labels: {org.opencontainers.image.title: app}
    aliases: [app-latest]
    tag: "2.0"
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    for name in ("os", "runtime", "metrics-1", "tracing", "patched-os"):
        write(tmp_path / "layers" / f"{name}.yaml",
              f"source: {{kind: files, files: [{{src: {name}, dest: /{name}}}]}}\n")
    write(tmp_path / "recipes" / "r.yaml", RECIPES)
    return Project.load(tmp_path)


def test_alias_resolves_to_the_canonical_image(project: Project) -> None:
    image = project.resolve("app-latest")
    assert image.name == "app"
    assert image is project.resolve("app") is project.images["app"]
    assert project.resolve("base-os").name == "os"


def test_base_chain_is_merged(project: Project) -> None:
    app = project.resolve("app")
    # Layers stack base first; env and labels merge key by key; other fields replace.
    assert app.layers[:2] == ["os", "runtime"]
    assert app.config.env["LANG"] == "C.UTF-8" and app.config.env["TZ"] == "UTC"
    assert app.config.user == "185:185"
    assert app.tag == "2.0" and project.resolve("runtime").tag == "1.0"
    assert app.vars == {"line": "1"}
    # Aliases belong to the image that declares them, not to what builds on it.
    assert project.resolve("runtime").aliases == []


def test_features_are_applied_with_what_they_require(project: Project) -> None:
    app = project.resolve("app")
    assert app.features == ["metrics", "tracing"]
    assert app.layers == ["os", "runtime", "metrics-1", "tracing"]
    assert app.config.env["METRICS"] == "on"
    assert app.config.labels["io.example.metrics"] == "1"
    assert app.config.labels["io.ociforge.features"] == "metrics,tracing"
    assert app.config.ports == ["8080/tcp", "9090/tcp"]
    # The base image is untouched by what its child added.
    assert project.resolve("runtime").features == []


def test_with_features_derives_a_named_image(project: Project) -> None:
    derived = project.with_features("base-os", ["tracing"])
    assert derived.name == "os-tracing"
    assert project.resolve("os-tracing") is derived
    assert derived.layers == ["os", "metrics-1", "tracing"]
    assert derived.tag == "1.0-tracing"
    assert derived.config.labels["org.opencontainers.image.title"] == "os-tracing"
    assert derived.aliases == []
    # What the image has already derives nothing new.
    assert project.with_features("app", ["metrics"]) is project.resolve("app")


def test_swapped_layer_reaches_images_derived_later(project: Project) -> None:
    project.swap_layer("os", "patched-os")
    assert project.resolve("app").layers[0] == "patched-os"
    assert project.with_features("os", ["metrics"]).layers == ["patched-os", "metrics-1"]


def test_unknown_name_suggests_names_and_aliases(project: Project) -> None:
    with pytest.raises(RecipeError, match=r"unknown image 'ap' \(did you mean 'app'"):
        project.resolve("ap")
    with pytest.raises(RecipeError, match=r"unknown image 'app-lates' \(did you mean "
                                          r"'app-latest', 'app'\?\)"):
        project.resolve("app-lates")


def _load_error(root: Path, recipe: str) -> str:
    write(root / "layers" / "os.yaml", "source: {kind: files, files: [{src: a, dest: /a}]}\n")
    write(root / "recipes" / "r.yaml", recipe)
    with pytest.raises(RecipeError) as err:
        Project.load(root)
    return str(err.value)


def test_name_is_not_a_recipe_field(tmp_path: Path) -> None:
    msg = _load_error(tmp_path, "images:\n  a: {layers: [os], name: b}\n")
    assert msg == f"{tmp_path}/recipes/r.yaml: field 'images.a.name': unknown field"


def test_circular_and_unknown_bases(tmp_path: Path) -> None:
    msg = _load_error(tmp_path, "images:\n  a: {base: b}\n  b: {base: a}\n")
    assert msg.endswith("field 'images.b.base': 'a' is circular")
    msg = _load_error(tmp_path, "images:\n  a: {base: oss}\n  os: {layers: [os]}\n")
    assert msg.endswith("field 'images.a.base': 'oss' is not an image (did you mean 'os'?)")


def test_duplicate_image_names_the_other_file(tmp_path: Path) -> None:
    write(tmp_path / "recipes" / "a.yaml", "images:\n  img: {layers: [os]}\n")
    msg = _load_error(tmp_path, """\
        matrix:
          m:
            name: "im{x}"
            axes: {x: {g: {}}}
            image: {layers: [os]}
        """)
    assert msg == (f"{tmp_path}/recipes/r.yaml: image 'img' is already defined in "
                   f"{tmp_path}/recipes/a.yaml")
