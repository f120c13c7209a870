"""A private containerd for tests: own socket, root and state under a temp dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path


class Containerd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.socket = base / "containerd.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Containerd:
        self.base.mkdir(parents=True, exist_ok=True)
        config = self.base / "config.toml"
        config.write_text(f"""version = 2
root = "{self.base}/root"
state = "{self.base}/state"
[grpc]
  address = "{self.socket}"
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
""")
        log = open(self.base / "containerd.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.socket.exists() and self.ctr("version").returncode == 0:
                return self
            time.sleep(0.2)
        log_tail = (self.base / "containerd.log").read_text()[-2000:]
        raise RuntimeError(f"containerd did not start: {log_tail}")

    def ctr(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", str(self.socket), "-n", "k8s.io", *args],
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Unmount anything containerd left behind before removing its directories.
        subprocess.run(["sh", "-c", f"grep ' {self.base}' /proc/mounts | cut -d' ' -f2 | "
                        "sort -r | xargs -r umount -l"], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def can_run_containers() -> str | None:
    """None if containerd + runc can run here, else the reason why not."""
    if os.geteuid() != 0:
        return "containerd and runc need root"
    for tool in ("containerd", "ctr", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-test-deps.sh installs it)"
    return None
