"""`ociforge diff`: layers added, removed and changed between two images, and the
packages whose versions changed, for images in the store, in an archive and in an OCI
layout (provenance found by diff_id in the store); on the Spark images, a patch
release changes the distribution layer and its jars and nothing else."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from maven_repo import publish

from conftest import TEST_CACHE, make_hello_project, run_cli, write
from httpserver import serve
from registry_server import Registry

ADDON = "org.example:addon_2.13"


@pytest.fixture(scope="module")
def two_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """v1 = busybox + hello + motd + addon 1.0.0; v2 = busybox + hello + addon 1.1.0 +
    extra, assembled in a store; v2 also as an archive and an OCI layout."""
    root = tmp_path_factory.mktemp("diff")
    (root / "proj").mkdir()
    proj = make_hello_project(root / "proj")
    for version in ("1.0.0", "1.1.0"):
        publish(root / "m2", f"{ADDON}:{version}")
        write(proj / "layers" / f"addon-{version[:3]}.yaml", f"""\
            source: {{kind: maven, lock: layers/locks/addon.lock,
                      artifacts: ["{ADDON}:{version}"]}}
            """)
    write(proj / "files" / "extra.txt", "extra\n")
    write(proj / "layers" / "extra.yaml",
          "source: {kind: files, files: [{src: files/extra.txt, dest: /opt/extra.txt}]}\n")
    write(proj / "layers" / "motd.yaml",
          "source: {kind: files, files: [{src: files/etc/motd, dest: /etc/motd2}]}\n")
    write(proj / "recipes" / "v.yaml", """\
        images:
          v1: {layers: [busybox, hello, motd, addon-1.0]}
          v2: {layers: [busybox, hello, addon-1.1, extra]}
        """)
    store = root / "store"
    env = {"OCIFORGE_MAVEN_SETTINGS": "none"}
    with serve(root / "m2") as m2:
        for args in (["lock"], ["assemble", "v1"],
                     ["assemble", "v2", "--archive", root / "v2.tar", "--oci-layout",
                      root / "v2-layout"],
                     ["assemble", "v1", "v2", "--archive", root / "both.tar"]):
            r = run_cli("--maven-repo", m2, *args, store=store, project=proj, env=env)
            assert r.rc == 0, r.err
    return {"root": root, "store": store, "project": proj}


def _diff(t: dict[str, Path], *args: str | Path) -> dict:
    r = run_cli("diff", *args, "--json", store=t["store"], project=t["project"])
    assert r.rc == 0, r.err
    return r.json()


@pytest.mark.parametrize("b", ["v2", "v2.tar", "v2-layout", "both.tar#v2:latest"])
def test_diff_names_layers_and_package_versions(two_images: dict[str, Path], b: str) -> None:
    where = b if b == "v2" else str(two_images["root"] / b)
    d = _diff(two_images, "v1", where)
    layers = d["layers"]
    assert [(c["a"]["name"], c["b"]["name"]) for c in layers["changed"]] == [
        ("addon-1.0", "addon-1.1")]
    assert [x["name"] for x in layers["added"]] == ["extra"]
    assert [x["name"] for x in layers["removed"]] == ["motd"]
    assert layers["unchanged"] == 2
    assert d["packages"]["jars"] == {
        "changed": [{"name": "addon_2.13", "old": "1.0.0", "new": "1.1.0"}],
        "added": [], "removed": []}
    assert all(not any(g.values()) for k, g in d["packages"].items() if k != "jars")
    assert d["size_delta"] == d["b"]["size"] - d["a"]["size"]
    assert d["undescribed_layers"] == []


def test_diff_human_output_same_image_and_errors(two_images: dict[str, Path]) -> None:
    t = two_images
    r = run_cli("diff", "v1", "v2", store=t["store"], project=t["project"])
    assert r.rc == 0, r.err
    assert "layer changed  addon-1.0 -> addon-1.1" in r.out
    assert "layer added    extra" in r.out and "layer removed  motd" in r.out
    assert "jars     addon_2.13  1.0.0 -> 1.1.0" in r.out
    assert "1 layers changed, 1 added, 1 removed, 2 the same" in r.out
    same = _diff(t, "v2", str(t["root"] / "v2.tar"))
    assert same["size_delta"] == 0 and same["layers"]["changed"] == []
    assert same["layers"]["unchanged"] == 4 and same["a"]["digest"] == same["b"]["digest"]
    # Errors: one line, documented codes.
    r = run_cli("diff", "v1", "nope", store=t["store"], project=t["project"])
    assert r.rc == 1 and "nope" in r.err and len(r.err.strip().splitlines()) == 1
    r = run_cli("diff", "v1", t["root"] / "both.tar", store=t["store"], project=t["project"])
    assert r.rc == 3 and "2 images (name one as PATH#NAME" in r.err, r.err
    not_tar = write(t["root"] / "x.tar", "not a tar\n")
    r = run_cli("diff", "v1", not_tar, store=t["store"], project=t["project"])
    assert r.rc == 1 and "not an image archive" in r.err, r.err


SPARK_STORE = TEST_CACHE / "spark-store"
OFFLINE = {"OCIFORGE_INDEX_URL": "http://127.0.0.1:9/simple",
           "OCIFORGE_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"}


@pytest.mark.slow
def test_spark_patch_release_changes_the_distribution_only() -> None:
    """spark-4.1.1 → spark-4.1.4 (the prepared store; scripts/prebuild-spark.sh):
    the distribution layer, pyspark and the jars inside it, nothing else."""
    project = Path(__file__).resolve().parent.parent
    r = run_cli("assemble", "spark-4.1.1", "spark-4.1.4", "--json", store=SPARK_STORE,
                project=project, env=OFFLINE)
    if r.rc != 0:
        pytest.fail(f"assembling from the cache failed ({r.err.strip()}); run "
                    "scripts/prebuild-spark.sh first")
    r = run_cli("diff", "spark-4.1.1", "spark-4.1.4", "--json", store=SPARK_STORE,
                project=project)
    assert r.rc == 0, r.err
    d = r.json()
    assert [(c["a"]["name"], c["b"]["name"]) for c in d["layers"]["changed"]] == [
        ("spark-dist-4.1.1", "spark-dist-4.1.4")]
    assert d["layers"]["added"] == d["layers"]["removed"] == []
    assert d["layers"]["unchanged"] == 4
    p = d["packages"]
    assert p["python"]["changed"] == [{"name": "pyspark", "old": "4.1.1", "new": "4.1.4"}]
    assert not p["python"]["added"] and not p["python"]["removed"]
    assert not any(p["debian"].values()) and not any(p["archives"].values())
    jars = {c["name"]: (c["old"], c["new"]) for c in p["jars"]["changed"]}
    assert jars["spark-core_2.13"] == ("4.1.1", "4.1.4")
    assert all(new != old for old, new in jars.values())
    print(f"\nspark-4.1.1 -> spark-4.1.4: {len(jars)} jars changed, "
          f"{len(p['jars']['added'])} added, {len(p['jars']['removed'])} removed; "
          f"size delta {d['size_delta']} bytes")


def test_catalog_shows_what_changed_since_a_release(two_images: dict[str, Path]) -> None:
    """The release is both.tar (v1 and v2 as first built); then extra.txt changes and
    v2 is rebuilt: the catalog names v2's changed layer, v1 unchanged, hello new."""
    root = two_images["root"]
    store, proj = root / "store-later", root / "proj-later"
    shutil.copytree(two_images["store"], store, symlinks=True)
    shutil.copytree(two_images["project"], proj, symlinks=True)
    (proj / "files" / "extra.txt").write_text("extra, changed\n")
    for args in (["assemble", "v1", "v2", "hello"],
                 ["catalog", "-o", root / "images.md", "--since", root / "both.tar"]):
        r = run_cli(*args, store=store, project=proj, env={"OCIFORGE_MAVEN_SETTINGS": "none"})
        assert r.rc == 0, r.err
    text = (root / "images.md").read_text()
    section = text[text.index("## Changed since `both.tar`"):]
    assert re.search(r"^\| `v2` \| extra \| 0 \| 0 \| 0 \| \+0\.0 MB \|$", section, re.M), section
    assert "Unchanged: `v1`" in section and "New since then: `hello`" in section


@pytest.mark.slow
def test_diff_against_a_registry_reference(two_images: dict[str, Path],
                                           registry: Registry) -> None:
    """B as a registry serves it (docker-registry on 127.0.0.1): pulled into the store
    first (nothing fetched that the store has), then the same diff as from the store."""
    t = two_images
    r = run_cli("push", "v2", "--to", f"{registry.host}/diff/v:2", "--no-sbom",
                store=t["store"], project=t["project"])
    assert r.rc == 0, r.err
    d = _diff(t, "v1", f"{registry.host}/diff/v:2")
    assert d["b"]["name"] == f"{registry.host}/diff/v:2"
    assert d["b"]["digest"] == _diff(t, "v1", "v2")["b"]["digest"]
    assert [(c["a"]["name"], c["b"]["name"]) for c in d["layers"]["changed"]] == [
        ("addon-1.0", "addon-1.1")]
    assert d["packages"]["jars"]["changed"] == [
        {"name": "addon_2.13", "old": "1.0.0", "new": "1.1.0"}]
