"""The platform axis without building the arm64 base: which layers are made per
platform (only Debian and wheels), that linux/amd64 keeps its keys and config bytes,
how `--platform` and `$OCIFORGE_PLATFORMS` choose, the per-architecture locks `lock
--check` covers, and the one-line error for a feature a platform cannot have."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from maven_repo import ACCEL, ACCEL_ARM64, classified_layer
from project_copy import PROJECT, copy_project

from ociforge.assemble import build_config
from ociforge.layers import input_key
from ociforge.platforms import arch_lock_file, parse_platforms
from ociforge.recipes import Project
from ociforge.session import BuildSession, SessionOptions
from ociforge.sources.maven import Coordinate, read_lock
from ociforge.store import Store

from conftest import make_hello_project, run_cli, store_is_empty, write
from httpserver import serve

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
    """Every feature of the checkout has its arm64 pieces today; a feature marked
    `unavailable_on` (as one would be when an upstream jar or wheel lacks an aarch64
    build) drops the platform from its images and refuses `--platform` in one line."""
    proj = copy_project(tmp_path / "proj", "tools.yaml")
    recipe = proj / "recipes" / "spark.yaml"
    text = recipe.read_text()
    marker = "    caveat: the NVIDIA driver comes from the host (nvidia-container-toolkit)\n"
    assert marker in text
    recipe.write_text(text.replace(marker, marker + "    unavailable_on:\n      linux/arm64: "
                                   "no aarch64 wheel of cudf-cu12 at the pinned version\n"))
    r = run_cli("assemble", "spark-4.1.1-gpu", "--platform", ARM, store=tmp_path / "s",
                project=proj, env={"OCIFORGE_PLATFORMS": ""})
    assert r.rc == 3, r.err
    line, = r.err.strip().splitlines()
    assert "image spark-4.1.1-gpu" in line and "feature 'gpu'" in line and ARM in line
    assert "no aarch64 wheel of cudf-cu12" in line
    assert store_is_empty(tmp_path / "s")
    # Without --platform, the GPU image is simply amd64-only.
    image = Project.load(proj).resolve("spark-4.1.1-gpu")
    assert image.declared_platforms() == [AMD]
    r = run_cli("assemble", "spark-4.1.1", "--platform", "linux/s390x",
                store=tmp_path / "s", project=PROJECT)
    assert r.rc == 2 and "linux/s390x" in r.err


@pytest.mark.parametrize("image,line,jar", [
    ("spark-4.1.1-gpu", "4.1", "rapids-4-spark_2.13-26.08.1"),
    ("jupyter-3.5.7-gpu", "3.5", "rapids-4-spark_2.12-25.04.0")])
def test_arm64_gpu_images_take_the_arm64_rapids_jar_and_aarch64_cudf_wheels(
        tmp_path: Path, image: str, line: str, jar: str) -> None:
    """GPU images are built for both platforms: on arm64 the RAPIDS jar is NVIDIA's
    `cuda12-arm64` build and cuDF comes as aarch64 wheels, each from its own lock;
    the discovery script and plugin settings are one layer on both; linux/amd64 keeps
    the jar, keys and locks it had."""
    session = _session(tmp_path)
    resolved = session.project.resolve(image)
    assert resolved.declared_platforms() == [AMD, ARM]
    amd, arm = session.keys(resolved.layers, AMD), session.keys(resolved.layers, ARM)
    for native in (f"rapids-{line}", f"python-gpu-{line}"):
        assert amd[native] != arm[native], native
    for shared in ("gpu-support", "spark-entrypoint"):
        assert amd[shared] == arm[shared], shared
    for name, key in amd.items():
        assert key == input_key(session.project.layer(name), session.ctx), name

    rapids = session.project.layer(f"rapids-{line}")
    mine = rapids.for_platform(ARM).all_sources()[0]
    assert mine.lock_file == f"layers/locks/rapids-{line}.arm64.lock"
    [[coord, filename, pin]] = mine.key_material(session.ctx)["artifacts"]
    assert (coord.split(":")[-1], filename) == ("cuda12-arm64", f"{jar}-cuda12-arm64.jar")
    entry = read_lock(PROJECT / mine.lock_file)[coord]
    assert entry.sha256 == pin and entry.repository == "https://repo1.maven.org/maven2"
    amd_src = rapids.for_platform(AMD).all_sources()[0]
    assert amd_src is rapids.all_sources()[0]
    assert amd_src.lock_file == f"layers/locks/rapids-{line}.lock"
    [[_, filename, _]] = amd_src.key_material(session.ctx)["artifacts"]
    assert filename == f"{jar}.jar"

    wheels = session.project.layer(f"python-gpu-{line}").for_platform(ARM).all_sources()[0]
    assert wheels.lock_file == f"layers/locks/python-gpu-{line}.aarch64.lock"
    assert wheels.on_top_of == [f"layers/locks/python-deps-{line}.aarch64.lock"]
    files = [ln.rsplit("# ", 1)[1] for ln in (PROJECT / wheels.lock_file).read_text()
             .splitlines() if ln and not ln.startswith("#")]
    assert any(f.startswith("cudf_cu12-26.2.0-cp311-cp311-") for f in files)
    native = [f for f in files if not f.endswith("-any.whl")]
    assert native and all(f.endswith("aarch64.whl") for f in native), native


def test_the_amd64_rapids_layer_keeps_its_key(tmp_path: Path) -> None:
    """The per-platform classifier leaves linux/amd64 as it was: the same jar, pin and
    input key as before arm64 GPU images existed (the cached layer stays valid)."""
    session = _session(tmp_path)
    assert session.keys(["rapids-4.1"], AMD)["rapids-4.1"] == (
        "sha256:c5923b3284b21e90a164035195752ef66f0f20ceba2794d88cc196e41fdf058c")


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


def test_a_per_platform_classifier_is_locked_built_and_checked_per_platform(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A maven layer with `classifiers: {linux/arm64: …}` (stand-in jars on a loopback
    repository): `ociforge lock` pins the plain jar in the layer's lock and the
    classified one in the `.arm64` lock; each platform's layer holds its own jar; a
    stray pin in the arm64 lock fails `lock --check` and the next `lock` drops it."""
    monkeypatch.setenv("OCIFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OCIFORGE_MAVEN_SETTINGS", "none")
    plain, arm = ACCEL, ACCEL_ARM64
    repo = tmp_path / "m2"
    proj = tmp_path / "p"
    jars = classified_layer(repo, proj)
    write(proj / "recipes" / "r.yaml",
          "images:\n  img:\n    layers: [accel]\n    platforms: [linux/amd64, linux/arm64]\n")
    locks = proj / "layers" / "locks"
    store, env = tmp_path / "s", {"OCIFORGE_PLATFORMS": ""}
    with serve(repo) as url:
        env["OCIFORGE_MAVEN_REPOS"] = url
        r = run_cli("lock", "--json", store=store, project=proj, env=env)
        assert r.rc == 0, r.err
        assert [d["lock"] for d in r.json()] == ["layers/locks/accel.lock",
                                                 "layers/locks/accel.arm64.lock"]
        assert set(read_lock(locks / "accel.lock")) == {plain}
        assert set(read_lock(locks / "accel.arm64.lock")) == {arm}
        assert read_lock(locks / "accel.arm64.lock")[arm].sha256 == \
            hashlib.sha256(jars[arm]).hexdigest()
        good = (locks / "accel.arm64.lock").read_text()
        stray = "org.example:accel:0.9:native-arm64 sha256:" + "a" * 64 + "\n"
        (locks / "accel.arm64.lock").write_text(good + stray)
        check = run_cli("lock", "--check", store=store, project=proj, env=env)
        assert check.rc == 3 and "layers/locks/accel.arm64.lock pins " \
            "org.example:accel:0.9:native-arm64, which no layer asks for" in check.err
        assert run_cli("lock", store=store, project=proj, env=env).rc == 0
        assert set(read_lock(locks / "accel.arm64.lock")) == {arm}
    assert run_cli("lock", "--check", store=store, project=proj, env=env).rc == 0
    for platform, coord in ((AMD, plain), (ARM, arm)):  # offline: the downloads cache
        b = run_cli("assemble", "img", "--platform", platform, "--json", store=store,
                    project=proj, env=env)
        assert b.rc == 0, b.err
        [image] = b.json()["images"]
        digest = image["layers"][0]["digest"]
        with tarfile.open(store / "blobs" / "sha256" / digest.split(":")[1]) as tar:
            members = {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                       for m in tar if m.isfile()}
        name = Coordinate.parse(coord).filename
        assert members == {f"opt/spark/jars/{name}": jars[coord]}, platform


def test_classifiers_name_known_platforms_over_unclassified_artifacts() -> None:
    from pydantic import ValidationError

    from ociforge.sources.maven import MavenSource

    base = {"kind": "maven", "lock": "l.lock", "artifacts": ["org.example:accel:1.0"]}
    src = MavenSource.model_validate({**base, "classifiers": {ARM: "native-arm64"}})
    assert src.for_platform(AMD) is src
    assert src.for_platform(ARM).artifacts == ["org.example:accel:1.0:native-arm64"]
    with pytest.raises(ValidationError, match=r"classifiers\.linux/s390x"):
        MavenSource.model_validate({**base, "classifiers": {"linux/s390x": "x"}})
    with pytest.raises(ValidationError, match="name none of their own"):
        MavenSource.model_validate({**base, "artifacts": ["org.example:accel:1.0:cuda12"],
                                    "classifiers": {ARM: "native-arm64"}})


def test_feature_layers_are_locked_for_the_platforms_they_can_be_added_on(
        tmp_path: Path) -> None:
    """`--with connect` on a 3.5 image for linux/arm64 takes the aarch64 Connect client
    wheels: its lock is checked like the matrix's own layers; the linux/amd64 key of
    the layer is as before."""
    session = _session(tmp_path)
    assert session.layer_platforms("python-connect-3.5") == [AMD, ARM]
    assert session.layer_platforms("celeborn-3.5") == [AMD, ARM]  # one lock: no classifier
    keys = {p: session.keys(["python-connect-3.5"], p)["python-connect-3.5"] for p in (AMD, ARM)}
    assert keys[AMD] != keys[ARM]
    assert keys[AMD] == (  # the key of the layer prebuild-spark.sh builds
        "sha256:3c87d18e861909afd6d1642d533f0661b61e958ebca93e911097971ff4f8fb08")
    proj = copy_project(tmp_path / "proj", "tools.yaml")
    (proj / "layers" / "locks" / "python-connect-3.5.aarch64.lock").unlink()
    r = run_cli("lock", "--check", store=tmp_path / "s", project=proj)
    assert r.rc == 3, r.err
    assert ("layer python-connect-3.5: layers/locks/python-connect-3.5.aarch64.lock is "
            "missing") in r.err
