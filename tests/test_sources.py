"""Layer sources against real HTTP on loopback: archive URLs and a PyPI simple index."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from conftest import run_cli, store_is_empty, write
from httpserver import serve


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIFORGE_CACHE", str(tmp_path / "cache"))


def _sdist(path: Path) -> str:
    """A stand-in sdist laid out like pyspark's: name-version/deps/{jars,bin}."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [("pyspark-9.9.9/deps/jars/spark-core.jar", b"jar bytes"),
                           ("pyspark-9.9.9/deps/bin/spark-submit", b"#!/bin/bash\n"),
                           ("pyspark-9.9.9/setup.py", b"")]:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o755 if "bin/" in name else 0o644
            tar.addfile(ti, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _project(root: Path, source: str) -> Path:
    write(root / "layers" / "dist.yaml", source)
    write(root / "recipes" / "r.yaml", "images:\n  spark:\n    layers: [dist]\n")
    return root


def _layer_files(store: Path, result_json: dict) -> list[str]:
    digest = result_json["images"][0]["layers"][0]["digest"]
    blob = store / "blobs" / "sha256" / digest.split(":")[1]
    with tarfile.open(blob) as tar:
        return [m.name for m in tar if m.isfile()]


def test_archive_from_url_with_mapping(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    sha = _sdist(www / "spark.tgz")
    with serve(www) as url:
        proj = _project(tmp_path / "p", f"""\
            source:
              kind: archive
              url: {url}/spark.tgz
              sha256: {sha}
              paths:
                - {{from: pyspark-9.9.9/deps/jars, to: /opt/spark/jars}}
                - {{from: pyspark-9.9.9/deps/bin, to: /opt/spark/bin}}
            """)
        r = run_cli("assemble", "spark", "--json", store=tmp_path / "s", project=proj)
    assert r.rc == 0, r.err
    assert _layer_files(tmp_path / "s", r.json()) == ["opt/spark/bin/spark-submit",
                                                      "opt/spark/jars/spark-core.jar"]


def test_wrong_pin_on_url_fails_and_caches_nothing(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    _sdist(www / "spark.tgz")
    with serve(www) as url:
        proj = _project(tmp_path / "p", f"""\
            source: {{kind: archive, url: "{url}/spark.tgz", sha256: "{'0' * 64}"}}
            """)
        r = run_cli("assemble", "spark", store=tmp_path / "s", project=proj)
    assert r.rc == 4
    assert "sha256 mismatch" in r.err and "spark.tgz" in r.err
    assert store_is_empty(tmp_path / "s")
    assert not list((tmp_path / "cache" / "downloads" / "sha256").iterdir())


def test_unreachable_url_is_a_network_error(tmp_path: Path) -> None:
    proj = _project(tmp_path / "p", f"""\
        source: {{kind: archive, url: "http://127.0.0.1:9/x.tgz", sha256: "{'0' * 64}"}}
        """)
    r = run_cli("assemble", "spark", store=tmp_path / "s", project=proj)
    assert r.rc == 6 and "127.0.0.1:9/x.tgz" in r.err


def _index(www: Path, sha: str) -> None:
    """A PEP 503 simple index page, as pip mirrors (devpi, Artifactory) serve it."""
    page = www / "simple" / "pyspark"
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        f'<html><body><a href="../../files/pyspark-9.9.9.tar.gz#sha256={sha}">'
        "pyspark-9.9.9.tar.gz</a></body></html>")


@pytest.mark.parametrize("pin_ok", [True, False])
def test_pypi_source_from_simple_index(tmp_path: Path, pin_ok: bool) -> None:
    www = tmp_path / "www"
    (www / "files").mkdir(parents=True)
    sha = _sdist(www / "files" / "pyspark-9.9.9.tar.gz")
    _index(www, sha)
    pin = sha if pin_ok else "f" * 64
    with serve(www) as url:
        proj = _project(tmp_path / "p", f"""\
            source:
              kind: pypi
              package: pyspark
              version: 9.9.9
              filename: pyspark-9.9.9.tar.gz
              sha256: {pin}
              paths: [{{from: pyspark-9.9.9/deps/jars, to: /opt/spark/jars}}]
            """)
        r = run_cli("--index-url", f"{url}/simple", "assemble", "spark", "--json",
                    store=tmp_path / "s", project=proj)
    if pin_ok:
        assert r.rc == 0, r.err
        assert _layer_files(tmp_path / "s", r.json()) == ["opt/spark/jars/spark-core.jar"]
        # Provenance is recorded for SBOMs.
        layers = run_cli("layers", "ls", "--json", store=tmp_path / "s").json()
        prov = layers[0]["provenance"]["sources"][0]
        assert prov["package"] == "pyspark" and prov["sha256"] == sha
    else:
        assert r.rc == 4 and "sha256 mismatch for pyspark-9.9.9.tar.gz" in r.err
        assert store_is_empty(tmp_path / "s")


def test_pypi_unknown_file(tmp_path: Path) -> None:
    www = tmp_path / "www"
    (www / "files").mkdir(parents=True)
    sha = _sdist(www / "files" / "pyspark-9.9.9.tar.gz")
    _index(www, sha)
    with serve(www) as url:
        proj = _project(tmp_path / "p", f"""\
            source: {{kind: pypi, package: pyspark, version: 9.9.8,
                      filename: pyspark-9.9.8.tar.gz, sha256: "{sha}"}}
            """)
        r = run_cli("--index-url", f"{url}/simple", "assemble", "spark",
                    store=tmp_path / "s", project=proj)
    assert r.rc == 6 and "pyspark-9.9.8.tar.gz is not among the files" in r.err
