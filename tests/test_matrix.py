"""The image matrix: 30 names from axes, features that compose onto any image, and
the whole matrix assembled from cached layers and the real add-on jars.

Everything is real and comes from the cache scripts/prebuild-spark.sh fills: the
PyPI and Debian layers, the Maven add-on layers built from the committed locks, and a
Maven repository of the same jars (tests/maven_cache.py), served on 127.0.0.1 for
what a test builds anew. Stand-ins appear only where a test needs a broken artifact.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_readers import assert_readers_agree, linked_copy
from maven_cache import need_m2
from project_copy import PROJECT, copy_project

from ociforge.checks.containerd import Containerd
from ociforge.digests import digest_bytes
from ociforge.errors import RecipeError
from ociforge.recipes import Project
from ociforge.store import Store

from conftest import TEST_CACHE, Result, image_refs, remove_images, run_cli, store_is_empty, write
from httpserver import serve

SPARK_STORE = TEST_CACHE / "spark-store"
OFFLINE = {"OCIFORGE_INDEX_URL": "http://127.0.0.1:9/simple",
           "OCIFORGE_DEBIAN_MIRROR": "http://127.0.0.1:9/debian",
           "OCIFORGE_DEBIAN_SECURITY_MIRROR": "http://127.0.0.1:9/debian-security",
           "OCIFORGE_DEBIAN_SNAPSHOT": "http://127.0.0.1:9/{archive}/{timestamp}/",
           "OCIFORGE_MAVEN_SETTINGS": "none", "OCIFORGE_MAVEN_REPOS": "http://127.0.0.1:9"}
VERSIONS = ["4.3.0", "4.1.4", "4.1.1", "4.1.0", "3.5.9", "3.5.8", "3.5.7"]
VARIANTS = ["", "-gpu", "-iceberg", "-gpu-iceberg"]
MATRIX = [f"{family}-{v}{suffix}" for family in ("spark", "jupyter") for v in VERSIONS
          for suffix in VARIANTS if not (family == "jupyter" and v.startswith("3.5")
                                         and suffix == "-gpu-iceberg")
          and not (v.startswith("4.3") and suffix)]
MAVEN_KINDS = {"maven"}


def cli(*args: str | Path, project: Path = PROJECT, store: Path = SPARK_STORE,
        env: dict[str, str] | None = None, timeout: int = 600) -> Result:
    return run_cli(*args, store=store, project=project, env={**OFFLINE, **(env or {})},
                   timeout=timeout)


def images_ls(project: Path = PROJECT, store: Path | None = None) -> dict[str, dict]:
    r = cli("images", "ls", "--json", project=project, store=store or Path("/nonexistent"))
    assert r.rc == 0, r.err
    return {d["name"]: d for d in r.json()}


# -- the matrix as declared -------------------------------------------------------------


def test_matrix_expands_to_every_named_image() -> None:
    """The seeds' four versions as their table names them (16 Spark, 14 Jupyter), the
    newest 3.5 and 4.1 releases with the same variants, and Spark 4.3 as baseline and
    Jupyter only (no add-on has a release for it): 47 in all."""
    images = images_ls()
    assert len([n for n in MATRIX if n.startswith("spark-")]) == 25
    assert len([n for n in MATRIX if n.startswith("jupyter-")]) == 22
    assert [n for n in images if n.startswith(("spark-", "jupyter-"))
            and n != "spark-builder-base"] == MATRIX
    # The baseline is free of Maven artifacts; variants add their features' layers.
    assert images["spark-4.1.1"]["layers"] == [
        "debian-base", "jdbc-drivers", "python-deps-4.1", "spark-dist-4.1.1", "spark-entrypoint"]
    assert images["spark-4.1.1"]["aliases"] == ["spark-4.1.1-baseline"]
    assert images["spark-3.5.7-iceberg"]["features"] == ["s3a", "iceberg"]
    assert images["spark-3.5.7-iceberg"]["layers"][5:] == [
        "s3a-3.5", "hadoop-cloud-3.5.7", "s3a-committer", "iceberg-3.5"]
    assert images["jupyter-4.1.0-gpu-iceberg"]["layers"][5:] == [
        "s3a-4.1", "hadoop-cloud-4.1.0", "s3a-committer", "iceberg-4.1", "rapids-4.1",
        "python-gpu-4.1", "gpu-support", "gpu-shim-override-4.1.0", "jupyterlab-4.1"]
    assert images["spark-3.5.8-gpu"]["layers"][5:] == [
        "rapids-3.5", "python-gpu-3.5", "gpu-support", "gpu-shim-override-3.5"]
    # Every image shares the base and the line's Python layer.
    for name in MATRIX:
        line = name.split("-")[1][:3]
        python = "4.1" if line == "4.3" else line  # 4.3 meets its minimums with 4.1's
        assert images[name]["layers"][:3] == ["debian-base", "jdbc-drivers",
                                              f"python-deps-{python}"]


def test_baseline_images_hold_no_maven_layer() -> None:
    from ociforge.recipes import Project

    project = Project.load(PROJECT)
    for v in VERSIONS:
        for layer in project.resolve(f"spark-{v}").layers:
            assert "maven" not in project.layer(layer).kind, layer


def test_names_aliases_and_nearest_names(tmp_path: Path) -> None:
    r = cli("assemble", "spark-4.1.2-gpu", store=tmp_path / "store")
    assert r.rc == 3
    assert "unknown image 'spark-4.1.2-gpu'" in r.err and "'spark-4.1.1-gpu'" in r.err
    r = cli("assemble", "jupyter-3.5.8-gpu-iceberg", store=tmp_path / "store")
    assert r.rc == 3 and "unknown image 'jupyter-3.5.8-gpu-iceberg'" in r.err
    r = cli("images", "ls", "--json", store=tmp_path / "store")
    assert "spark-4.1.1-baseline" not in [d["name"] for d in r.json()]
    r = cli("assemble", "spark-4.1.1", "--with", "s3,celeborn", store=tmp_path / "store")
    assert r.rc == 3 and "unknown feature 's3'" in r.err and "'s3a'" in r.err
    assert store_is_empty(tmp_path / "store")


def test_features_compose_and_name_what_is_inside() -> None:
    from ociforge.recipes import Project

    project = Project.load(PROJECT)
    image = project.with_features("spark-3.5.8-baseline", ["celeborn", "s3a", "connect"])
    name = image.name
    # Canonical order, whatever the order asked.
    assert name == "spark-3.5.8-s3a-celeborn-connect"
    assert image.tag == "3.5.8-s3a-celeborn-connect"
    assert image.layers[5:] == ["s3a-3.5", "hadoop-cloud-3.5.8", "s3a-committer",
                                "celeborn-3.5", "connect-3.5.8", "python-connect-3.5"]
    assert image.config.labels["io.ociforge.features"] == "s3a,celeborn,connect"
    assert image.config.labels["org.opencontainers.image.title"] == name
    # Connect 3.5.8 is 3.5.7's jar (3.5.8 is not on Maven Central), and says so.
    assert image.config.labels["io.ociforge.connect.version"] == "3.5.7"
    assert "Maven Central has no spark-connect_2.12:3.5.8" in \
        image.config.labels["io.ociforge.caveats"]
    assert project.resolve(image.name) == image
    # connect is built into 4.1; no Celeborn client for Spark 4 exists: refused, saying why.
    image = project.with_features("spark-4.1.1", ["s3a", "connect"])
    assert image.name == "spark-4.1.1-s3a-connect"
    assert image.layers[5:] == ["s3a-4.1", "hadoop-cloud-4.1.1", "s3a-committer"]
    with pytest.raises(RecipeError, match=r"feature 'celeborn' is not available for 4\.1\.1: "
                                          r"Maven Central has no Celeborn client for Spark 4"):
        project.with_features("spark-4.1.1", ["celeborn"])
    # iceberg brings s3a; asking for what the image has changes nothing.
    assert project.with_features("spark-4.1.1", ["iceberg"]).name == "spark-4.1.1-iceberg"
    assert project.with_features("spark-4.1.1-iceberg", ["s3a"]).name == "spark-4.1.1-iceberg"
    # The 4.1.0 GPU trap is labelled.
    labels = project.resolve("spark-4.1.0-gpu").config.labels
    assert "untested upstream" in labels["io.ociforge.rapids.shim-override"]
    assert "untested upstream" in \
        project.resolve("spark-3.5.7-gpu").config.labels["io.ociforge.rapids.shim-override"]
    # spark-hadoop-cloud 4.1.0 is not on Maven Central: 4.1.0 has 4.1.1's, and says so.
    labels = project.resolve("spark-4.1.0-iceberg").config.labels
    assert labels["io.ociforge.spark-hadoop-cloud.version"] == "4.1.1"
    assert "Maven Central has no spark-hadoop-cloud_2.13:4.1.0" in labels["io.ociforge.caveats"]
    labels = project.resolve("spark-4.1.1-gpu").config.labels
    assert "io.ociforge.rapids.shim-override" not in labels
    assert project.resolve("jupyter-4.1.1").config.cmd == ["jupyter"]
    assert "8888/tcp" in project.resolve("jupyter-4.1.1").config.ports


def test_current_releases_and_what_their_add_ons_lack() -> None:
    """The newest releases on the day (3.5.9, 4.1.4, 4.3.0): per-version layers come
    from the matrix's templates; an add-on jar missing upstream is a substitute with a
    caveat, an add-on with no release for the line a refusal naming feature and line."""
    from ociforge.recipes import Project

    project = Project.load(PROJECT)
    dist = project.layer("spark-dist-4.1.4").all_sources()[0]
    assert (dist.filename, dist.lock_file) == ("pyspark-4.1.4.tar.gz",
                                              "layers/locks/spark-dist.lock")
    assert project.layer("hadoop-cloud-4.1.4").all_sources()[0].artifacts == [
        "org.apache.spark:spark-hadoop-cloud_2.13:4.1.2"]
    assert project.layer("connect-3.5.9").all_sources()[0].artifacts == [
        "org.apache.spark:spark-connect_2.12:3.5.7"]
    labels = project.resolve("spark-4.1.4-gpu-iceberg").config.labels
    assert labels["io.ociforge.spark-hadoop-cloud.version"] == "4.1.2"
    assert "spark413" in labels["io.ociforge.rapids.shim-override"]
    assert "Maven Central has no spark-hadoop-cloud_2.13:4.1.4" in labels["io.ociforge.caveats"]
    assert project.resolve("spark-3.5.9-iceberg").config.labels[
        "io.ociforge.spark-hadoop-cloud.version"] == "3.5.8"
    # 4.3 shares the 4.1 Python packages and the base; its add-ons are refused.
    assert project.resolve("spark-4.3.0").layers == [
        "debian-base", "jdbc-drivers", "python-deps-4.1", "spark-dist-4.3.0",
        "spark-entrypoint"]
    assert project.resolve("jupyter-4.3.0").layers[-1] == "jupyterlab-4.1"
    for feature, why in [("gpu", "none for Spark 4.3"), ("iceberg", "iceberg-spark-runtime-4.3"),
                         ("s3a", "spark-hadoop-cloud_2.13 for Spark 4.3")]:
        with pytest.raises(RecipeError, match=rf"feature '{feature}' is not available for "
                                              rf"4\.3\.0: .*{why}"):
            project.with_features("spark-4.3.0", [feature])
    # No template layer for what 4.3 cannot have.
    assert "hadoop-cloud-4.3.0" not in project.layers


def test_layer_templates_refuse_a_clash_with_a_layer_file(tmp_path: Path) -> None:
    write(tmp_path / "layers" / "dist-1.yaml", """\
        source: {kind: files, files: [{src: f, dest: /f}]}
        """)
    (tmp_path / "f").write_text("x")
    write(tmp_path / "recipes" / "m.yaml", """\
        matrix:
          m:
            name: "img-{v}"
            axes: {v: {"1": {}, "2": {}}}
            image: {layers: ["dist-{v}"]}
            layers:
              "dist-{v}": {source: {kind: files, files: [{src: f, dest: "/{v}"}]}}
        """)
    with pytest.raises(RecipeError, match=r"layer 'dist-1' is already defined in .*dist-1\.yaml"):
        Project.load(tmp_path)
    (tmp_path / "layers" / "dist-1.yaml").unlink()
    project = Project.load(tmp_path)
    assert project.layer("dist-2").all_sources()[0].files[0].dest == "/2"


def test_matrix_recipe_errors_name_file_and_field(tmp_path: Path) -> None:
    write(tmp_path / "layers" / "base.yaml", """\
        source: {kind: files, files: [{src: f, dest: /f}]}
        """)
    (tmp_path / "f").write_text("x")
    recipe = tmp_path / "recipes" / "m.yaml"
    write(recipe, """\
        matrix:
          m:
            name: "img-{version}"
            axes:
              version: {"1": {}, "2": {}}
            image:
              layers: [base]
              tag: "{verison}"
        """)
    r = cli("images", "ls", project=tmp_path)
    assert r.rc == 3
    assert f"{recipe}: field 'matrix.m.image.tag': unknown placeholder {{verison}}" in r.err
    write(recipe, """\
        features:
          extra: {layers: [base]}
        matrix:
          m:
            name: "img-{version}"
            axes:
              version: {"1": {features: [extar]}}
            image: {layers: [base]}
        """)
    r = cli("images", "ls", project=tmp_path)
    assert r.rc == 3 and "unknown feature 'extar'" in r.err and "'extra'" in r.err
    assert str(recipe) in r.err
    write(recipe, """\
        images:
          a: {layers: [base]}
          b: {base: a, features: [nope]}
        """)
    r = cli("images", "ls", project=tmp_path)
    assert r.rc == 3 and "images.b.features" in r.err and "unknown feature 'nope'" in r.err


def test_image_on_a_base_with_features_by_recipe(tmp_path: Path) -> None:
    """A user's own image: a matrix image plus features, declared in a recipe."""
    proj = tmp_path / "proj"
    copy_project(proj)
    write(proj / "recipes" / "team.yaml", """\
        images:
          spark-lakehouse:
            base: spark-3.5.8
            features: [celeborn, iceberg]
            tag: 3.5.8-lakehouse
        """)
    image = images_ls(proj)["spark-lakehouse"]
    assert image["features"] == ["s3a", "celeborn", "iceberg"]
    assert image["layers"][5:] == ["s3a-3.5", "hadoop-cloud-3.5.8", "s3a-committer",
                                   "celeborn-3.5", "iceberg-3.5"]


# -- scripts the GPU and Jupyter features ship -----------------------------------------


def test_entrypoint_passes_baked_settings_before_user_arguments(tmp_path: Path) -> None:
    home = tmp_path / "spark"
    write(home / "bin" / "spark-submit", '#!/bin/sh\nfor a in "$@"; do echo "[$a]"; done\n',
          0o755)
    (home / "conf.d").mkdir()
    shutil.copy(PROJECT / "docker/spark/gpu/rapids.conf", home / "conf.d" / "50-rapids.conf")
    shutil.copy(PROJECT / "docker/spark/gpu/rapids-shim-override-4.1.0.conf",
                home / "conf.d" / "60-override.conf")
    env = {"PATH": os.environ["PATH"], "SPARK_HOME": str(home), "HOME": str(tmp_path)}
    out = subprocess.run(["bash", PROJECT / "docker/spark/entrypoint.sh", "driver",
                          "--conf", "spark.plugins=mine", "app.py"],
                         capture_output=True, text=True, env=env, check=True).stdout
    args = re.findall(r"\[(.*)\]", out)
    assert args[:2] == ["--conf", "spark.plugins=com.nvidia.spark.SQLPlugin"]
    assert ("spark.rapids.shims-provider-override=com.nvidia.spark.rapids.shims.spark411."
            "SparkShimServiceProvider") in args
    # The user's own --conf comes later, so it wins.
    assert args.index("spark.plugins=mine") > args.index(
        "spark.plugins=com.nvidia.spark.SQLPlugin")
    assert args[-1] == "app.py"
    out = subprocess.run(["bash", PROJECT / "docker/spark/entrypoint.sh", "driver", "app.py"],
                         capture_output=True, text=True, check=True,
                         env={**env, "SPARK_IMAGE_CONF_D": "none"}).stdout
    assert "SQLPlugin" not in out and "[app.py]" in out
    p = subprocess.run(["bash", PROJECT / "docker/spark/entrypoint.sh", "jupyter"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 64 and "JupyterLab is not installed" in p.stderr


def test_gpu_discovery_script(tmp_path: Path) -> None:
    script = PROJECT / "docker/spark/gpu/getGpusResources.sh"
    for listing, want in (("0\\n1\\n", ["0", "1"]), ("", [])):
        write(tmp_path / "nvidia-smi", f'#!/bin/sh\nprintf "{listing}"\n', 0o755)
        out = subprocess.run([script], capture_output=True, text=True, check=True,
                             env={"PATH": f"{tmp_path}:/usr/bin:/bin"}).stdout
        assert json.loads(out) == {"name": "gpu", "addresses": want}


# -- the whole matrix, assembled --------------------------------------------------------


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A copy of the project (tests may change its recipes and locks, never the
    checkout's) and the test cache's Maven repository of the real jars on 127.0.0.1."""
    root = tmp_path_factory.mktemp("matrix")
    proj = root / "proj"
    # Without recipes/tools.yaml: the builder base (JDK + Maven from Debian) is not
    # part of the matrix and is not in the prebuilt cache.
    copy_project(proj, "tools.yaml")
    with serve(need_m2()) as url:
        yield {"project": proj, "repo": url, "root": root}


def _assemble(m: dict, *args: str | Path) -> dict:
    r = cli("--maven-repo", f"m2={m['repo']}", "assemble", *args, "--json",
            project=m["project"], env={"OCIFORGE_CACHE": str(m["root"] / "cache")},
            timeout=3000)
    if r.rc != 0:
        pytest.fail(f"assemble failed ({r.err.strip()}); scripts/prebuild-spark.sh builds "
                    "the PyPI, Debian and Maven layers first")
    return r.json()


@pytest.mark.slow
def test_whole_matrix_assembles_and_shares_layers(matrix: dict) -> None:
    first = _assemble(matrix, "--all")
    names = {i["name"] for i in first["images"]}
    assert set(MATRIX) <= names
    # Nothing from PyPI, Debian or Maven was built: prebuild-spark.sh built those layers
    # from the committed locks, and the copy of the project has the same locks. At most
    # the small layers of the project's own files were.
    built = set(first["layers"]["built"])
    assert built <= {"gpu-support", "gpu-shim-override-4.1.0", "gpu-shim-override-4.1.4",
                     "gpu-shim-override-3.5", "s3a-committer"}, built
    for lock in (PROJECT / "layers" / "locks").glob("*.lock"):
        assert (matrix["project"] / "layers" / "locks" / lock.name).read_text() == \
            lock.read_text(), lock.name

    with_features = _assemble(matrix, "spark-3.5.8", "--with", "s3a,celeborn,connect")
    assert [i["name"] for i in with_features["images"]] == ["spark-3.5.8-s3a-celeborn-connect"]
    assert [i["reference"] for i in with_features["images"]] == [
        "spark:3.5.8-s3a-celeborn-connect"]

    again = _assemble(matrix, "--all")
    assert again["layers"]["built"] == [] and again["layers"]["transcoded"] == []
    assert [i["manifest_digest"] for i in again["images"]] == [
        i["manifest_digest"] for i in first["images"]]
    print(f"\nassemble --all, all layers cached: {again['seconds']} s wall in-process")

    # Sharing: distinct layer blobs and registry bytes vs the sum of image sizes.
    out = matrix["root"] / "images.md"
    r = cli("catalog", "-o", out, "--json", project=matrix["project"])
    assert r.rc == 0, r.err
    text = out.read_text()
    m = re.search(r"registry bytes / sum of image sizes = (\d\.\d\d)", text)
    assert m and float(m.group(1)) < 0.5, text[-2000:]
    assert re.search(r"4\.1\.0; the image sets spark.rapids.shims-provider-override.*"
                     r"NVIDIA does not test: `spark-4.1.0-gpu`", text)
    assert "stand-in" not in text  # the real jars, real sizes
    # The size goals, in decimal GB as the catalog prints them.
    sizes = {r[0]: float(r[1].replace(",", "")) for r in re.findall(
        r"^\| `([\w.-]+)` \|[^|]*\|[^|]*\|[^|]*\|[^|]*\| ([\d,.]+) MB \|", text, re.M)}
    assert sizes["spark-4.1.1"] <= 1200 and sizes["spark-4.1.1-iceberg"] <= 1400, sizes


@pytest.mark.slow
def test_inspect_catalog_and_sbom_name_the_same_layer_records(matrix: dict,
                                                              tmp_path: Path) -> None:
    """For every layer of every matrix image, in a copy of the matrix store where each
    layer record has a twin (the same diff_id and blob under another input key, as when
    two definitions make the same tar), all readers name the record one rule picks."""
    store = linked_copy(SPARK_STORE, tmp_path / "store")
    r = cli("--maven-repo", f"m2={matrix['repo']}", "assemble", *MATRIX,
            project=matrix["project"], store=store,
            env={"OCIFORGE_CACHE": str(matrix["root"] / "cache")}, timeout=3000)
    assert r.rc == 0, r.err
    s = Store(store)
    for rec in list(s.iter_records()):
        s.write_record(dataclasses.replace(rec, name=f"{rec.name}-twin",
                                           input_key=digest_bytes(rec.input_key.encode())))
    names = assert_readers_agree(store, matrix["project"], MATRIX, tmp_path)
    picked = {n for layers in names.values() for n in layers}
    assert None not in picked
    assert any(n.endswith("-twin") for n in picked if n)  # the rule, not the file order
    assert not all(n.endswith("-twin") for n in picked if n)


@pytest.mark.slow
def test_duplicate_aws_sdk_classes_are_caught(matrix: dict, tmp_path: Path) -> None:
    """Shipping the real iceberg-aws-bundle next to s3a-4.1's AWS SDK v2 modules (the
    trap the iceberg-4.1 layer avoids: its own copy of the SDK) fails the duplicate-class
    check, naming the jars; `ociforge lock` pins it from the loopback repository."""
    proj = tmp_path / "proj"
    shutil.copytree(matrix["project"], proj)
    layer = proj / "layers" / "iceberg-4.1.yaml"
    layer.write_text(layer.read_text() + "    - org.apache.iceberg:iceberg-aws-bundle:1.11.0\n")
    locked = cli("--maven-repo", matrix["repo"], "lock", "iceberg-4.1", project=proj,
                 env={"OCIFORGE_CACHE": str(matrix["root"] / "cache")})
    assert locked.rc == 0, locked.err
    r = cli("--maven-repo", matrix["repo"], "test", "spark-4.1.1-iceberg", "--no-runtime",
            "--json", "--report-dir", tmp_path / "report", project=proj,
            env={"OCIFORGE_CACHE": str(matrix["root"] / "cache")}, timeout=1200)
    # The shared store now tags the broken variant under the matrix name: put it back.
    _assemble(matrix, "spark-4.1.1-iceberg")
    assert r.rc == 9, r.err
    failed = [x for x in r.json()["results"] if x["status"] == "failed"]
    assert failed and all(x["name"].startswith("no class twice") for x in failed), failed
    message = failed[0]["message"]
    for pair in ("iceberg-aws-bundle-1.11.0.jar and s3-2.29.52.jar",
                 "analyticsaccelerator-s3-1.2.1.jar and iceberg-aws-bundle-1.11.0.jar"):
        assert pair in message, message


# With the workloads that need no server of the user's (recipes/workloads.yaml): the
# 3.5 Connect server with a PySpark client, RAPIDS explainOnly on the GPU images.
FEATURE_SETS = ["s3a", "celeborn", "connect", "iceberg", "gpu", "gpu-smoke", "gpu-4.1.0-shim",
                "gpu-3.5-shim", "jupyter", "connect-server", "gpu-explain"]


@pytest.mark.slow
def test_variants_run_in_containerd(matrix: dict, tmp_path: Path,
                                    shared_containerd: Containerd) -> None:
    """Every check (baseline ones included) on the most composite image and on a
    Jupyter image; the feature check sets on one image of each other variant and on a
    3.5 baseline with s3a,celeborn,connect (the baseline sets ran on the baselines in
    test_spark_images). In the session's containerd; the GPU images (the largest, used
    by no other module) are removed after each run, to keep the disk bounded."""
    _assemble(matrix, "--all")
    only = [a for name in FEATURE_SETS for a in ("--check-set", name)]
    results = []
    for i, args in enumerate((
            ["spark-4.1.1-gpu-iceberg", "jupyter-4.1.1"],
            ["spark-3.5.8-iceberg", "spark-4.1.0-gpu", "spark-4.1.4-gpu", "spark-3.5.9-gpu",
             *only],
            ["spark-3.5.7", "--with", "s3a,celeborn,connect", *only])):
        before = image_refs(shared_containerd)
        r = cli("--maven-repo", matrix["repo"], "test", *args, "--json", "--report-dir",
                tmp_path / f"reports-{i}", "--containerd", shared_containerd.socket,
                project=matrix["project"],
                env={"OCIFORGE_CACHE": str(matrix["root"] / "cache")}, timeout=3600)
        remove_images(shared_containerd, before, "-gpu")
        assert r.out, r.err
        results += r.json()["results"]
    failures = [x for x in results if x["status"] == "failed"]
    assert not failures, failures
    passed = {(x["image"], x["name"]) for x in results if x["status"] == "passed"}
    for image, check in [
        ("spark-4.1.1-gpu-iceberg", "Iceberg classes load"),
        ("spark-4.1.1-gpu-iceberg", "RAPIDS classes load"),
        ("spark-4.1.1-gpu-iceberg", "S3A classes load"),
        ("spark-4.1.1-gpu-iceberg", "cuDF installed"),
        ("spark-4.1.1-gpu-iceberg", "pi job"),
        ("spark-4.1.1-gpu-iceberg", "connect server"),
        ("spark-3.5.8-iceberg", "Iceberg classes load"),
        ("spark-3.5.8-iceberg", "no class twice"),
        ("spark-4.1.0-gpu", "RAPIDS classes load"),
        ("spark-4.1.0-gpu", "Metadata Test"),
        ("spark-3.5.9-gpu", "cuDF installed"),
        ("jupyter-4.1.1", "JupyterLab"),
        ("jupyter-4.1.1", "python imports"),
        ("spark-3.5.7-s3a-celeborn-connect", "Celeborn classes load"),
        ("spark-3.5.7-s3a-celeborn-connect", "Connect client imports"),
    ]:
        assert any(i == image and n.startswith(check) for i, n in passed), (image, check)
    # The workloads: as 185 and as 12345:0 with a read-only root. RAPIDS loads, on 4.1.0,
    # 4.1.4 and 3.5 through the image's shim override, and plans which operators would run
    # on the GPU (explainOnly); the 3.5 Connect server answers a PySpark client.
    for image, check in [
        ("spark-4.1.1-gpu-iceberg", "RAPIDS plans a query without a GPU (explainOnly)"),
        ("spark-4.1.0-gpu", "RAPIDS plans a query without a GPU (explainOnly)"),
        ("spark-4.1.4-gpu", "RAPIDS plans a query without a GPU (explainOnly)"),
        ("spark-3.5.9-gpu", "RAPIDS plans a query without a GPU (explainOnly)"),
        ("spark-3.5.7-s3a-celeborn-connect", "connect server accepts a PySpark client"),
    ]:
        assert {(image, check), (image, check + " as 12345:0 read-only")} <= passed, (image, check)
    # Without a GPU the GPU smoke is skipped with its reason, never passed silently.
    gpu = [x for x in results if x["kind"] == "gpu"]
    assert gpu and all(x["status"] in ("skipped", "passed") for x in gpu)


def test_a_patch_release_is_one_line_and_a_lock(tmp_path: Path) -> None:
    """`4.1.9: *line-4-1` under the version axis: its images, distribution layer and
    per-version Maven layer exist at once; `lock --check` names exactly the new layers
    to lock (no network asked)."""
    proj = copy_project(tmp_path / "proj")
    recipe = proj / "recipes" / "spark.yaml"
    text = recipe.read_text()
    anchor = "        4.1.4: {<<: *line-4-1, cloud: 4.1.2}\n"
    assert anchor in text
    recipe.write_text(text.replace(anchor, anchor + "        4.1.9: *line-4-1\n"))
    images = images_ls(proj)
    new = [n for n in images if "4.1.9" in n]
    assert len(new) == 8 and "spark-4.1.9-gpu-iceberg" in new
    assert images["spark-4.1.9"]["layers"][3] == "spark-dist-4.1.9"
    r = cli("lock", "--check", project=proj, store=tmp_path / "store")
    assert r.rc == 3, r.err
    assert "layer spark-dist-4.1.9: layers/locks/spark-dist.lock has no pin for " \
           "pyspark-4.1.9.tar.gz" in r.err
    assert "layer hadoop-cloud-4.1.9: layers/locks/hadoop-cloud-4.1.9.lock is missing" in r.err
    assert r.err.strip().endswith("run `ociforge lock spark-dist-4.1.9 hadoop-cloud-4.1.9`")
