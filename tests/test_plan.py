"""`ociforge plan`: a selection's layers split into CI build jobs — each distinct layer
in exactly one job, a layer built on other images in the job that builds theirs,
largest first, the same plan for the same inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from maven_repo import classified_layer

from ociforge.plan import make_plan
from ociforge.platforms import DEFAULT_PLATFORM as AMD
from ociforge.recipes import Project

from conftest import run_cli, write
from httpserver import serve

PROJECT = Path(__file__).resolve().parent.parent


def _project(root: Path) -> Project:
    """Six files layers, a builder layer on image `tools`, three images."""
    for name in ("base", "jdk", "py", "jars", "conf", "toolchain"):
        write(root / "layers" / f"{name}.yaml",
              f"source: {{kind: files, dirs: [{{path: /{name}}}]}}\n")
    write(root / "ctx" / "Dockerfile", "FROM scratch\n")
    write(root / "layers" / "dist.yaml",
          "source: {kind: builder, context: ctx, base_images: {BASE: tools}}\n")
    write(root / "recipes" / "images.yaml", """\
        images:
          tools: {layers: [base, toolchain]}
          spark: {layers: [base, jdk, dist, conf]}
          spark-py: {layers: [base, jdk, dist, py, conf]}
          jars: {layers: [base, jars]}
        """)
    return Project.load(root)


SIZES = {"base": 400, "jdk": 200, "py": 900, "jars": 300, "conf": 1, "toolchain": 50,
         "dist": 350}


def test_every_layer_is_built_by_exactly_one_job(tmp_path: Path) -> None:
    project = _project(tmp_path)
    plan = make_plan(project, ["spark", "spark-py", "jars"], 3, SIZES)
    built = [ln for job in plan.jobs for ln in job.layers]
    assert sorted(built) == sorted(set(built))
    # Every layer of the selection, and those of the builder layer's base image.
    assert set(built) == {"base", "jdk", "dist", "conf", "py", "jars", "toolchain"}
    assert plan.needs == {"dist": ("tools",)}


def test_a_builder_layer_is_planned_with_the_layers_of_its_base_images(tmp_path: Path) -> None:
    """Matrix jobs run in parallel: the job that builds `dist` must also build what
    `tools` is made of, whatever the sizes say."""
    plan = make_plan(_project(tmp_path), ["spark"], 4, SIZES)
    (job,) = [j for j in plan.jobs if "dist" in j.layers]
    assert {"base", "toolchain"} <= set(job.layers)
    assert job.layers.index("base") < job.layers.index("dist")


def test_largest_units_first_onto_the_least_loaded_job(tmp_path: Path) -> None:
    project = _project(tmp_path)
    plan = make_plan(project, ["spark", "spark-py", "jars"], 3, SIZES)
    # Units: {base, toolchain, dist} 800, py 900, jars 300, jdk 200, conf 1.
    assert [set(j.layers) for j in plan.jobs] == [
        {"py"}, {"base", "toolchain", "dist"}, {"jars", "jdk", "conf"}]
    assert [j.size for j in plan.jobs] == [900, 800, 501]
    # More jobs than units: no empty jobs.
    assert len(make_plan(project, ["jars"], 8, SIZES).jobs) == 2


def test_same_inputs_same_plan_and_unknown_sizes_named(tmp_path: Path) -> None:
    project = _project(tmp_path)
    one = make_plan(project, ["spark-py", "jars"], 2, {"py": 5})
    two = make_plan(Project.load(tmp_path), ["spark-py", "jars"], 2, {"py": 5})
    assert one == two
    assert "py" not in one.unknown and "jars" in one.unknown


def test_cli_github_matrix_and_json(tmp_path: Path) -> None:
    _project(tmp_path / "proj")
    r = run_cli("plan", "spark", "jars", "--jobs", "2", "--github-matrix",
                store=tmp_path / "store", project=tmp_path / "proj")
    assert r.rc == 0, r.err
    matrix = json.loads(r.out)
    assert [e["job"] for e in matrix["include"]] == [1, 2]
    layers = [ln for e in matrix["include"] for ln in e["layers"].split()]
    assert sorted(layers) == sorted({"base", "toolchain", "jdk", "dist", "conf", "jars"})
    r = run_cli("plan", "--all", "-j", "2", "--json", store=tmp_path / "store",
                project=tmp_path / "proj")
    data = json.loads(r.out)
    assert data["publish"] == ["jars", "spark", "spark-py", "tools"]
    assert set(data["unknown_sizes"]) == set(data["needs"]) | {
        "base", "toolchain", "jdk", "conf", "py", "jars"}
    r = run_cli("plan", store=tmp_path / "store", project=tmp_path / "proj")
    assert r.rc == 2 and "--all" in r.err


def test_the_matrix_plans_into_jobs(tmp_path: Path) -> None:
    """The shipped recipes: every layer of the 30-odd images in one of four jobs."""
    project = Project.load(PROJECT)
    plan = make_plan(project, list(project.images), 4, {})
    built = [ln for job in plan.jobs for ln in job.layers]
    assert len(built) == len(set(built))
    assert {ln for img in project.images for ln in project.resolve(img).layers} <= set(built)


def test_layers_with_the_same_inputs_share_one_job(tmp_path: Path) -> None:
    """Two releases carrying one add-on jar have one input key: one job builds it (in
    two jobs, both would build the same layer); the CLI finds that from the keys, and
    `layers build` reports each layer asked for under its own name, built once."""
    root = tmp_path / "proj"
    _project(root)
    write(root / "files" / "addon.jar", "the same jar\n")
    for name in ("addon-1.0", "addon-1.1"):
        write(root / "layers" / f"{name}.yaml",
              "source: {kind: files, files: [{src: files/addon.jar, dest: /jars/addon.jar}]}\n")
    write(root / "recipes" / "addons.yaml", """\
        images:
          app-1.0: {layers: [base, addon-1.0, conf]}
          app-1.1: {layers: [base, addon-1.1, jdk]}
        """)
    project = Project.load(root)
    sizes = {"base": 400, "addon-1.0": 300, "addon-1.1": 300, "conf": 1, "jdk": 200}
    apart = make_plan(project, ["app-1.0", "app-1.1"], 4, sizes)
    assert len([j for j in apart.jobs if {"addon-1.0", "addon-1.1"} & set(j.layers)]) == 2
    r = run_cli("plan", "app-1.0", "app-1.1", "--jobs", "4", "--github-matrix",
                store=tmp_path / "store", project=root)
    assert r.rc == 0, r.err
    jobs = [e["layers"].split() for e in json.loads(r.out)["include"]]
    (together,) = [j for j in jobs if "addon-1.0" in j]
    assert "addon-1.1" in together
    r = run_cli("--json", "layers", "build", *together, store=tmp_path / "store", project=root)
    assert r.rc == 0, r.err
    report = {d["name"]: d for d in r.json()}
    assert set(report) == set(together)
    first, second = sorted(("addon-1.0", "addon-1.1"), key=together.index)
    assert report[first]["built"] and not report[second]["built"]
    assert report[second]["same_as"] == first
    assert report[first]["key"] == report[second]["key"]


def test_a_layer_made_per_platform_is_planned_for_each_platform(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Images made for linux/amd64 and linux/arm64 with a layer whose bytes depend on
    the platform (a Maven `classifiers` layer; stand-in jars on a loopback repository):
    the plan lists it once per platform (`accel@linux/arm64`), the layer the same on
    both platforms once; the jobs' `layers build` then leave nothing for either
    platform's images to build — a publisher stitches, never builds (under emulation)."""
    monkeypatch.setenv("OCIFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OCIFORGE_MAVEN_SETTINGS", "none")
    repo, root = tmp_path / "m2", tmp_path / "proj"
    classified_layer(repo, root)
    write(root / "files" / "conf.txt", "the same on every platform\n")
    write(root / "layers" / "conf.yaml",
          "source: {kind: files, files: [{src: files/conf.txt, dest: /etc/conf.txt}]}\n")
    write(root / "recipes" / "r.yaml", """\
        images:
          app: {layers: [accel, conf], platforms: [linux/amd64, linux/arm64]}
        """)
    store, env = tmp_path / "store", {"OCIFORGE_PLATFORMS": ""}
    monkeypatch.setenv("OCIFORGE_PLATFORMS", "")
    plan = make_plan(Project.load(root), ["app"], 2, {})
    assert sorted(e for j in plan.jobs for e in j.layers) == [
        "accel", "accel@linux/arm64", "conf"]
    monkeypatch.setenv("OCIFORGE_PLATFORMS", "linux/amd64")  # what a run restricts to
    assert sorted(e for j in make_plan(Project.load(root), ["app"], 2, {}).jobs
                  for e in j.layers) == ["accel", "conf"]
    with serve(repo) as url:
        env["OCIFORGE_MAVEN_REPOS"] = url
        assert run_cli("lock", store=store, project=root, env=env).rc == 0
        r = run_cli("plan", "app", "--jobs", "3", "--github-matrix", store=store,
                    project=root, env=env)
        assert r.rc == 0, r.err
        jobs = [e["layers"].split() for e in json.loads(r.out)["include"]]
        assert sorted(e for j in jobs for e in j) == ["accel", "accel@linux/arm64", "conf"]
        for job in jobs:
            b = run_cli("--json", "layers", "build", *job, store=store, project=root, env=env)
            assert b.rc == 0, b.err
            assert all(d["built"] for d in b.json())
            assert {d["name"] + ("@" + d["platform"] if d["platform"] != AMD else "")
                    for d in b.json()} == set(job)
    a = run_cli("assemble", "app", "--json", store=store, project=root, env=env)
    assert a.rc == 0, a.err
    assert a.json()["layers"]["built"] == []
    assert {i["platform"] for i in a.json()["images"]} == {AMD, "linux/arm64"}
    bad = run_cli("layers", "build", "accel@linux/s390x", store=store, project=root, env=env)
    assert bad.rc == 2 and "linux/s390x" in bad.err
