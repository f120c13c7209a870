"""The platform axis without building the arm64 base: which layers are made per
platform (only Debian and wheels), that linux/amd64 keeps its keys and config bytes,
how `--platform` and `$OCIFORGE_PLATFORMS` choose, the per-architecture locks `lock
--check` covers, and the one-line error for a feature a platform cannot have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from project_copy import PROJECT, copy_project

from ociforge.assemble import build_config
from ociforge.layers import input_key
from ociforge.platforms import arch_lock_file, parse_platforms
from ociforge.recipes import Project
from ociforge.session import BuildSession, SessionOptions
from ociforge.store import Store

from conftest import make_hello_project, run_cli, store_is_empty, write

ARM = "linux/arm64"
AMD = "linux/amd64"


def _session(tmp_path: Path, project: Path = PROJECT, **options: object) -> BuildSession:
    return BuildSession(Store(tmp_path / "store"), Project.load(project),
                        SessionOptions(sde=0, **options))  # type: ignore[arg-type]


def test_only_debian_and_wheel_layers_differ_per_platform(tmp_path: Path) -> None:
    """The Spark distribution, jars and entrypoint have one key (so one blob) on both
    platforms; the Debian base and the Python layers have their own on arm64, from
    their own locks; linux/amd64 keys are what they were before the axis existed."""
    session = _session(tmp_path)
    layers = session.project.resolve("spark-4.1.1").layers
    amd, arm = session.keys(layers, AMD), session.keys(layers, ARM)
    for shared in ("jdbc-drivers", "spark-dist-4.1.1", "spark-entrypoint"):
        assert amd[shared] == arm[shared], shared
    for native in ("debian-base", "python-deps-4.1"):
        assert amd[native] != arm[native], native
    for name, key in amd.items():
        assert key == input_key(session.project.layer(name), session.ctx), name
    base = session.project.layer("debian-base").for_platform(ARM).all_sources()[0]
    assert (base.architecture, base.lock_file) == ("arm64", "layers/locks/debian-base.arm64.lock")
    wheels = session.project.layer("jupyterlab-4.1").for_platform(ARM).all_sources()[0]
    assert wheels.platform == "manylinux_2_36_aarch64"
    assert wheels.on_top_of == ["layers/locks/python-deps-4.1.aarch64.lock"]
    assert arch_lock_file("layers/locks/x.lock", "arm64") == "layers/locks/x.arm64.lock"


def test_arm64_config_names_its_architecture_and_java_amd64_bytes_unchanged() -> None:
    project = Project.load(PROJECT)
    image = project.resolve("spark-4.1.1")
    assert image.declared_platforms() == [AMD, ARM]
    arm = build_config(image.for_platform(ARM), [], 0)
    assert (arm["os"], arm["architecture"]) == ("linux", "arm64")
    assert "JAVA_HOME=/usr/lib/jvm/java-17-openjdk-arm64" in arm["config"]["Env"]
    # linux/amd64: the very config it had before platforms existed.
    assert build_config(image.for_platform(AMD), [], 0) == build_config(image, [], 0)
    # Tools images stay single-platform.
    assert project.resolve("spark-builder-base").declared_platforms() == [AMD]


def test_platform_flag_and_environment_choose_what_is_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = Project.load(PROJECT).resolve("spark-4.1.1")
    monkeypatch.delenv("OCIFORGE_PLATFORMS", raising=False)
    assert [i.platform for i in _session(tmp_path).platforms_of(image)] == [AMD, ARM]
    monkeypatch.setenv("OCIFORGE_PLATFORMS", AMD)
    assert [i.platform for i in _session(tmp_path).platforms_of(image)] == [AMD]
    # --platform wins over the environment; order is the index order.
    chosen = _session(tmp_path, platforms=(ARM,)).platforms_of(image)
    assert [i.platform for i in chosen] == [ARM]
    assert parse_platforms(["linux/arm64,linux/amd64", "linux/arm64"]) == [AMD, ARM]


def test_a_feature_a_platform_cannot_have_is_one_line_naming_image_feature_platform(
        tmp_path: Path) -> None:
    r = run_cli("assemble", "spark-4.1.1-gpu", "--platform", ARM, store=tmp_path / "s",
                project=PROJECT, env={"OCIFORGE_PLATFORMS": ""})
    assert r.rc == 3, r.err
    line, = r.err.strip().splitlines()
    assert "image spark-4.1.1-gpu" in line and "feature 'gpu'" in line and ARM in line
    assert store_is_empty(tmp_path / "s")
    # Without --platform, the GPU image is simply amd64-only.
    image = Project.load(PROJECT).resolve("spark-4.1.1-gpu")
    assert image.declared_platforms() == [AMD]
    r = run_cli("assemble", "spark-4.1.1", "--platform", "linux/s390x",
                store=tmp_path / "s", project=PROJECT)
    assert r.rc == 2 and "linux/s390x" in r.err


def test_lock_check_covers_each_platforms_lock(tmp_path: Path) -> None:
    proj = copy_project(tmp_path / "proj", "tools.yaml")
    (proj / "layers" / "locks" / "python-deps-4.1.aarch64.lock").unlink()
    r = run_cli("lock", "--check", store=tmp_path / "s", project=proj)
    assert r.rc == 3, r.err
    assert "layer python-deps-4.1: layers/locks/python-deps-4.1.aarch64.lock is missing" in r.err


def test_an_arch_independent_image_is_one_set_of_blobs_for_both_platforms(
        tmp_path: Path) -> None:
    """Two platforms of an image whose layers do not depend on the architecture: two
    manifests (configs differ in `architecture`) over the very same layer blobs."""
    (tmp_path / "p").mkdir()
    proj = make_hello_project(tmp_path / "p")
    write(proj / "recipes" / "hello.yaml", (proj / "recipes" / "hello.yaml").read_text()
          .replace("layers: [busybox, hello]",
                   "layers: [busybox, hello]\n    platforms: [linux/amd64, linux/arm64]"))
    r = run_cli("assemble", "hello", "--json", store=tmp_path / "s", project=proj,
                env={"OCIFORGE_PLATFORMS": ""})
    assert r.rc == 0, r.err
    images = r.json()["images"]
    assert [i["platform"] for i in images] == [AMD, ARM]
    assert images[0]["layers"] == images[1]["layers"]
    assert images[0]["manifest_digest"] != images[1]["manifest_digest"]
    assert r.json()["layers"]["built"] == ["busybox", "hello"]  # once, not per platform
    store = Store(tmp_path / "s")
    configs = [json.loads(store.read_bytes(i["config_digest"])) for i in images]
    assert [c["architecture"] for c in configs] == ["amd64", "arm64"]
