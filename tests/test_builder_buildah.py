"""Real builds with buildah: a Dockerfile whose base is an image ociforge assembled
(the busybox `hello` image, handed to buildah as an OCI archive) runs a real command
in a RUN step; its output becomes a layer. Reruns must not invoke the engine at all;
a changed build arg must. Every buildah call goes through a wrapper that counts it.
Needs root (`--isolation chroot`) and buildah (scripts/install-test-deps.sh)."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from conftest import Result, make_hello_project, need_tool, run_cli, write

pytestmark = pytest.mark.slow

DOCKERFILE = """\
ARG BASE
FROM ${BASE} AS work
USER 0
ARG GREETING=hello
RUN mkdir -p /out/etc && echo "built $GREETING by $(id -u)" > /out/etc/built.txt \\
 && date -u -d @0 > /out/etc/epoch.txt && ln -s built.txt /out/etc/link.txt
FROM scratch
COPY --from=work /out/ /
"""


class Project:
    """The hello project plus a `builder` layer, and a counting buildah on PATH."""

    def __init__(self, tmp_path: Path) -> None:
        real = need_tool("buildah")
        if os.geteuid() != 0:
            pytest.fail("the buildah tests run as root (buildah --isolation chroot)")
        self.tmp = tmp_path
        self.root = make_hello_project(_mkdir(tmp_path / "proj"))
        self.store = tmp_path / "store"
        self.calls = tmp_path / "buildah-calls"
        wrapper = tmp_path / "wrap" / "buildah"
        write(wrapper, f'#!/bin/sh\necho "$*" >> {self.calls}\nexec {real} "$@"\n', 0o755)
        self.env = {"PATH": f"{wrapper.parent}:{os.environ['PATH']}",
                    "OCIFORGE_CACHE": str(tmp_path / "cache")}
        write(self.root / "recipes" / "built.yaml",
              "images:\n  built:\n    layers: [busybox, built]\n")

    def layer(self, dockerfile: str, greeting: str = "one", **extra: str) -> None:
        write(self.root / "build" / "Dockerfile", dockerfile)
        lines = [f"  {k}: {v}" for k, v in extra.items()]
        write(self.root / "layers" / "built.yaml", "\n".join([
            "source:", "  kind: builder", "  context: build",
            f"  build_args: {{GREETING: {greeting}}}", "  base_images: {BASE: hello}",
            *lines]) + "\n")

    def assemble(self, env: dict[str, str] | None = None) -> Result:
        return run_cli("assemble", "built", "--json", store=self.store, project=self.root,
                       env={**self.env, **(env or {})})

    def builds(self) -> int:
        """How many `buildah build` commands ran so far."""
        if not self.calls.exists():
            return 0
        return sum(" build " in f" {line} " for line in self.calls.read_text().splitlines())

    def layer_members(self, report: dict) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
        desc = next(x for x in report["images"][0]["layers"] if x["name"] == "built")
        blob = self.store / "blobs" / "sha256" / desc["digest"].split(":")[1]
        out = {}
        with tarfile.open(blob) as tar:
            for m in tar:
                f = tar.extractfile(m) if m.isfile() else None
                out[m.name] = (m, f.read() if f else b"")
        return out


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def test_real_build_cached_then_rebuilt_on_build_arg(project: Project) -> None:
    project.layer(DOCKERFILE, expect="[etc/built.txt]",
                  paths="[{from: etc, to: /opt/built}]")
    r = project.assemble()
    assert r.rc == 0, r.err
    first = r.json()
    assert "built" in first["layers"]["built"] and project.builds() == 1
    members = project.layer_members(first)
    assert members["opt/built/built.txt"][1] == b"built one by 0\n"  # ran in the RUN step
    assert members["opt/built/epoch.txt"][1] == b"Thu Jan  1 00:00:00 UTC 1970\n"
    assert members["opt/built/link.txt"][0].linkname == "built.txt"
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m, _ in members.values())

    # The base came from the store: its manifest digest is what the key and the
    # provenance name.
    tags = json.loads((project.store / "index.json").read_text())["manifests"]
    hello = next(m["digest"] for m in tags
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "hello")
    records = run_cli("layers", "ls", "--json", store=project.store).json()
    prov = next(x for x in records if x["name"] == "built")["provenance"]["sources"][0]
    assert prov["engine"] == "buildah"
    assert prov["base_images"] == {"BASE": {"image": "hello", "manifest_digest": hello}}

    # Unchanged inputs: the engine is not invoked, not even found (PATH without it).
    r = project.assemble()
    assert r.rc == 0, r.err
    assert r.json()["layers"]["built"] == [] and "built" in r.json()["layers"]["reused"]
    assert project.builds() == 1
    r = project.assemble(env={"PATH": str(_mkdir(project.tmp / "nothing"))})
    assert r.rc == 0, r.err
    assert r.json()["images"][0]["manifest_digest"] == first["images"][0]["manifest_digest"]

    # A changed build arg rebuilds that layer (and only it).
    project.layer(DOCKERFILE, greeting="two", expect="[etc/built.txt]",
                  paths="[{from: etc, to: /opt/built}]")
    r = project.assemble()
    assert r.rc == 0, r.err
    assert r.json()["layers"]["built"] == ["built"] and project.builds() == 2
    assert project.layer_members(r.json())["opt/built/built.txt"][1] == b"built two by 0\n"


def test_failed_build_reports_the_engines_last_lines(project: Project) -> None:
    project.layer("ARG BASE\nFROM ${BASE}\nUSER 0\n"
                  "RUN echo 'compiling spark...' && echo 'no space left' >&2 && exit 3\n")
    r = project.assemble()
    assert r.rc == 7, r.err
    error = r.json()["error"]
    assert error.startswith("buildah build of Dockerfile failed (exit 3): ")
    assert "no space left" in error and "exit status 3" in error and "full log: " in error
    log = Path(error.rsplit("full log: ", 1)[1].rstrip(")"))
    assert "compiling spark..." in log.read_text()
    assert r.err.count("\n") == 1
    records = run_cli("layers", "ls", "--json", store=project.store).json()
    assert "built" not in [x["name"] for x in records]


def test_output_without_the_expected_paths(project: Project) -> None:
    project.layer("ARG BASE\nFROM ${BASE} AS work\nUSER 0\n"
                  "RUN mkdir /dist && echo 'Spark' > /dist/README.md\n"
                  "FROM scratch\nCOPY --from=work /dist/ /\n",
                  expect="[jars/, bin/spark-submit]")
    r = project.assemble()
    assert r.rc == 7, r.err
    assert r.json()["error"] == ("builder build: the build output lacks jars/, "
                                 "bin/spark-submit (its top level: README.md)")


def test_empty_output(project: Project) -> None:
    project.layer("ARG BASE\nFROM ${BASE} AS work\nRUN true\nFROM scratch\n")
    r = project.assemble()
    assert r.rc == 7, r.err
    assert "the build produced no files (the last stage of Dockerfile is empty)" in r.err
    # buildah 1.28 leaves an empty scratch stage mounted; ociforge unmounts and removes
    # the build's private storage all the same.
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(project.tmp) not in mounts
    assert list((project.store / "ociforge" / "tmp").iterdir()) == []


def test_escaping_symlink_in_the_output_is_refused(project: Project) -> None:
    project.layer("ARG BASE\nFROM ${BASE} AS work\nUSER 0\n"
                  "RUN mkdir /out && ln -s ../../../etc/shadow /out/evil\n"
                  "FROM scratch\nCOPY --from=work /out/ /\n")
    r = project.assemble()
    assert r.rc == 4, r.err  # IntegrityError: the archive machinery's refusal
    assert "output.tar: member 'evil'" in r.err and "escapes the layer root" in r.err


def test_persistent_engine_storage(project: Project) -> None:
    """OCIFORGE_BUILD_STORAGE keeps buildah's storage (and --layers cache) across builds;
    the layer and its key are the same as with a private storage."""
    keep = project.tmp / "engine-storage"
    project.layer(DOCKERFILE, expect="[etc/built.txt]", paths="[{from: etc, to: /opt/b}]")
    r = project.assemble(env={"OCIFORGE_BUILD_STORAGE": str(keep)})
    assert r.rc == 0, r.err
    assert (keep / "root").is_dir()
    assert any("--layers" in line for line in project.calls.read_text().splitlines())
    members = project.layer_members(r.json())
    assert members["opt/b/built.txt"][1] == b"built one by 0\n"
    r = project.assemble()  # same key without the variable: cached
    assert r.rc == 0 and r.json()["layers"]["built"] == [] and project.builds() == 1
