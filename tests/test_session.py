"""The build session, the layer builder and image assembly, through their Python API:
locks before keys before builds, base images of `builder` layers under the run's own
options, and what one layer build leaves behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from project_copy import copy_project

from ociforge.assemble import assemble_image
from ociforge.errors import FetchError, LockError, RecipeError
from ociforge.layers import LayerBuilder, input_key
from ociforge.recipes import Project
from ociforge.session import BuildSession, SessionOptions
from ociforge.sources.base import BuildContext
from ociforge.store import Store

from conftest import make_hello_project, store_is_empty, write

BUILDER = "FROM scratch\nARG BASE\nCOPY a.txt /a.txt\n"


def _session(root: Path, **options: object) -> BuildSession:
    return BuildSession(Store(root / "store"), Project.load(root / "proj"),
                        SessionOptions(sde=0, **options))  # type: ignore[arg-type]


def _hello(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    return make_hello_project(proj)


def test_assemble_builds_each_layer_once_then_reuses(tmp_path: Path) -> None:
    _hello(tmp_path)
    first = _session(tmp_path)
    (image,) = first.assemble(first.select(["hello"]))
    assert first.stats.built == ["busybox", "hello"] and first.stats.reused == []
    again = _session(tmp_path)
    (same,) = again.assemble(["hello"])
    assert again.stats.built == [] and again.stats.reused == ["busybox", "hello"]
    assert same.manifest.digest == image.manifest.digest
    assert Store(tmp_path / "store").tags()["hello"]["digest"] == image.manifest.digest
    # Staging directories of the builds are gone; only blobs, records and the index stay.
    assert list((tmp_path / "store" / "ociforge" / "tmp").iterdir()) == []


def test_a_bad_lock_fails_before_any_layer_is_built(tmp_path: Path) -> None:
    """Locks are checked for every layer of the run before any key or build: a lock
    that cannot be read, or is missing, stops the run with nothing built, even for the
    layers listed before it. Only `ociforge lock` (`BuildSession.lock`) resolves; when
    the repository is unreachable it writes nothing."""
    proj = _hello(tmp_path)
    write(proj / "layers" / "jars.yaml", """\
        source:
          kind: maven
          lock: layers/locks/jars.lock
          artifacts: [org.example:tool:1.0]
          repositories: [http://127.0.0.1:9/m2]
        """)
    write(proj / "recipes" / "more.yaml", "images:\n  two: {layers: [busybox, hello, jars]}\n")
    write(proj / "layers" / "locks" / "jars.lock", "org.example:tool:1.0 not-a-pin\n")
    session = _session(tmp_path)
    with pytest.raises(RecipeError, match=r"jars\.lock:1: not a lock line"):
        session.assemble(session.select(["two"]))
    (proj / "layers" / "locks" / "jars.lock").unlink()
    with pytest.raises(LockError, match=r"layer jars: layers/locks/jars\.lock is missing: "
                                        r"run `ociforge lock jars`"):
        session.assemble(session.select(["two"]))
    with pytest.raises(FetchError, match=r"org\.example:tool:1\.0: no repository could be reached"):
        session.lock(["jars"])
    assert session.stats.built == [] and store_is_empty(tmp_path / "store")
    assert not (proj / "layers" / "locks" / "jars.lock").exists()


def test_swap_and_features_reach_a_builders_base_image(tmp_path: Path) -> None:
    """A `builder` layer's base image is assembled by the same session, so the run's
    --swap-layer and --with apply to it too (its digest is in the builder's key)."""
    proj = tmp_path / "proj"
    write(proj / "ctx" / "Dockerfile", BUILDER)
    write(proj / "ctx" / "a.txt", "a\n")
    write(proj / "files" / "one", "one\n")
    write(proj / "files" / "two", "two\n")
    write(proj / "files" / "extra", "extra\n")
    for name in ("one", "two", "extra"):
        write(proj / "layers" / f"{name}.yaml",
              f"source: {{kind: files, files: [{{src: files/{name}, dest: /{name}}}]}}\n")
    write(proj / "layers" / "built.yaml",
          "source: {kind: builder, context: ctx, base_images: {BASE: jdk}}\n")
    write(proj / "recipes" / "r.yaml", """\
        features:
          extra: {layers: [extra]}
        images:
          jdk: {layers: [one]}
          app: {layers: [built]}
        """)

    def base_layers(session: BuildSession) -> list[str]:
        store = session.store
        name = next(n for n in store.tags() if n.startswith("jdk"))
        manifest = store.read_json(store.tags()[name]["digest"])
        config = store.read_json(manifest["config"]["digest"])
        return [h["created_by"].split()[2] for h in config["history"]]

    plain = _session(tmp_path)
    key = plain.keys(["built"])["built"]
    assert base_layers(plain) == ["one"]
    assert plain.stats.built == ["one"]  # the base was assembled; the builder not run

    swapped = BuildSession(Store(tmp_path / "s2"), Project.load(proj),
                           SessionOptions(sde=0, swaps=(("one", "two"),)))
    assert swapped.keys(["built"])["built"] != key
    assert base_layers(swapped) == ["two"]

    featured = BuildSession(Store(tmp_path / "s3"), Project.load(proj),
                            SessionOptions(sde=0, features=("extra",)))
    assert featured.select(["app"]) == ["app-extra"]
    assert featured.keys(["built"])["built"] != key
    assert "jdk-extra" in featured.store.tags() and base_layers(featured) == ["one", "extra"]


def test_a_base_image_that_needs_itself_is_refused(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    write(proj / "ctx" / "Dockerfile", BUILDER)
    write(proj / "layers" / "built.yaml",
          "source: {kind: builder, context: ctx, base_images: {BASE: loop}}\n")
    write(proj / "recipes" / "r.yaml", "images:\n  loop: {layers: [built]}\n")
    with pytest.raises(RecipeError, match=r"depends on itself \(loop -> loop\)"):
        _session(tmp_path).keys(["built"])


def _builder(tmp_path: Path) -> tuple[Project, Store, BuildContext, LayerBuilder]:
    """The hello project and a layer builder over a fresh store, without a session."""
    proj = _hello(tmp_path)
    store = Store(tmp_path / "store")
    ctx = BuildContext(project_root=proj, sde=0, scratch_root=store.tmp_dir)
    return Project.load(proj), store, ctx, LayerBuilder(store, ctx)


def test_layer_builder_builds_transcodes_and_cleans_up(tmp_path: Path) -> None:
    project, store, ctx, builder = _builder(tmp_path)
    layer = project.layer("hello")
    key = input_key(layer, ctx)
    gz = builder.ensure("hello", layer, key, "gzip")
    assert builder.stats.built == ["hello"] and gz.input_key == key
    assert gz.provenance["sources"][0]["files"][0]["dest"] == "/usr/local/bin/hello"
    zst = builder.ensure("hello", layer, key, "zstd")  # recompressed, not rebuilt
    assert builder.stats.transcoded == ["hello"] and zst.diff_id == gz.diff_id
    assert set(zst.blobs) == {"gzip", "zstd"}
    assert builder.ensure("hello", layer, key, "zstd") == zst
    assert builder.stats.reused == ["hello"]
    assert list(store.tmp_dir.iterdir()) == []


def test_assemble_image_is_a_function_of_records_and_recipe(tmp_path: Path) -> None:
    project, store, ctx, builder = _builder(tmp_path)
    image = project.resolve("hello")
    records = [builder.ensure(n, project.layer(n), input_key(project.layer(n), ctx), "gzip")
               for n in image.layers]
    one = assemble_image(store, "hello", image, records, 1_700_000_000, "gzip")
    two = assemble_image(store, "hello", image, records, 1_700_000_000, "gzip")
    assert one.manifest == two.manifest
    config = store.read_json(one.config.digest)
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert config["rootfs"]["diff_ids"] == [r.diff_id for r in records]
    assert config["config"]["User"] == "185:185"
    manifest = json.loads(store.read_bytes(one.manifest.digest))
    assert [d["digest"] for d in manifest["layers"]] == [
        r.blob("gzip").digest for r in records]
    later = assemble_image(store, "hello", image, records, 1_700_000_001, "gzip")
    assert later.manifest.digest != one.manifest.digest
    assert store.tags()["hello"]["digest"] == later.manifest.digest


# -- every key of the matrix, with the network and subprocesses gone -----------------------


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_matrix_keys_are_pure_once_locks_exist(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`key_material` is a pure function: with the committed locks, every key of every
    image of the matrix is computed with sockets and process creation failing, and no
    file of the project changes (a copy of the project)."""
    proj = copy_project(tmp_path / "proj", "tools.yaml")
    monkeypatch.setenv("OCIFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OCIFORGE_MAVEN_SETTINGS", "none")
    monkeypatch.delenv("OCIFORGE_MAVEN_REPOS", raising=False)
    locking = BuildSession(Store(tmp_path / "store"), Project.load(proj),
                           SessionOptions(sde=0))
    images = locking.select([], all_=True)
    assert len(images) >= 30
    layers = locking.layers_of(images)
    assert locking.check_locks(layers, unclaimed_pins=True)  # nothing resolved
    before = _snapshot(proj)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("key_material used the network or started a process")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(os, "posix_spawn", refuse)
    offline = BuildSession(Store(tmp_path / "store"), Project.load(proj),
                           SessionOptions(sde=0, index_url="http://127.0.0.1:9/simple"))
    keys = offline.keys(offline.layers_of(offline.select([], all_=True)))
    assert set(keys) == set(layers)
    # Only layers that hold the same jar share a key (4.1.0 borrows 4.1.1's
    # spark-hadoop-cloud jar and 3.5.9 3.5.8's, which Maven Central lacks).
    assert keys["hadoop-cloud-4.1.0"] == keys["hadoop-cloud-4.1.1"]
    assert keys["hadoop-cloud-3.5.9"] == keys["hadoop-cloud-3.5.8"]
    assert len(set(keys.values())) == len(layers) - 2
    assert offline.stats.built == [] and _snapshot(proj) == before
    # The same keys as the run that wrote the locks would have computed.
    assert keys == locking.keys(layers)
