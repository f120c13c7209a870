"""No credential is printed: URLs with `user:password@` in sources, mirrors and
indexes, and image references with userinfo, never show the password on stderr, in
`--json` output, in layer records, in the SBOM, or in build logs."""

from __future__ import annotations

import io
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_pip_debian_sources import _debian_project, make_apt_repo

from ociforge.errors import BuildError, FetchError, IntegrityError
from ociforge.net.redact import redact, redact_reference, redact_text
from ociforge.registry.reference import ReferenceError, parse

from conftest import Result, busybox_deb, need_tool, run_cli, sha256, write
from httpserver import busy, serve
from registry_images import assemble, hello_with_variant
from registry_server import Registry, start_registry

SECRET = "s3cret-Pa55"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIFORGE_CACHE", str(tmp_path / "cache"))


def assert_secret_free(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text


def store_text(store: Path) -> str:
    """Everything ociforge wrote in the store that is text: records, index, configs."""
    out = []
    for path in store.rglob("*"):
        if path.is_file() and path.stat().st_size < 1 << 20:
            out.append(path.read_bytes().decode("utf-8", "replace"))
    return "".join(out)


def with_secret(url: str) -> str:
    return url.replace("http://", f"http://ci:{SECRET}@")


# -- the functions ------------------------------------------------------------------------


def test_one_rule_for_urls_references_and_text() -> None:
    assert redact(f"http://ci:{SECRET}@127.0.0.1:badport/x") == "http://127.0.0.1:badport/x"
    assert redact(f"https://ci:p@ss:{SECRET}@Mirror.Example/x") == "https://Mirror.Example/x"
    assert redact_reference(f"ci:{SECRET}@127.0.0.1:5000/repo:v1") == "127.0.0.1:5000/repo:v1"
    assert redact_reference(f"docker://{SECRET}@ghcr.io/o/r") == "docker://ghcr.io/o/r"
    digest = "sha256:" + "a" * 64
    assert redact_reference(f"ghcr.io/o/r@{digest}") == f"ghcr.io/o/r@{digest}"
    assert redact_reference(f"u:{SECRET}@ghcr.io/o/r@{digest}") == f"ghcr.io/o/r@{digest}"
    assert redact_text(f"pip: GET http://ci:{SECRET}@h/simple/x/ and ftp://{SECRET}@f/y") \
        == "pip: GET http://h/simple/x/ and ftp://f/y"
    # Every error message is cleaned when the error is made, whoever made it.
    for err in (BuildError(f"boom: Failed to parse http://ci:{SECRET}@h:x/y"),
                FetchError(f"GET http://ci:{SECRET}@h/y", url=f"http://ci:{SECRET}@h/y"),
                IntegrityError(f"mismatch for http://ci:{SECRET}@h/y")):
        assert_secret_free(str(err), repr(err), str(getattr(err, "url", "")))


@pytest.mark.parametrize("ref", [f"ci:{SECRET}@127.0.0.1:5000/repo:v1",
                                 f"ci:{SECRET}@localhost/repo",
                                 f"docker://ci:{SECRET}@registry.example/o/r",
                                 f"ci:{SECRET}@registry.example:443",
                                 f"{SECRET}@ghcr.io/o/r@sha256:{'a' * 64}"])
def test_reference_with_userinfo_is_refused_without_echo(ref: str) -> None:
    with pytest.raises(ReferenceError) as e:
        parse(ref)
    assert "credentials do not belong in the reference" in str(e.value)
    assert "REGISTRY_AUTH_FILE" in str(e.value)
    assert_secret_free(str(e.value))


def test_reference_digest_typo_is_not_taken_for_credentials() -> None:
    with pytest.raises(ReferenceError) as e:
        parse("ubuntu@latest")
    assert "invalid digest 'latest'" in str(e.value)


# -- archive, pypi: errors and records ----------------------------------------------------


def _tgz(path: Path, text: bytes = b"hi\n") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        ti = tarfile.TarInfo("dist/README")
        ti.size = len(text)
        tar.addfile(ti, io.BytesIO(text))
    return sha256(path)


def _archive_project(root: Path, url: str, pin: str) -> Path:
    write(root / "layers" / "dist.yaml",
          f'source: {{kind: archive, url: "{url}", sha256: "{pin}"}}\n')
    write(root / "recipes" / "r.yaml", "images:\n  img:\n    layers: [dist]\n")
    return root


@pytest.mark.parametrize("case,rc", [("404", 6), ("503", 6), ("pin", 4), ("refused", 6),
                                     ("bad-port", 7), ("ftp", 3)])
def test_archive_url_credentials_stay_out_of_errors(tmp_path: Path, case: str,
                                                    rc: int) -> None:
    www = tmp_path / "www"
    sha = _tgz(www / "dist.tgz")
    handler = busy(None, retry_after="0") if case == "503" else None
    with serve(www, *([handler] if handler else [])) as url:
        target = {"404": f"{url}/missing.tgz", "503": f"{url}/dist.tgz",
                  "pin": f"{url}/dist.tgz", "refused": "http://127.0.0.1:9/dist.tgz",
                  "bad-port": "http://127.0.0.1:port/dist.tgz",
                  "ftp": "ftp://127.0.0.1/dist.tgz"}[case]
        target = target.replace("ftp://", f"ftp://ci:{SECRET}@")
        pin = "0" * 64 if case == "pin" else sha
        proj = _archive_project(tmp_path / "p", with_secret(target), pin)
        r = run_cli("assemble", "img", "--json", store=tmp_path / "s", project=proj)
    assert r.rc == rc, r.err
    assert r.json()["exit_code"] == rc
    assert_secret_free(r.out, r.err)
    if case != "ftp":  # the URL is named, without its credentials
        assert redact(target).split("/")[-1] in r.err or case == "bad-port"


def test_archive_and_pypi_records_and_sbom_hold_no_credentials(tmp_path: Path) -> None:
    www = tmp_path / "www"
    sha = _tgz(www / "dist.tgz")
    sdist = _tgz(www / "files" / "pyspark-9.9.9.tar.gz", b"another layer\n")
    (www / "simple" / "pyspark").mkdir(parents=True)
    (www / "simple" / "pyspark" / "index.html").write_text(
        '<a href="../../files/pyspark-9.9.9.tar.gz">pyspark-9.9.9.tar.gz</a>')
    store = tmp_path / "s"
    with serve(www) as url:
        proj = _archive_project(tmp_path / "p", with_secret(f"{url}/dist.tgz"), sha)
        write(proj / "layers" / "sdist.yaml", f"""\
            source: {{kind: pypi, package: pyspark, version: 9.9.9, sha256: "{sdist}",
                      filename: pyspark-9.9.9.tar.gz, index_url: "{with_secret(url)}/simple"}}
            """)
        write(proj / "recipes" / "r.yaml", "images:\n  img:\n    layers: [dist, sdist]\n")
        r = run_cli("assemble", "img", "--json", store=store, project=proj)
        assert r.rc == 0, r.err
        # A pypi layer whose file is missing: the index is named without credentials.
        write(proj / "layers" / "sdist.yaml", f"""\
            source: {{kind: pypi, package: pyspark, version: 9.9.8, sha256: "{'1' * 64}",
                      filename: pyspark-9.9.8.tar.gz, index_url: "{with_secret(url)}/simple"}}
            """)
        missing = run_cli("assemble", "img", "--json", store=store, project=proj)
    assert missing.rc == 6 and "pyspark-9.9.8.tar.gz" in missing.err
    layers = run_cli("layers", "ls", "--json", store=store)
    sbom = run_cli("sbom", "img", store=store)
    cdx = run_cli("sbom", "img", "--format", "cyclonedx", store=store)
    assert sbom.rc == 0 and cdx.rc == 0 and layers.rc == 0
    assert "127.0.0.1" in layers.out and "dist.tgz" in sbom.out
    assert_secret_free(r.out, r.err, missing.out, missing.err, layers.out, sbom.out, cdx.out,
                       store_text(store))


# -- debian: the mirror -------------------------------------------------------------------


def test_debian_mirror_credentials_stay_out(tmp_path: Path) -> None:
    need_tool("mmdebstrap")
    make_apt_repo(tmp_path / "repo", [busybox_deb()])
    store = tmp_path / "s"
    with serve(tmp_path / "repo") as url:
        proj = _debian_project(tmp_path / "p", with_secret(url), ["busybox-static"])
        locked = run_cli("lock", "--json", store=store, project=proj)
        assert locked.rc == 0, locked.err
        ok = run_cli("assemble", "base", "--json", store=store, project=proj)
        assert ok.rc == 0, ok.err
        bad = _debian_project(tmp_path / "q", with_secret(url), ["no-such-pkg"])
        missing = run_cli("lock", "--json", store=store, project=bad)
    assert missing.rc == 7 and "no-such-pkg not found" in missing.err
    assert url in missing.err  # the mirror is named, without its credentials
    layers = run_cli("layers", "ls", "--json", store=store)
    sbom = run_cli("sbom", "base", store=store)
    assert url in layers.out
    assert_secret_free(locked.out, locked.err, ok.out, ok.err, missing.out, missing.err,
                       layers.out, sbom.out, store_text(store),
                       (proj / "layers" / "locks" / "base.lock").read_text())


# -- builder: the build log ---------------------------------------------------------------

FAKE_DOCKER = """\
#!{python}
# A stand-in for the docker CLI: says what it was asked (as a verbose engine does),
# fails the build.
import sys
print("docker", " ".join(sys.argv[1:]))
sys.exit(1)
"""


def test_builder_log_hides_pass_env_secrets(tmp_path: Path) -> None:
    proj = tmp_path / "p"
    write(proj / "ctx" / "Dockerfile", "FROM scratch\n")
    write(proj / "layers" / "built.yaml", """\
        source:
          kind: builder
          context: ctx
          engine: docker
          build_args: {MIRROR: "http://ci:SECRET@mirror.example/maven2"}
          pass_env: [API_TOKEN, MAVEN_MIRROR]
        """.replace("SECRET", SECRET))
    write(proj / "recipes" / "r.yaml", "images:\n  built:\n    layers: [built]\n")
    bindir = tmp_path / "bin"
    write(bindir / "docker", FAKE_DOCKER.format(python=sys.executable), 0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "API_TOKEN": f"tok-{SECRET}",
           "MAVEN_MIRROR": f"https://ci:{SECRET}x@nexus.example/maven2"}
    r = run_cli("assemble", "built", "--json", store=tmp_path / "s", project=proj, env=env)
    assert r.rc == 7, r.err
    logs = list((tmp_path / "cache" / "logs").glob("builder-*.log"))
    assert len(logs) == 1
    log = logs[0].read_text()
    assert "--build-arg" in log and "nexus.example/maven2" in log
    assert_secret_free(r.out, r.err, log)


# -- push and pull: references ------------------------------------------------------------


@pytest.fixture(scope="module")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"), htpasswd={"ci": SECRET})
    yield reg
    reg.stop()


@pytest.mark.slow
def test_push_and_pull_refuse_credentials_in_the_reference(htpasswd_registry: Registry,
                                                           tmp_path: Path) -> None:
    store = tmp_path / "store"
    assemble(hello_with_variant(tmp_path / "proj"), store, "hello")
    reg = htpasswd_registry
    results: list[Result] = [
        run_cli("push", "hello", "--to", f"ci:{SECRET}@{reg.host}/team/hello:v1", "--json",
                store=store),
        run_cli("push", "hello", "--to", f"ci:{SECRET}@{reg.host}/team/hello", store=store),
        run_cli("pull", f"ci:{SECRET}@{reg.host}/team/hello:v1", "--json", store=store),
        run_cli("pull", f"docker://ci:{SECRET}@{reg.host}/team/hello:v1", store=store),
    ]
    for r in results:
        assert r.rc == 2, r.err
        assert "credentials do not belong in the reference" in r.err
        assert f"{reg.host}/team/hello" in r.err  # what it was about, without the secret
        assert_secret_free(r.out, r.err)
    assert results[0].json()["exit_code"] == 2
    assert reg.access_log() == []  # refused before anything was sent


# -- maven: repositories -------------------------------------------------------------------


@pytest.mark.parametrize("repo", [f"ci:{SECRET}@nexus.example/maven2",
                                  f"ftp://ci:{SECRET}@nexus.example/maven2"])
def test_maven_repository_that_is_no_url_is_named_without_credentials(tmp_path: Path,
                                                                      repo: str) -> None:
    write(tmp_path / "p" / "layers" / "jars.yaml",
          "source: {kind: maven, lock: maven.lock, artifacts: [\"a.b:c:1.0\"]}\n")
    write(tmp_path / "p" / "recipes" / "r.yaml", "images:\n  img:\n    layers: [jars]\n")
    r = run_cli("lock", "--json", store=tmp_path / "s", project=tmp_path / "p",
                env={"OCIFORGE_MAVEN_REPOS": repo, "OCIFORGE_MAVEN_SETTINGS": "none"})
    assert r.rc == 3, r.err
    assert "nexus.example/maven2" in r.err and "is not an http(s) URL" in r.err
    assert_secret_free(r.out, r.err)
