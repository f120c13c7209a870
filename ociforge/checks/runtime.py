"""Runtime smoke in containerd, without Docker: the archive is imported (the path
`minikube image load` and kind take) and each check command runs with `ctr run`,
as the image's user and again as an arbitrary uid with gid 0, a read-only root and
tmpfs on the writable paths. Servers are started, polled until ready within a
bound, probed, and stopped. Every container gets a /etc/hosts with localhost.

`ctr` 1.6 has no --user flag, so the arbitrary-uid run uses an image that differs
only in its config's User (same layers), as Kubernetes' runAsUser overrides it.
"""

from __future__ import annotations

import os
import re
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..digests import canonical_json
from ..oci import MT_CONFIG, MT_MANIFEST, Descriptor
from ..outputs import full_reference
from ..outputs.archive import write_archive
from ..store import Store
from .containerd import Containerd
from .gpu import GpuHost
from .model import CheckSet, CommandCheck, ServerCheck, substitute
from .report import CheckResult, failed, passed, skipped

ARBITRARY_USER = "12345:0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PreparedImage:
    name: str
    ref: str                 # e.g. docker.io/library/spark:4.1.1
    uid_ref: str             # the same layers with User 12345:0
    labels: dict[str, str]


class RuntimeChecker:
    def __init__(self, ctd: Containerd, workdir: Path, gpu: GpuHost) -> None:
        self.ctd = ctd
        self.workdir = workdir
        self.gpu = gpu
        self.hosts = workdir / "hosts"
        self.hosts.write_text(f"127.0.0.1 localhost {socket.gethostname()}\n"
                              "::1 localhost ip6-localhost ip6-loopback\n")
        self._n = 0

    # -- images ----------------------------------------------------------------------

    def prepare(self, store: Store, name: str, archive: Path) -> PreparedImage:
        img = store.image(name)
        self.ctd.import_archive(archive)
        config = img.config  # a copy of its own: changed below
        labels = config.get("config", {}).get("Labels") or {}
        derived = f"{name}--uid{ARBITRARY_USER.split(':')[0]}"
        repo, _, tag = img.reference.rpartition(":")
        uid_reference = f"{repo}:{tag}-uid{ARBITRARY_USER.split(':')[0]}"
        config["config"]["User"] = ARBITRARY_USER
        cfg = canonical_json(config)
        manifest = img.manifest
        manifest["config"] = Descriptor(MT_CONFIG, store.put_bytes(cfg), len(cfg)).to_json()
        data = canonical_json(manifest)
        store.tag(derived, Descriptor(MT_MANIFEST, store.put_bytes(data), len(data)),
                  {"io.ociforge.reference": uid_reference})
        try:
            uid_archive = self.workdir / f"{derived}.tar"
            # Its layers are already in containerd from the import above.
            write_archive(store, [store.image(derived)], uid_archive, layers=False)
            self.ctd.import_archive(uid_archive)
            uid_archive.unlink()
        finally:
            store.untag(derived)
        return PreparedImage(name, full_reference(img.reference), full_reference(uid_reference),
                             labels)

    # -- containers ------------------------------------------------------------------

    def _name(self) -> str:
        self._n += 1
        return f"ocf-check-{os.getpid()}-{self._n}"

    def _args(self, ref: str, name: str, argv: list[str], env: dict[str, str], *,
              read_only: bool, writable: list[str], net_host: bool, gpu: bool,
              detach: bool) -> list[str]:
        args = ["run", "--mount", f"type=bind,src={self.hosts},dst=/etc/hosts,options=rbind:ro"]
        if read_only:
            args.append("--read-only")
            for path in writable:
                args += ["--mount", f"type=tmpfs,src=tmpfs,dst={path},"
                                    "options=nosuid:nodev:mode=1777"]
        for k, v in env.items():
            args += ["--env", f"{k}={v}"]
        if net_host:
            args.append("--net-host")
        if gpu:
            args += self.gpu.ctr_args()
        args.append("--detach" if detach else "--rm")
        return [*args, ref, name, *argv]

    def _expect(self, output: str, patterns: list[str]) -> str | None:
        for pattern in patterns:
            if not re.search(pattern, output):
                return f"output does not match {pattern!r}: …{output.strip()[-300:]}"
        return None

    def command(self, image: PreparedImage, cs: CheckSet, cc: CommandCheck
                ) -> list[CheckResult]:
        cc = CommandCheck.model_validate(substitute(cc.model_dump(), image.labels))
        if cs.gpu and not self.gpu.present:
            return [skipped(image.name, "gpu", cc.name, self.gpu.reason_absent())]
        kind = "gpu" if cs.gpu else "runtime"
        runs = [("", image.ref, False)]
        if cc.arbitrary_uid:
            runs.append((f" as {ARBITRARY_USER} read-only", image.uid_ref, True))
        out = []
        for suffix, ref, read_only in runs:
            name = cc.name + suffix
            started = time.monotonic()
            try:
                p = self.ctd.ctr(*self._args(ref, self._name(), cc.args, cc.env,
                                             read_only=read_only, writable=cs.writable,
                                             net_host=False, gpu=cs.gpu, detach=False),
                                 timeout=cc.timeout)
            except Exception as e:
                out.append(failed(image.name, kind, name, f"did not finish: {e}",
                                  time.monotonic() - started))
                continue
            seconds = time.monotonic() - started
            output = p.stdout + p.stderr
            if p.returncode != cc.exit_code:
                out.append(failed(image.name, kind, name, f"exit code {p.returncode}, expected "
                                  f"{cc.exit_code}: …{output.strip()[-400:]}", seconds))
                continue
            problem = self._expect(output, cc.expect)
            out.append(failed(image.name, kind, name, problem, seconds) if problem
                       else passed(image.name, kind, name, seconds=seconds))
        return out

    def server(self, image: PreparedImage, cs: CheckSet, sc: ServerCheck) -> CheckResult:
        port = free_port()
        sc = ServerCheck.model_validate(substitute(sc.model_dump(), image.labels, port))
        started = time.monotonic()
        name = self._name()
        p = self.ctd.ctr(*self._args(image.ref, name, sc.args, sc.env, read_only=False,
                                     writable=[], net_host=True, gpu=False, detach=True))
        if p.returncode != 0:
            return failed(image.name, "server", sc.name, f"did not start: {p.stderr.strip()}")
        try:
            return self._probe(image, sc, started)
        finally:
            self.ctd.remove_container(name)

    def _probe(self, image: PreparedImage, sc: ServerCheck, started: float) -> CheckResult:
        deadline = started + sc.timeout
        if sc.ready_port is not None:
            port = int(sc.ready_port)
            while not _port_open(port):
                if time.monotonic() > deadline:
                    return failed(image.name, "server", sc.name,
                                  f"nothing listened on port {port} within {sc.timeout} s",
                                  time.monotonic() - started)
                time.sleep(0.5)
        probe = sc.probe
        last = ""
        while time.monotonic() < deadline:
            ok, last = self._probe_once(image, probe.http, probe.command)
            if ok and (probe.expect is None or re.search(probe.expect, last)):
                return passed(image.name, "server", sc.name, f"ready in "
                              f"{time.monotonic() - started:.1f} s",
                              time.monotonic() - started)
            time.sleep(1)
        return failed(image.name, "server", sc.name, f"not ready within {sc.timeout} s: "
                      f"…{last.strip()[-300:]}", time.monotonic() - started)

    def _probe_once(self, image: PreparedImage, url: str | None,
                    command: list[str] | None) -> tuple[bool, str]:
        if url:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return r.status == 200, r.read().decode("utf-8", "replace")
            except OSError as e:
                return False, str(e)
        assert command is not None
        p = self.ctd.ctr(*self._args(image.ref, self._name(), command, {}, read_only=False,
                                     writable=[], net_host=True, gpu=False, detach=False),
                         timeout=300)
        return p.returncode == 0, p.stdout + p.stderr


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0
