"""The `builder` source without a real build: engine discovery, command lines, input
keys, output checks, and the CLI's errors when no engine can run. The real builds
with buildah are in test_builder_buildah.py."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

from ociforge.engines import BuildRequest, Engine, build_command, engine_env, find_engine, run_build
from ociforge.errors import BuildError, RecipeError
from ociforge.layers import input_key
from ociforge.recipes import LayerDef, Project
from ociforge.session import BuildSession
from ociforge.sources import BuilderSource
from ociforge.sources.base import BuildContext
from ociforge.store import Store

from conftest import make_hello_project, run_cli, store_is_empty, write

DOCKERFILE = "FROM scratch\nARG WHAT=x\nCOPY files/ /out/\n"


@pytest.fixture(autouse=True)
def _private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIFORGE_CACHE", str(tmp_path / "cache"))
    for name in ("OCIFORGE_BUILD_ENGINE", "OCIFORGE_BUILD_STORAGE", "BUILDAH_ISOLATION",
                 "MAVEN_MIRROR"):
        monkeypatch.delenv(name, raising=False)


def fake_tools(bindir: Path, *names: str) -> Path:
    bindir.mkdir(parents=True, exist_ok=True)
    for name in names:
        write(bindir / name, "#!/bin/sh\nexit 0\n", 0o755)
    return bindir


# -- engine discovery -------------------------------------------------------------------


def test_no_engine_names_what_was_looked_for(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(fake_tools(tmp_path / "bin")))
    with pytest.raises(BuildError) as e:
        find_engine()
    msg = str(e.value)
    assert "buildah, podman, docker" in msg and "apt-get install buildah" in msg
    assert "OCIFORGE_BUILD_ENGINE" in msg and "\n" not in msg


def test_engine_order_and_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = fake_tools(tmp_path / "bin", "docker", "podman")
    monkeypatch.setenv("PATH", str(bindir))
    assert find_engine().name == "podman"  # buildah absent: podman before docker
    assert find_engine("docker") == Engine("docker", str(bindir / "docker"))
    monkeypatch.setenv("OCIFORGE_BUILD_ENGINE", "docker")
    assert find_engine("podman").name == "docker"  # the environment wins over the recipe
    monkeypatch.setenv("OCIFORGE_BUILD_ENGINE", "buildah")
    with pytest.raises(BuildError, match=r"buildah \(from OCIFORGE_BUILD_ENGINE\) is not on "
                                         r"PATH.*apt-get install buildah"):
        find_engine()
    monkeypatch.setenv("OCIFORGE_BUILD_ENGINE", "kaniko")
    with pytest.raises(BuildError, match="not one of auto, buildah, podman, docker"):
        find_engine()


# -- command lines ----------------------------------------------------------------------


def _request(tmp_path: Path) -> BuildRequest:
    return BuildRequest(context=tmp_path / "ctx", dockerfile=tmp_path / "ctx" / "Dockerfile",
                        output=tmp_path / "w" / "out.tar", workdir=tmp_path / "w",
                        build_args={"B": "2", "A": "1"}, target="dist",
                        platform="linux/amd64")


def test_buildah_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    req = _request(tmp_path)
    cmd = build_command(Engine("buildah", "/usr/bin/buildah"), req)
    w = tmp_path / "w"
    assert cmd == ["/usr/bin/buildah", "--root", f"{w}/storage/root", "--runroot",
                   f"{w}/storage/run", "build", "--isolation", "chroot",
                   "--file", f"{tmp_path}/ctx/Dockerfile", "--output", f"type=tar,dest={w}/out.tar",
                   "--build-arg", "A=1", "--build-arg", "B=2", "--target", "dist",
                   "--platform", "linux/amd64", f"{tmp_path}/ctx"]
    assert engine_env(Engine("buildah", "x"), req)["TMPDIR"] == f"{w}/tmp"
    # The machine's own isolation choice is left to buildah; a persistent storage
    # caches steps (--layers) so that a failed long build resumes.
    monkeypatch.setenv("BUILDAH_ISOLATION", "oci")
    monkeypatch.setenv("OCIFORGE_BUILD_STORAGE", str(tmp_path / "keep"))
    cmd = build_command(Engine("podman", "/usr/bin/podman"), req)
    assert "--isolation" not in cmd and "--layers" in cmd
    assert cmd[1:5] == ["--root", f"{tmp_path}/keep/root", "--runroot", f"{tmp_path}/keep/run"]


def _flaky_engine(tmp_path: Path, failure: str, times: int) -> Engine:
    """A stand-in for buildah (the runtime race it reproduces cannot be caused on demand):
    fails `times` times printing `failure`, then writes the output tar."""
    script = tmp_path / "buildah"
    write(script, f"""#!/bin/sh
n=$(cat {tmp_path}/count 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/count
if [ "$n" -lt {times} ]; then echo 'STEP 2/2: RUN true'; echo '{failure}'; exit 1; fi
for a in "$@"; do case "$a" in type=tar,dest=*) : > "${{a#type=tar,dest=}}";; esac; done
""")
    script.chmod(0o755)
    return Engine("buildah", str(script))


def test_transient_runtime_failure_is_retried_others_are_not(tmp_path: Path) -> None:
    """buildah 1.28's runtime sometimes fails to seal its memfd self-copy under load (the
    step never ran): the build is run again. A failing RUN step fails at once."""
    req = _request(tmp_path)
    (tmp_path / "w").mkdir()
    engine = _flaky_engine(tmp_path, "Close_Fd sealing memfd copy: Device or resource busy", 2)
    run_build(engine, req, tmp_path / "log")
    assert req.output.is_file() and (tmp_path / "count").read_text().strip() == "3"
    assert "build attempt 3 of 3" in (tmp_path / "log").read_text()

    (tmp_path / "count").unlink()
    req.output.unlink()
    engine = _flaky_engine(tmp_path, "error: exit status 2 from pip", 1)
    with pytest.raises(BuildError, match="exit status 2 from pip"):
        run_build(engine, req, tmp_path / "log")
    assert (tmp_path / "count").read_text().strip() == "1"


def test_docker_command(tmp_path: Path) -> None:
    req = _request(tmp_path)
    cmd = build_command(Engine("docker", "/usr/bin/docker"), req)
    assert cmd[:2] == ["/usr/bin/docker", "build"] and "--root" not in cmd
    assert engine_env(Engine("docker", "x"), req)["DOCKER_BUILDKIT"] == "1"


# -- input keys -------------------------------------------------------------------------


def _ctx(root: Path) -> BuildContext:
    return BuildContext(project_root=root / "proj", sde=0)


def _layer(**source: object) -> LayerDef:
    base = {"kind": "builder", "context": "ctx", "build_args": {"WHAT": "one"}}
    return LayerDef.model_validate({"source": {**base, **source}})


def _context(root: Path) -> Path:
    ctx = root / "proj" / "ctx"
    write(ctx / "Dockerfile", DOCKERFILE)
    write(ctx / "files" / "a.txt", "a\n")
    write(ctx / "files" / "run.sh", "#!/bin/sh\n", 0o755)
    write(ctx / ".git" / "HEAD", "ref: refs/heads/main\n")
    return ctx


def test_key_follows_inputs_not_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx_dir = _context(tmp_path)
    ctx = _ctx(tmp_path)
    key = input_key(_layer(), ctx)
    assert input_key(_layer(), ctx) == key
    # Not keyed: the engine (recipe or environment), pass_env values, mtimes, the
    # umask's effect on modes, excluded paths.
    assert input_key(_layer(engine="docker"), ctx) == key
    monkeypatch.setenv("OCIFORGE_BUILD_ENGINE", "podman")
    assert input_key(_layer(), ctx) == key
    passing = input_key(_layer(pass_env=["MAVEN_MIRROR"]), ctx)
    monkeypatch.setenv("MAVEN_MIRROR", "https://mirror.example/maven2")
    assert input_key(_layer(pass_env=["MAVEN_MIRROR"]), ctx) == passing
    os.utime(ctx_dir / "files" / "a.txt", (12345, 12345))
    (ctx_dir / "files" / "a.txt").chmod(0o600)
    assert input_key(_layer(), ctx) == key
    excluding = input_key(_layer(exclude=[".git"]), ctx)
    write(ctx_dir / ".git" / "HEAD", "ref: refs/heads/other\n")
    assert input_key(_layer(exclude=[".git"]), ctx) == excluding
    assert input_key(_layer(), ctx) != key  # not excluded: .git is context like the rest
    key = input_key(_layer(), ctx)
    # Keyed: build args, target, platform, content, exec bits, new files, the Dockerfile.
    assert input_key(_layer(build_args={"WHAT": "two"}), ctx) != key
    assert input_key(_layer(target="dist"), ctx) != key
    assert input_key(_layer(platform="linux/arm64"), ctx) != key
    changes = [lambda: write(ctx_dir / "files" / "a.txt", "b\n"),
               lambda: (ctx_dir / "files" / "a.txt").chmod(0o700),
               lambda: write(ctx_dir / "files" / "new.txt", ""),
               lambda: write(ctx_dir / "Dockerfile", DOCKERFILE + "RUN true\n")]
    for change in changes:
        change()
        new = input_key(_layer(), ctx)
        assert new != key
        key = new


def test_spec_errors(tmp_path: Path) -> None:
    write(tmp_path / "layers" / "b.yaml", """\
        source:
          kind: builder
          context: ctx
          build_args: {MAVEN_MIRROR: x}
          pass_env: [MAVEN_MIRROR]
        """)
    with pytest.raises(RecipeError, match="MAVEN_MIRROR is set in more than one"):
        Project.load(tmp_path)
    write(tmp_path / "layers" / "b.yaml", "source: {kind: builder, context: c, engine: kaniko}\n")
    with pytest.raises(RecipeError, match=r"field 'source\.builder\.engine'"):
        Project.load(tmp_path)
    layer = _layer(context="missing")
    with pytest.raises(RecipeError, match="context missing is not a directory"):
        input_key(layer, _ctx(tmp_path))


def test_base_image_must_be_defined_or_stored(tmp_path: Path) -> None:
    _context(tmp_path)
    write(tmp_path / "proj" / "layers" / "b.yaml",
          "source: {kind: builder, context: ctx, base_images: {BASE: jdk}}\n")
    session = BuildSession(Store(tmp_path / "store"), Project.load(tmp_path / "proj"))
    with pytest.raises(RecipeError, match="base image 'jdk' is neither defined by the recipes"):
        session.keys(["b"])
    # A source reaches base images only through the session's port: never undeclared ones.
    with pytest.raises(RecipeError, match="base image 'jdk' was not declared"):
        input_key(_layer(base_images={"BASE": "jdk"}), session.ctx)


# -- output checks ----------------------------------------------------------------------


def _tar(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name in names:
            ti = tarfile.TarInfo(name)
            ti.size = 1
            tar.addfile(ti, io.BytesIO(b"x"))
    return path


def test_output_checks(tmp_path: Path) -> None:
    src = BuilderSource(kind="builder", context="ctx",
                        expect=["jars/", "bin/spark-submit"])
    with pytest.raises(BuildError, match="the build produced no files"):
        src.check_output(_tar(tmp_path / "empty.tar", []))
    with pytest.raises(BuildError, match=r"lacks jars/, bin/spark-submit \(its top level: "
                                         r"README.md\)"):
        src.check_output(_tar(tmp_path / "readme.tar", ["README.md"]))
    with pytest.raises(BuildError, match="lacks bin/spark-submit"):
        src.check_output(_tar(tmp_path / "jars.tar", ["jars/a.jar", "bin/pyspark"]))
    # Directories count without entries of their own.
    src.check_output(_tar(tmp_path / "ok.tar", ["./jars/x/a.jar", "bin/spark-submit"]))


# -- the CLI when no engine can run -----------------------------------------------------


def _cli_project(root: Path) -> Path:
    write(root / "ctx" / "Dockerfile", DOCKERFILE)
    write(root / "ctx" / "files" / "a.txt", "a\n")
    write(root / "layers" / "built.yaml", """\
        source:
          kind: builder
          context: ctx
          build_args: {WHAT: one}
          expect: [out/a.txt]
        """)
    write(root / "recipes" / "r.yaml", "images:\n  built:\n    layers: [built]\n")
    return root


def test_cli_without_engine(tmp_path: Path) -> None:
    proj = _cli_project(tmp_path / "p")
    empty = fake_tools(tmp_path / "bin")
    env = {"PATH": str(empty), "OCIFORGE_CACHE": str(tmp_path / "cache")}
    r = run_cli("assemble", "built", store=tmp_path / "s", project=proj, env=env)
    assert r.rc == 7, r.err
    assert r.err.count("\n") == 1 and "looked for buildah, podman, docker" in r.err
    assert store_is_empty(tmp_path / "s")
    r = run_cli("assemble", "built", "--json", store=tmp_path / "s", project=proj,
                env={**env, "OCIFORGE_BUILD_ENGINE": "podman"})
    assert r.rc == 7 and r.json()["exit_code"] == 7
    assert "podman (from OCIFORGE_BUILD_ENGINE) is not on PATH" in r.json()["error"]


FAKE_DOCKER = """\
#!{python}
# A stand-in for the docker CLI (no Docker engine on the test machines): records its
# arguments, answers `load` like docker does, and writes the --output tar on `build`.
import io, json, os, sys, tarfile
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps({{"args": args, "buildkit": os.environ.get("DOCKER_BUILDKIT")}}) + "\\n")
if args[0] == "load":
    print("Loaded image: hello:latest")
elif args[0] == "build":
    dest = args[args.index("--output") + 1].split("dest=", 1)[1]
    build_args = [a for i, a in enumerate(args) if i and args[i - 1] == "--build-arg"]
    with tarfile.open(dest, "w") as tar:
        data = "\\n".join(build_args).encode() + b"\\n"
        ti = tarfile.TarInfo("out/args.txt")
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
"""


def test_docker_engine_protocol(tmp_path: Path) -> None:
    """The docker path, against a stand-in CLI: the base image is `docker load`ed and
    named by the reference docker reports; the build's tar becomes the layer."""
    proj = make_hello_project(_mkdir(tmp_path / "p"))
    write(proj / "ctx" / "Dockerfile", "ARG BASE\nFROM ${BASE}\n")
    write(proj / "layers" / "built.yaml", """\
        source:
          kind: builder
          context: ctx
          engine: docker
          build_args: {WHAT: one}
          base_images: {BASE: hello}
          expect: [out/args.txt]
          paths: [{from: out, to: /opt/out}]
        """)
    write(proj / "recipes" / "built.yaml", "images:\n  built:\n    layers: [built]\n")
    bindir = tmp_path / "bin"
    write(bindir / "docker", FAKE_DOCKER.format(python=sys.executable), 0o755)
    log = tmp_path / "docker.log"
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_DOCKER_LOG": str(log),
           "OCIFORGE_CACHE": str(tmp_path / "cache")}
    r = run_cli("assemble", "built", "--json", store=tmp_path / "s", project=proj, env=env)
    assert r.rc == 0, r.err
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["args"][0] for c in calls] == ["load", "build"]
    assert calls[0]["args"][1] == "--input" and calls[0]["args"][2].endswith("base-BASE.tar")
    assert "BASE=hello:latest" in calls[1]["args"] and "WHAT=one" in calls[1]["args"]
    assert calls[1]["buildkit"] == "1"
    layer = r.json()["images"][0]["layers"][0]["digest"].split(":")[1]
    with tarfile.open(tmp_path / "s" / "blobs" / "sha256" / layer) as tar:
        f = tar.extractfile("opt/out/args.txt")
        assert f is not None and f.read() == b"BASE=hello:latest\nWHAT=one\n"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
