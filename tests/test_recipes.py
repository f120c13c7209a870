"""Invalid recipes give one line that names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ociforge.errors import RecipeError
from ociforge.recipes import Project

from conftest import write

GOOD_LAYER = """\
source:
  kind: files
  files: [{src: a.txt, dest: /a.txt}]
"""


def _project(tmp_path: Path, layer: str = GOOD_LAYER, recipe: str | None = None) -> Path:
    write(tmp_path / "layers" / "base.yaml", layer)
    write(tmp_path / "recipes" / "r.yaml", recipe or "images:\n  img:\n    layers: [base]\n")
    return tmp_path


def _error(root: Path) -> str:
    with pytest.raises(RecipeError) as err:
        Project.load(root)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_valid_project_loads(tmp_path: Path) -> None:
    proj = Project.load(_project(tmp_path))
    assert list(proj.images) == ["img"] and proj.images["img"].layers == ["base"]


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    msg = _error(_project(tmp_path, layer="source:\n  kind: files\n  files: [oops\n"))
    assert "layers/base.yaml:" in msg and "malformed YAML" in msg


def test_unknown_field_named(tmp_path: Path) -> None:
    recipe = "images:\n  img:\n    layers: [base]\n    colour: red\n"
    msg = _error(_project(tmp_path, recipe=recipe))
    assert msg.endswith("recipes/r.yaml: field 'images.img.colour': unknown field")


def test_wrong_sha256_pattern_named(tmp_path: Path) -> None:
    layer = "source:\n  kind: archive\n  url: x.tgz\n  sha256: abc\n"
    msg = _error(_project(tmp_path, layer=layer))
    assert "layers/base.yaml: field 'source.archive.sha256'" in msg


def test_unpinned_archive_refused(tmp_path: Path) -> None:
    msg = _error(_project(tmp_path, layer="source:\n  kind: archive\n  url: x.tgz\n"))
    assert "pinned with sha256" in msg


def test_unknown_source_kind(tmp_path: Path) -> None:
    msg = _error(_project(tmp_path, layer="source:\n  kind: ftp\n"))
    assert "field 'source'" in msg and "ftp" in msg


def test_unknown_layer_suggests_nearest(tmp_path: Path) -> None:
    msg = _error(_project(tmp_path, recipe="images:\n  img:\n    layers: [bsae]\n"))
    assert "field 'images.img.layers[0]': unknown layer 'bsae' (did you mean 'base'?)" in msg


def test_integer_mode_refused(tmp_path: Path) -> None:
    layer = "source:\n  kind: files\n  files: [{src: a, dest: /a, mode: 755}]\n"
    msg = _error(_project(tmp_path, layer=layer))
    assert "source.files.files[0].mode" in msg and "quoted octal" in msg


def test_unknown_image_suggests(tmp_path: Path) -> None:
    proj = Project.load(_project(tmp_path))
    with pytest.raises(RecipeError, match=r"unknown image 'imgg' \(did you mean 'img'\?\)"):
        proj.resolve("imgg")


# -- one error format, wherever the field is --------------------------------------------


def test_nested_field_in_a_matrix_template_is_named(tmp_path: Path) -> None:
    recipe = """\
matrix:
  m:
    name: "img-{v}"
    axes: {v: {"1": {}}}
    image:
      layers: [base]
      config: {entrypoint: ["/bin/sh", [x]]}
"""
    msg = _error(_project(tmp_path, recipe=recipe))
    assert msg == (f"{tmp_path}/recipes/r.yaml: field 'matrix.m.image (img-1).config."
                   "entrypoint[1]': Input should be a valid string")


def test_nested_field_in_an_inline_layer_source_is_named(tmp_path: Path) -> None:
    recipe = """\
layers:
  extra:
    source:
      kind: files
      files: [{src: a, dest: /a}, {src: b, dest: /b, mode: 755}]
images:
  img: {layers: [base, extra]}
"""
    msg = _error(_project(tmp_path, recipe=recipe))
    assert msg == (f"{tmp_path}/recipes/r.yaml: field 'layers.extra.source.files.files[1]."
                   "mode': Value error, write modes as quoted octal strings, e.g. '0755'")


def test_missing_field_and_how_many_more(tmp_path: Path) -> None:
    layer = "source:\n  kind: files\n  files: [{dest: /a, colour: red}]\n"
    msg = _error(_project(tmp_path, layer=layer))
    assert msg == (f"{tmp_path}/layers/base.yaml: field 'source.files.files[0].src': "
                   "required field is missing (and 1 more)")


def test_unknown_feature_in_a_base_image_names_the_field(tmp_path: Path) -> None:
    recipe = "images:\n  a: {layers: [base]}\n  b: {base: a, features: [nope]}\n"
    msg = _error(_project(tmp_path, recipe=recipe))
    assert msg == (f"{tmp_path}/recipes/r.yaml: field 'images.b.features': unknown "
                   "feature 'nope' (features: none)")
