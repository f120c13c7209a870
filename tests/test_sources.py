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


def _apache_tarball(path: Path, version: str) -> tuple[str, str]:
    """A tarball laid out like Apache's spark-X-bin-hadoop3.tgz; (sha256, sha512)."""
    top = f"spark-{version}-bin-hadoop3"
    members = [f"{top}/jars/spark-core_2.13-{version}.jar", f"{top}/bin/spark-submit",
               f"{top}/bin/spark-submit.cmd", f"{top}/sbin/start-connect-server.sh",
               f"{top}/python/lib/py4j-0.10.9.9-src.zip", f"{top}/conf/log4j2.properties.template",
               f"{top}/kubernetes/dockerfiles/spark/entrypoint.sh", f"{top}/examples/jars/x.jar",
               f"{top}/RELEASE"]
    with tarfile.open(path, "w:gz") as tar:
        for name in members:
            data = name.encode()
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o755 if "/bin/" in name else 0o644
            tar.addfile(ti, io.BytesIO(data))
    raw = path.read_bytes()
    return hashlib.sha256(raw).hexdigest(), hashlib.sha512(raw).hexdigest()


def test_apache_binary_tarball_as_alternative_source(tmp_path: Path) -> None:
    """The Apache tarball by URL, pinned by sha512 only, swapped in for the sdist layer."""
    www = tmp_path / "www" / "dist" / "spark" / "spark-9.9.9"
    www.mkdir(parents=True)
    _, sha512 = _apache_tarball(www / "spark-9.9.9-bin-hadoop3.tgz", "9.9.9")
    proj = tmp_path / "p"
    write(proj / "layers" / "dist.yaml",
          "source: {kind: files, symlinks: [{path: /x, target: y}]}\n")
    with serve(tmp_path / "www") as url:
        write(proj / "layers" / "dist-apache.yaml", f"""\
            source:
              kind: archive
              url: {url}/dist/spark/spark-9.9.9/spark-9.9.9-bin-hadoop3.tgz
              sha512: {sha512}
              paths:
                - from: spark-9.9.9-bin-hadoop3
                  to: /opt/spark
                  exclude: ["examples/*", "bin/*.cmd"]
            """)
        write(proj / "recipes" / "r.yaml", "images:\n  spark:\n    layers: [dist]\n")
        r = run_cli("assemble", "spark", "--swap-layer", "dist=dist-apache", "--json",
                    store=tmp_path / "s", project=proj)
    assert r.rc == 0, r.err
    assert _layer_files(tmp_path / "s", r.json()) == [
        "opt/spark/RELEASE", "opt/spark/bin/spark-submit",
        "opt/spark/conf/log4j2.properties.template",
        "opt/spark/jars/spark-core_2.13-9.9.9.jar",
        "opt/spark/kubernetes/dockerfiles/spark/entrypoint.sh",
        "opt/spark/python/lib/py4j-0.10.9.9-src.zip", "opt/spark/sbin/start-connect-server.sh"]
    bad = run_cli("assemble", "spark", "--swap-layer", "dist=nope", store=tmp_path / "s",
                  project=proj)
    assert bad.rc == 3 and "unknown layer 'nope'" in bad.err
