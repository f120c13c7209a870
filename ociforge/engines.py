"""Container engines for the `builder` source: finding one, and running a build with it.

ociforge itself needs no engine; only a `builder` layer that is not cached yet does.
buildah comes first because it needs no daemon (as root, `--isolation chroot` works
even inside a container), then podman, then docker (BuildKit). Each build gets a
private, throw-away engine storage and TMPDIR under ociforge's staging directory, so
nothing is left in /var/lib/containers or /var/tmp and concurrent builds cannot
see each other's images. The engine name is never part of a layer's input key.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BuildError
from .net.redact import redact_text

ENGINES = ("buildah", "podman", "docker")
ENGINE_ENV = "OCIFORGE_BUILD_ENGINE"
# Where a persistent engine storage lives, if wanted (then `--layers` caches steps, so
# a failed 40-minute build resumes); unset = a fresh storage per build.
STORAGE_ENV = "OCIFORGE_BUILD_STORAGE"
INSTALL = {"buildah": "apt-get install buildah", "podman": "apt-get install podman",
           "docker": "apt-get install docker.io"}


@dataclass(frozen=True)
class Engine:
    name: str  # buildah | podman | docker
    path: str


def find_engine(wanted: str = "auto") -> Engine:
    """The engine to use: $OCIFORGE_BUILD_ENGINE, else the recipe's choice; `auto` takes
    the first of buildah, podman, docker on PATH."""
    env = os.environ.get(ENGINE_ENV, "").strip()
    choice, origin = (env, ENGINE_ENV) if env else (wanted, "the layer definition")
    if choice not in ("auto", *ENGINES):
        raise BuildError(f"{ENGINE_ENV}={choice!r} is not one of auto, {', '.join(ENGINES)}")
    for name in ENGINES if choice == "auto" else (choice,):
        path = shutil.which(name)
        if path:
            return Engine(name, path)
    if choice == "auto":
        raise BuildError("no container engine for the builder source: looked for "
                         f"{', '.join(ENGINES)} on PATH; install one (Debian/Ubuntu: "
                         f"{INSTALL['buildah']}) or name one with {ENGINE_ENV}")
    raise BuildError(f"build engine {choice} (from {origin}) is not on PATH; install it "
                     f"(Debian/Ubuntu: {INSTALL[choice]}) or set {ENGINE_ENV}=auto")


@dataclass
class BuildRequest:
    """One build: everything the engine is told, and where it may write."""

    context: Path
    dockerfile: Path
    output: Path  # the tar the final stage is written to
    workdir: Path  # private engine storage, TMPDIR, exported base images
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    platform: str | None = None
    hide: list[str] = field(default_factory=list)  # values kept out of logs and errors


def _storage_flags(req: BuildRequest) -> tuple[list[str], list[str]]:
    """(global flags, build flags) giving buildah/podman a storage of their own."""
    persistent = os.environ.get(STORAGE_ENV, "").strip()
    base = Path(persistent) if persistent else req.workdir / "storage"
    flags = ["--root", str(base / "root"), "--runroot", str(base / "run")]
    return flags, (["--layers"] if persistent else [])


def build_command(engine: Engine, req: BuildRequest) -> list[str]:
    """The engine's command line for `req` (output: the final stage as a tar)."""
    if engine.name == "docker":
        cmd = [engine.path, "build"]
    else:
        global_flags, build_flags = _storage_flags(req)
        cmd = [engine.path, *global_flags, "build", *build_flags]
        if "BUILDAH_ISOLATION" not in os.environ:
            # chroot needs no nested namespaces or runtime: works as root anywhere.
            cmd += ["--isolation", "chroot"]
    cmd += ["--file", str(req.dockerfile), "--output", f"type=tar,dest={req.output}"]
    for name, value in sorted(req.build_args.items()):
        cmd += ["--build-arg", f"{name}={value}"]
    if req.target:
        cmd += ["--target", req.target]
    if req.platform:
        cmd += ["--platform", req.platform]
    return [*cmd, str(req.context)]


def engine_env(engine: Engine, req: BuildRequest) -> dict[str, str]:
    tmp = req.workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp)}
    if engine.name == "docker":
        env["DOCKER_BUILDKIT"] = "1"  # --output needs BuildKit
    return env


def base_reference(engine: Engine, archive: Path, req: BuildRequest, log: Path) -> str:
    """How a FROM line names an image ociforge exported to `archive`."""
    if engine.name != "docker":
        return f"oci-archive:{archive}"
    # Docker's builder cannot read an archive in FROM: load it, use the name it reports.
    out = _run([engine.path, "load", "--input", str(archive)], engine_env(engine, req), log,
               what=f"{engine.name} load")
    m = re.search(r"Loaded image(?: ID)?: (\S+)", out)
    if not m:
        raise BuildError(f"{engine.name} load {archive.name} did not report an image name")
    return m.group(1)


def tail_lines(text: str, n: int = 4) -> str:
    """The last `n` distinct non-empty lines, on one line (errors are one line)."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if len(line) > 240:  # an echoed 20-line RUN step: keep its start and its end
            line = f"{line[:100]} … {line[-120:]}"
        if line and (not lines or lines[-1] != line):  # buildah repeats its last words
            lines.append(line)
    return " | ".join(lines[-n:])


def _hide(text: str, hide: list[str]) -> str:
    """`text` without the values in `hide`, nor credentials in any URL."""
    for value in hide:
        if value:
            text = text.replace(value, "***")
    return redact_text(text)


def _run(cmd: list[str], env: dict[str, str], log: Path, *, what: str,
         hide: list[str] | None = None) -> str:
    """Run `cmd`, appending its output to `log`; a failure raises with its last lines."""
    hide = hide or []
    log.parent.mkdir(parents=True, exist_ok=True)
    last: deque[str] = deque(maxlen=200)
    with open(log, "a", encoding="utf-8", errors="replace") as out:
        out.write(_hide(f"$ {' '.join(cmd)}\n", hide))
        out.flush()
        started = time.monotonic()
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, text=True,
                                    errors="replace")
        except OSError as e:
            raise BuildError(f"{what}: cannot run {cmd[0]}: {e.strerror}") from None
        assert proc.stdout is not None
        for line in proc.stdout:
            line = _hide(line, hide)
            out.write(line)
            last.append(line)
        rc = proc.wait()
        out.write(f"# exit {rc} after {time.monotonic() - started:.1f} s\n")
    text = "".join(last)
    if rc != 0:
        raise BuildError(f"{what} failed (exit {rc}): {tail_lines(text)} (full log: {log})")
    return text


def _mounts_under(path: Path) -> list[str]:
    """Mount points below `path`, deepest first (from /proc/self/mountinfo)."""
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    prefix = str(path).rstrip("/") + "/"
    points = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            if point.startswith(prefix):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def cleanup(engine: Engine, req: BuildRequest, log: Path) -> None:
    """Remove the engine's working containers and anything still mounted in the build's
    directory (buildah 1.28 leaves an empty scratch stage mounted), so that the staging
    area can be deleted. Best effort: a failure here must not hide the build's result."""
    # A shared OCIFORGE_BUILD_STORAGE is left alone: another build may be using it.
    if engine.name != "docker" and not os.environ.get(STORAGE_ENV, "").strip():
        global_flags, _ = _storage_flags(req)
        cmd = [engine.path, *global_flags, "rm", "--all"]
        if engine.name == "podman":
            cmd.append("--force")
        with contextlib.suppress(BuildError):
            _run(cmd, engine_env(engine, req), log, what=f"{engine.name} rm")
    for point in _mounts_under(req.workdir):
        try:
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
        except OSError:
            break


# Failures of the engine's own runtime, not of the Dockerfile: the step never started.
# runc's self-copy (cloned_binary.c, vendored by buildah 1.28) races with a concurrent
# fork holding a writable mapping of the memfd and gets EBUSY when sealing it.
TRANSIENT = ("sealing memfd copy: Device or resource busy",)
ATTEMPTS = 3


def run_build(engine: Engine, req: BuildRequest, log: Path) -> None:
    """Run the build; the final stage ends up as the tar `req.output`. A build that
    failed on a known transient error of the engine's runtime (TRANSIENT) is run again,
    up to ATTEMPTS times in all; any other failure is reported at once."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _run(build_command(engine, req), engine_env(engine, req), log,
                 what=f"{engine.name} build of {req.dockerfile.name}", hide=req.hide)
            break
        except BuildError as e:
            if attempt == ATTEMPTS or not any(t in str(e) for t in TRANSIENT):
                raise
            with open(log, "a", encoding="utf-8") as out:
                out.write(f"# transient runtime failure, build attempt {attempt + 1} "
                          f"of {ATTEMPTS}\n")
    if not req.output.is_file():
        raise BuildError(f"{engine.name} build wrote no output tar at {req.output} "
                         "(does this engine support --output type=tar?)")
