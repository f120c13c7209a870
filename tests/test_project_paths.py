"""Recipes read only the project: a path that leaves it (`..`, absolute, or through a
symlink) is refused at load, exit 3, naming the file and the field; nothing is built.
A symlink the `files` source copies *as a symlink* is fine: its target is not read."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from ociforge.errors import RecipeError
from ociforge.recipes import Project
from ociforge.sources.base import BuildContext

from conftest import run_cli, store_is_empty, write

SECRET = b"host secret, not for images\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the project, holding a file the recipes must not reach."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret").write_bytes(SECRET)
    return d


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    write(root / "files" / "ok.txt", "fine\n")
    write(root / "recipes" / "r.yaml", "images:\n  img:\n    layers: [data]\n")
    return root


def _files_layer(project: Path, src: str) -> Path:
    return write(project / "layers" / "data.yaml",
                 f"source:\n  kind: files\n  files: [{{src: '{src}', dest: /data/x}}]\n")


def _refused(project: Path, store: Path, *args: str) -> str:
    """Run the CLI; it must end with exit 3, one line, and an empty store."""
    r = run_cli(*args, store=store, project=project)
    assert r.rc == 3, (r.rc, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert store_is_empty(store)
    return lines[0]


def _layer_tar(store: Path, report: dict[str, object]) -> dict[str, tarfile.TarInfo]:
    image = report["images"][0]  # type: ignore[index]
    digest = image["layers"][0]["digest"]
    blob = (store / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
    assert SECRET not in blob and SECRET not in _uncompressed(blob)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        return {m.name: m for m in tar}


def _uncompressed(blob: bytes) -> bytes:
    import gzip
    return gzip.decompress(blob)


@pytest.mark.parametrize("src,why", [
    ("../outside/secret", "'../outside/secret' leads outside the project directory"),
    ("files/../../outside/secret",
     "'files/../../outside/secret' leads outside the project directory"),
])
def test_files_src_climbing_out_is_refused(tmp_path: Path, project: Path, outside: Path,
                                           src: str, why: str) -> None:
    layer = _files_layer(project, src)
    line = _refused(project, tmp_path / "s", "assemble", "img")
    assert line.endswith(f"{layer}: field 'source.files.files[0].src': {why}")


def test_absolute_files_src_is_refused(tmp_path: Path, project: Path, outside: Path) -> None:
    src = str(outside / "secret")
    layer = _files_layer(project, src)
    line = _refused(project, tmp_path / "s", "assemble", "img")
    assert line.endswith(f"{layer}: field 'source.files.files[0].src': {src!r} is an "
                         "absolute path; recipe paths are relative to the project directory")


def test_src_through_a_symlinked_directory_is_refused(tmp_path: Path, project: Path,
                                                      outside: Path) -> None:
    (project / "files" / "elsewhere").symlink_to(outside)
    layer = _files_layer(project, "files/elsewhere/secret")
    line = _refused(project, tmp_path / "s", "assemble", "img")
    assert line.endswith(f"{layer}: field 'source.files.files[0].src': "
                         "'files/elsewhere/secret' leads outside the project directory "
                         f"through a symlink (to {outside.resolve()}/secret)")


def test_images_ls_refuses_it_too(tmp_path: Path, project: Path, outside: Path) -> None:
    layer = _files_layer(project, "../outside/secret")
    line = _refused(project, tmp_path / "s", "images", "ls")
    assert f"{layer}: field 'source.files.files[0].src'" in line


def test_symlinks_are_copied_as_symlinks_not_followed(tmp_path: Path, project: Path,
                                                      outside: Path) -> None:
    """A symlink as `src`, or inside a directory `src`, becomes a symlink in the image:
    allowed, and the file it points to is not read."""
    (project / "files" / "link").symlink_to(outside / "secret")
    (project / "files" / "dirlink").symlink_to(outside)
    write(project / "layers" / "data.yaml", """\
        source:
          kind: files
          files:
            - {src: files/link, dest: /data/link}
            - {src: files, dest: /data/tree}
        """)
    store = tmp_path / "s"
    r = run_cli("assemble", "img", "--json", store=store, project=project)
    assert r.rc == 0, r.err
    members = _layer_tar(store, r.json())
    assert members["data/link"].issym()
    assert members["data/link"].linkname == str(outside / "secret")
    assert members["data/tree/link"].issym() and members["data/tree/dirlink"].issym()
    assert "data/tree/dirlink/secret" not in members


# -- every other path a recipe reads from the checkout ---------------------------------

PIN = "'" + "0" * 64 + "'"
MAVEN = "kind: maven, artifacts: ['g:a:1'], repositories: ['http://127.0.0.1:9/m2']"
LAYERS = {
    "archive url": ("source: {kind: archive, url: ../outside/a.tgz, sha256: " + PIN + "}\n",
                    "source.archive.url", "'../outside/a.tgz' leads outside"),
    "archive url, absolute": (
        "source: {kind: archive, url: /etc/passwd, sha256: " + PIN + "}\n",
        "source.archive.url", "'/etc/passwd' is an absolute path"),
    "builder context": ("source: {kind: builder, context: ../outside}\n",
                        "source.builder.context", "'../outside' leads outside"),
    "builder dockerfile": ("source: {kind: builder, context: files, dockerfile: ../../x}\n",
                           "source.builder.dockerfile", "'files/../../x' leads outside"),
    "pip lock": ("source: {kind: pip, requirements: [a==1], lock: ../outside/p.lock}\n",
                 "source.pip.lock", "'../outside/p.lock' leads outside"),
    "pip on_top_of": ("source: {kind: pip, requirements: [a==1], lock: p.lock, "
                      "on_top_of: [ok.lock, /etc/passwd]}\n",
                      "source.pip.on_top_of[1]", "'/etc/passwd' is an absolute path"),
    "maven lock": ("source: {" + MAVEN + ", lock: ../outside/m.lock}\n",
                   "source.maven.lock", "'../outside/m.lock' leads outside"),
}


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_every_checkout_path_stays_in_the_project(tmp_path: Path, project: Path,
                                                  outside: Path, case: str) -> None:
    text, field, why = LAYERS[case]
    layer = write(project / "layers" / "data.yaml", text)
    line = _refused(project, tmp_path / "s", "images", "ls")
    assert f"{layer}: field '{field}': {why}" in line


def test_lock_file_symlinked_outside_is_neither_read_nor_written(
        tmp_path: Path, project: Path, outside: Path) -> None:
    (project / "locks").symlink_to(outside)
    layer = write(project / "layers" / "data.yaml",
                  "source: {" + MAVEN + ", lock: locks/m.lock}\n")
    line = _refused(project, tmp_path / "s", "lock", "data")
    assert line.endswith(f"{layer}: field 'source.maven.lock': 'locks/m.lock' leads "
                         f"outside the project directory through a symlink "
                         f"(to {outside.resolve()}/m.lock)")
    assert not (outside / "m.lock").exists()


def test_local_archive_symlinked_outside_is_refused(tmp_path: Path, project: Path,
                                                   outside: Path) -> None:
    (project / "dist.tgz").symlink_to(outside / "secret")
    layer = write(project / "layers" / "data.yaml",
                  f"source: {{kind: archive, url: dist.tgz, sha256: {PIN}}}\n")
    line = _refused(project, tmp_path / "s", "assemble", "img")
    assert f"{layer}: field 'source.archive.url': 'dist.tgz' leads outside" in line


def test_the_source_checks_again_as_it_reads(tmp_path: Path, project: Path,
                                             outside: Path) -> None:
    """A directory swapped for a symlink after the project loaded: the source's own
    read of the checkout refuses it (the load-time check is not the only one)."""
    _files_layer(project, "files/sub/x")
    write(project / "files" / "sub" / "x", "fine\n")
    proj = Project.load(project)
    (project / "files" / "sub" / "x").unlink()
    (project / "files" / "sub").rmdir()
    (project / "files" / "sub").symlink_to(outside)
    (outside / "x").write_bytes(SECRET)
    source = proj.layer("data").all_sources()[0]
    with pytest.raises(RecipeError, match="'files/sub/x' leads outside the project "
                                          "directory through a symlink"):
        source.key_material(BuildContext(project_root=proj.root))


def test_the_repository_project_keeps_loading(tmp_path: Path) -> None:
    """Its paths (docker/…, layers/locks/…) are all inside it."""
    root = Path(__file__).resolve().parent.parent
    r = run_cli("images", "ls", "--json", store=tmp_path / "s", project=root)
    assert r.rc == 0, r.err
    assert len(json.loads(r.out)) > 20
    assert os.path.isdir(root / "layers")
