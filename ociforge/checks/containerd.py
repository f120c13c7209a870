"""A containerd to run images in: the machine's (by socket) or a private one that
ociforge starts on its own socket and state directory, and stops afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from ..errors import OciforgeError


def can_run_containers() -> str | None:
    """None if containerd + runc can run here, else the reason why not."""
    if os.geteuid() != 0:
        return "containerd and runc need root"
    for tool in ("containerd", "ctr", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install containerd runc)"
    return None


class Containerd:
    """`ctr` against one containerd, in the k8s.io namespace (what kubelet and
    minikube's containerd runtime use)."""

    def __init__(self, base: Path, address: Path | None = None) -> None:
        self.base = base
        self.socket = address or base / "containerd.sock"
        self.private = address is None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Containerd:
        if not self.private:
            if self.ctr("version").returncode != 0:
                raise OciforgeError(f"no containerd answers on {self.socket}")
            return self
        self.base.mkdir(parents=True, exist_ok=True)
        config = self.base / "config.toml"
        config.write_text(
            f'version = 2\nroot = "{self.base}/root"\nstate = "{self.base}/state"\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            '[plugins."io.containerd.grpc.v1.cri"]\n  disable_tcp_service = true\n')
        with open(self.base / "containerd.log", "wb") as log:
            self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.exists() and self.ctr("version").returncode == 0:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        tail = (self.base / "containerd.log").read_text()[-1500:]
        self.stop()
        raise OciforgeError(f"containerd did not start: {tail}")

    def ctr(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", str(self.socket), "-n", "k8s.io", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def import_archive(self, archive: Path, platform: str | None = None) -> None:
        """Import `archive`; another platform's image with `platform` (ctr imports and
        unpacks only the host's by default)."""
        p = self.ctr("images", "import", *(["--platform", platform] if platform else []),
                     str(archive), timeout=900)
        if p.returncode != 0:
            raise OciforgeError(f"ctr images import {archive.name} failed: "
                                f"{p.stderr.strip()[-500:]}")

    def image_digest(self, ref: str) -> str | None:
        """The manifest digest `ref` names in this containerd, None if it has no such
        image (so an image already imported at that digest is not imported again)."""
        p = self.ctr("images", "ls", f"name=={ref}")
        for row in p.stdout.splitlines()[1:] if p.returncode == 0 else []:
            cols = row.split()
            if len(cols) >= 3 and cols[0] == ref:
                return cols[2]
        return None

    def remove_container(self, name: str) -> None:
        self.ctr("task", "kill", "-s", "SIGKILL", name)
        for _ in range(50):
            if self.ctr("task", "delete", name).returncode == 0:
                break
            time.sleep(0.1)
        self.ctr("task", "delete", "--force", name)
        self.ctr("container", "rm", name)

    def stop(self) -> None:
        if not self.private:
            return
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        # Unmount what containerd left (snapshots, shm) before removing its directories.
        mounts = Path("/proc/mounts").read_text().splitlines()
        for line in sorted((m.split()[1] for m in mounts), reverse=True):
            if line.startswith(str(self.base)):
                subprocess.run(["umount", "-l", line], check=False)
        shutil.rmtree(self.base, ignore_errors=True)
