"""Running Spark images in a private containerd the way a kubelet would: `ctr run`
with the image's own config, a /etc/hosts with localhost, optional read-only root
and tmpfs /tmp, and host networking for the server modes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from ociforge.digests import canonical_json
from ociforge.store import MT_CONFIG, MT_MANIFEST, Descriptor, Store

from containerd import Containerd

SMOKE_DIR = Path(__file__).parent / "smoke"


def hosts_file(base: Path) -> Path:
    path = base / "hosts"
    path.write_text(f"127.0.0.1 localhost {socket.gethostname()}\n::1 localhost ip6-localhost\n")
    return path


class SparkRunner:
    def __init__(self, ctd: Containerd, base: Path) -> None:
        self.ctd = ctd
        self.hosts = hosts_file(base)
        self._n = 0

    def _args(self, ref: str, name: str, cmd: list[str], env: dict[str, str] | None,
              read_only: bool, net_host: bool, detach: bool) -> list[str]:
        args = ["run", "--mount", f"type=bind,src={self.hosts},dst=/etc/hosts,options=rbind:ro",
                "--mount", f"type=bind,src={SMOKE_DIR},dst=/opt/smoke,options=rbind:ro"]
        if read_only:
            # A read-only root with writable emptyDir-like tmpfs, as under PSS restricted.
            args += ["--read-only", "--mount",
                     "type=tmpfs,src=tmpfs,dst=/tmp,options=nosuid:nodev:mode=1777",
                     "--mount",
                     "type=tmpfs,src=tmpfs,dst=/opt/spark/work-dir,options=nosuid:nodev:mode=1777"]
        for k, v in (env or {}).items():
            args += ["--env", f"{k}={v}"]
        if net_host:
            args.append("--net-host")
        args.append("--detach" if detach else "--rm")
        return [*args, ref, name, *cmd]

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{os.getpid()}-{self._n}"

    def run(self, ref: str, cmd: list[str], env: dict[str, str] | None = None,
            read_only: bool = False, net_host: bool = False,
            timeout: int = 300) -> subprocess.CompletedProcess[str]:
        return self.ctd.ctr(*self._args(ref, self.name("run"), cmd, env, read_only, net_host,
                                        False), timeout=timeout)

    def start(self, ref: str, cmd: list[str], env: dict[str, str] | None = None) -> str:
        name = self.name("srv")
        p = self.ctd.ctr(*self._args(ref, name, cmd, env, False, True, True))
        assert p.returncode == 0, p.stderr
        return name

    def stop(self, name: str) -> str:
        self.ctd.ctr("task", "kill", "-s", "SIGKILL", name)
        for _ in range(50):
            if "STOPPED" in self.ctd.ctr("task", "ls").stdout.split(name, 1)[-1][:40]:
                break
            time.sleep(0.1)
        self.ctd.ctr("task", "delete", name)
        self.ctd.ctr("container", "rm", name)
        return name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        except OSError as e:
            last = e
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s: {last}")


def wait_port(port: int, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listened on 127.0.0.1:{port} within {seconds} s")


def derive_with_user(store: Store, name: str, user: str, new_name: str, reference: str) -> None:
    """Tag `new_name`: the same layers, with the config's User replaced (ctr 1.6 has
    no --user flag; Kubernetes' runAsUser overrides it the same way at run time)."""
    manifest = store.read_json(store.tags()[name]["digest"])
    config = store.read_json(manifest["config"]["digest"])
    config["config"]["User"] = user
    cfg = canonical_json(config)
    manifest["config"] = Descriptor(MT_CONFIG, store.put_bytes(cfg), len(cfg)).to_json()
    data = canonical_json(manifest)
    store.tag(new_name, Descriptor(MT_MANIFEST, store.put_bytes(data), len(data)),
              {"io.ociforge.reference": reference})


def parse_json_lines(text: str) -> list[object]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
