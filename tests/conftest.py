"""Shared fixtures: throwaway projects and stores, the CLI as a real subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from containerd import Containerd, can_run_containers
from registry_server import Registry, start_registry

# The tests build linux/amd64 only (CI time): the matrix declares linux/arm64 too, and
# only tests/test_platforms*.py build it (they set $OCIFORGE_PLATFORMS themselves).
os.environ.setdefault("OCIFORGE_PLATFORMS", "linux/amd64")

# The same place scripts/install-test-deps.sh and prebuild-spark.sh use.
TEST_CACHE = Path(os.environ.get("OCIFORGE_TEST_CACHE") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ociforge-test")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(*args: str | Path, store: Path, project: Path | None = None,
            env: dict[str, str] | None = None, umask: int | None = None,
            prefix: list[str] | None = None, timeout: int = 600) -> Result:
    """Run `ociforge` as a user would: a separate process, real exit codes."""
    cmd = [*(prefix or []), sys.executable, "-m", "ociforge.cli", "--store", str(store)]
    if project is not None:
        cmd += ["--project", str(project)]
    cmd += [str(a) for a in args]
    full_env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    full_env.update(env or {})
    p = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout,
                       preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
    return Result(p.returncode, p.stdout, p.stderr)


def write(path: Path, text: str, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    if mode is not None:
        path.chmod(mode)
    return path


def busybox_deb() -> Path:
    """busybox-static .deb from Debian, fetched by scripts/install-test-deps.sh."""
    deb = TEST_CACHE / "busybox-static.deb"
    if not deb.exists():
        pytest.fail(f"{deb} is missing: run scripts/install-test-deps.sh first "
                    "(it downloads busybox-static from Debian)")
    return deb


HELLO_SH = '#!/bin/sh\necho "hello from ociforge as $(id -u)"\n'


def make_hello_project(root: Path, deb: Path | None = None) -> Path:
    """A small recipe: busybox-static from Debian plus a `files` layer."""
    deb = deb or busybox_deb()
    shutil.copy(deb, root / "busybox-static.deb")
    write(root / "files" / "hello.sh", HELLO_SH, 0o755)
    write(root / "files" / "etc" / "motd", "built by ociforge\n")
    write(root / "layers" / "busybox.yaml", f"""\
        description: busybox-static from Debian's archive
        source:
          kind: archive
          url: busybox-static.deb
          sha256: {sha256(root / "busybox-static.deb")}
          paths:
            - {{from: bin/busybox, to: /bin/busybox}}
        """)
    write(root / "layers" / "hello.yaml", """\
        source:
          kind: files
          files:
            - {src: files/hello.sh, dest: /usr/local/bin/hello, mode: "0755"}
            - {src: files/etc, dest: /etc}
          dirs:
            - {path: /tmp, mode: "1777"}
          symlinks:
            - {path: /bin/sh, target: busybox}
            - {path: /bin/id, target: busybox}
            - {path: /bin/echo, target: busybox}
        """)
    write(root / "recipes" / "hello.yaml", """\
        images:
          hello:
            layers: [busybox, hello]
            config:
              entrypoint: ["/bin/sh", "/usr/local/bin/hello"]
              user: "185:185"
              env: {PATH: "/usr/local/bin:/bin"}
              workdir: /tmp
              labels: {org.opencontainers.image.title: hello}
        """)
    return root


def big_project(root: Path, mb: int = 400) -> Path:
    """An image with one large layer, so a build takes long enough to be interrupted."""
    data = root / "data"
    data.mkdir(parents=True)
    chunk = os.urandom(1 << 20)
    with open(data / "blob.bin", "wb") as f:
        for i in range(mb):
            f.write(chunk[i % 97:] + chunk[: i % 97])
    write(root / "layers" / "big.yaml",
          "source:\n  kind: files\n  files: [{src: data, dest: /data}]\n")
    write(root / "recipes" / "r.yaml", "images:\n  big:\n    layers: [big]\n")
    return root


def cli_cmd(store: Path, project: Path, *args: str) -> list[str]:
    """The command line `run_cli` runs, for tests that drive the process themselves."""
    return [sys.executable, "-m", "ociforge.cli", "--store", str(store), "--project",
            str(project), *args]


def wait_for_layer_write(tmp_dir: Path, size: int, timeout: float = 60) -> None:
    """Until a build has written `size` bytes of a layer blob (a `.part` file), so that
    a signal sent next lands mid-layer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = list(tmp_dir.glob("*.part")) if tmp_dir.exists() else []
        if parts and max(p.stat().st_size for p in parts) > size:
            return
        time.sleep(0.02)
    pytest.fail("the build never started writing its layer")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def hello_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    return make_hello_project(root)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP docker-registry on loopback, one per test module."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def shared_containerd() -> Iterator[Containerd]:
    """One containerd for every module that runs the Spark images: an image is imported
    once (`ociforge test --containerd` skips what it holds at the same digest) and the
    images share their unpacked base layers."""
    reason = can_run_containers()
    if reason:
        pytest.skip(reason)
    ctd = Containerd(Path(tempfile.mkdtemp(prefix="ocf-ctd-", dir="/tmp"))).start()
    yield ctd
    ctd.stop()


def image_refs(ctd: Containerd) -> dict[str, str]:
    """Reference → manifest digest, for every image in the containerd (the CRI plugin
    adds a reference named by the config digest beside each imported name)."""
    p = ctd.ctr("images", "ls")
    assert p.returncode == 0, p.stderr
    return {cols[0]: cols[2] for cols in (row.split() for row in p.stdout.splitlines()[1:])
            if len(cols) >= 3}


def remove_images(ctd: Containerd, before: dict[str, str], pattern: str) -> None:
    """The images imported since `before` whose name contains `pattern`, every
    reference to them, and their snapshots (what no other image shares): to keep the
    disk a long session needs bounded."""
    added = {ref: digest for ref, digest in image_refs(ctd).items() if ref not in before}
    digests = {digest for ref, digest in added.items() if pattern in ref}
    refs = sorted(ref for ref, digest in added.items() if digest in digests)
    if refs:
        p = ctd.ctr("images", "rm", "--sync", *refs)
        assert p.returncode == 0, p.stderr


def store_is_empty(store: Path) -> bool:
    """No blob and no layer record (the layout skeleton itself may exist)."""
    blobs = list((store / "blobs" / "sha256").glob("*")) if store.exists() else []
    records = list((store / "ociforge" / "layers").glob("*")) if store.exists() else []
    return not blobs and not records


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/install-test-deps.sh")
    return path
