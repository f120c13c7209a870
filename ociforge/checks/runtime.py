"""Runtime smoke in containerd, without Docker: the archive is imported (the path
`minikube image load` and kind take) and each check command runs with `ctr run`,
as the image's user and again as an arbitrary uid with gid 0, a read-only root and
tmpfs on the writable paths. Servers are started, polled until ready within a
bound, probed, and stopped. Every container gets a /etc/hosts with localhost.

`ctr` 1.6 has no --user flag, so the arbitrary-uid run uses an image that differs
only in its config's User (same layers), as Kubernetes' runAsUser overrides it.

Workloads against the user's servers (S3, Celeborn) run on the host network, get the
set's `host_env` through an env file (access keys stay off command lines), their
`inputs` (job scripts) bind-mounted read-only, and a `{run}` of their own per user.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ..digests import canonical_json
from ..image import StoredImage
from ..oci import MT_CONFIG, MT_MANIFEST, Descriptor
from ..outputs import full_reference
from ..outputs.archive import write_archive
from ..spec import inside_project
from ..store import Store
from .containerd import Containerd
from .gpu import GpuHost
from .model import INPUTS_DIR, CheckSet, CommandCheck, ServerCheck, host_env_values, substitute
from .report import CheckResult, failed, passed, skipped

ARBITRARY_USER = "12345:0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Run:
    """One way a check runs: as the image's user, or as 12345:0 with a read-only root."""

    suffix: str             # appended to the check's name
    arbitrary: bool
    tag: str                # what `{run}` becomes


@dataclass
class PreparedImage:
    name: str
    ref: str                 # e.g. docker.io/library/spark:4.1.1
    uid_ref: str             # the same layers with User 12345:0
    labels: dict[str, str]
    imported: bool = True    # False: containerd had both references at these digests
    platform: str | None = None  # another platform's image, run under emulation


def checked_image(store: Store, name: str, platform: str | None = None,
                  emulated: bool = False) -> StoredImage:
    """The image `name` of `platform` (None: the host's). One run under emulation gets
    a reference of its own (`spark:4.1.1-arm64`), so that in a shared containerd it
    sits beside the host's image of that name instead of replacing it."""
    img = store.image(name, platform)
    if not emulated or platform is None:
        return img
    repo, _, tag = img.reference.rpartition(":")
    return replace(img, reference=f"{repo}:{tag}-{platform.rsplit('/', 1)[-1]}")


class RuntimeChecker:
    def __init__(self, ctd: Containerd, workdir: Path, gpu: GpuHost,
                 project_root: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.ctd = ctd
        self.workdir = workdir
        self.gpu = gpu
        self.project_root = project_root
        self.environ = os.environ if environ is None else environ
        self.hosts = workdir / "hosts"
        self.hosts.write_text(f"127.0.0.1 localhost {socket.gethostname()}\n"
                              "::1 localhost ip6-localhost ip6-loopback\n")
        self._n = 0
        self._nonce = secrets.token_hex(3)

    def runs(self, image: PreparedImage, arbitrary_uid: bool) -> list[Run]:
        """As the image's user, then (if asked) as 12345:0 read-only; `{run}` names the
        run, the image and the user (letters, digits and _: a table name, a path)."""
        base = f"r{self._nonce}_{re.sub(r'[^A-Za-z0-9]', '_', image.name)}"
        runs = [Run("", False, f"{base}_image_user")]
        if arbitrary_uid:
            runs.append(Run(f" as {ARBITRARY_USER} read-only", True,
                            f"{base}_uid{ARBITRARY_USER.split(':')[0]}"))
        return runs

    # -- images ----------------------------------------------------------------------

    def prepare(self, store: Store, name: str, archive: Path,
                emulate: str | None = None) -> PreparedImage:
        """The image and its 12345:0 twin in containerd. Not imported again where
        containerd already holds both references at these digests (a re-test does not
        unpack the layers again); `archive` is written only for an import, if missing.
        `emulate`: the image of that platform (not the host's), run under emulation."""
        img = checked_image(store, name, emulate, emulated=True)
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
        prepared = PreparedImage(name, full_reference(img.reference),
                                 full_reference(uid_reference), labels, platform=emulate)
        uid_digest = store.put_bytes(data)
        if (self.ctd.image_digest(prepared.ref) == img.descriptor.digest
                and self.ctd.image_digest(prepared.uid_ref) == uid_digest):
            prepared.imported = False
            return prepared
        if not archive.exists():
            write_archive(store, [img], archive)
        self.ctd.import_archive(archive, emulate)
        store.tag(derived, Descriptor(MT_MANIFEST, uid_digest, len(data)),
                  {"io.ociforge.reference": uid_reference})
        try:
            uid_archive = self.workdir / f"{derived}.tar"
            # Its layers are already in containerd from the import above.
            write_archive(store, [store.image(derived)], uid_archive, layers=False)
            self.ctd.import_archive(uid_archive, emulate)
            uid_archive.unlink()
        finally:
            store.untag(derived)
        return prepared

    # -- containers ------------------------------------------------------------------

    def _name(self) -> str:
        self._n += 1
        return f"ocf-check-{os.getpid()}-{self._n}"

    def _args(self, ref: str, name: str, argv: list[str], env: dict[str, str], *,
              read_only: bool, writable: list[str], net_host: bool, gpu: bool,
              detach: bool, env_file: Path | None = None,
              inputs: list[Path] | None = None, platform: str | None = None) -> list[str]:
        args = ["run", *(["--platform", platform] if platform else []),
                "--mount", f"type=bind,src={self.hosts},dst=/etc/hosts,options=rbind:ro"]
        if read_only:
            args.append("--read-only")
            for path in writable:
                args += ["--mount", f"type=tmpfs,src=tmpfs,dst={path},"
                                    "options=nosuid:nodev:mode=1777"]
        for src in inputs or []:
            args += ["--mount", f"type=bind,src={src},dst={INPUTS_DIR}/{src.name},"
                                "options=rbind:ro"]
        if env_file is not None:
            args += ["--env-file", str(env_file)]
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

    def _host_env(self, cs: CheckSet) -> tuple[dict[str, str], Path | None]:
        """The set's host variables, and an env file (0600) that hands them over."""
        values = host_env_values(cs, self.environ)
        if not values:
            return values, None
        self._n += 1
        path = self.workdir / f"env-{self._n}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{k}={v.replace(chr(10), ' ')}\n" for k, v in values.items())
        return values, path

    def _inputs(self, paths: list[str]) -> list[Path]:
        if paths and self.project_root is None:
            raise ValueError("check inputs need the project directory")
        return [inside_project(self.project_root, p) for p in paths
                if self.project_root is not None]

    def command(self, image: PreparedImage, cs: CheckSet, cc: CommandCheck
                ) -> list[CheckResult]:
        if cs.gpu and not self.gpu.present:
            return [skipped(image.name, "gpu", cc.name, self.gpu.reason_absent())]
        kind = "gpu" if cs.gpu else "runtime"
        env, env_file = self._host_env(cs)
        out = []
        for run in self.runs(image, cc.arbitrary_uid):
            c = CommandCheck.model_validate(substitute(cc.model_dump(), image.labels,
                                                       run=run.tag, env=env))
            name = c.name + run.suffix
            started = time.monotonic()
            try:
                p = self.ctd.ctr(*self._args(image.uid_ref if run.arbitrary else image.ref,
                                             self._name(), c.args, c.env,
                                             read_only=run.arbitrary, writable=cs.writable,
                                             net_host=c.host_network, gpu=cs.gpu,
                                             detach=False, env_file=env_file,
                                             inputs=self._inputs(c.inputs),
                                             platform=image.platform),
                                 timeout=c.timeout)
            except Exception as e:
                out.append(failed(image.name, kind, name, f"did not finish: {e}",
                                  time.monotonic() - started))
                continue
            seconds = time.monotonic() - started
            output = p.stdout + p.stderr
            if p.returncode != c.exit_code:
                out.append(failed(image.name, kind, name, f"exit code {p.returncode}, expected "
                                  f"{c.exit_code}: …{output.strip()[-400:]}", seconds))
                continue
            problem = self._expect(output, c.expect)
            out.append(failed(image.name, kind, name, problem, seconds) if problem
                       else passed(image.name, kind, name, seconds=seconds))
        return out

    def server(self, image: PreparedImage, cs: CheckSet, sc: ServerCheck
               ) -> list[CheckResult]:
        env, env_file = self._host_env(cs)
        return [self._server(image, cs, sc, run, env, env_file)
                for run in self.runs(image, sc.arbitrary_uid)]

    def _server(self, image: PreparedImage, cs: CheckSet, sc: ServerCheck, run: Run,
                env: dict[str, str], env_file: Path | None) -> CheckResult:
        port = free_port()
        sc = ServerCheck.model_validate(substitute(sc.model_dump(), image.labels, port,
                                                   run=run.tag, env=env))
        sc = sc.model_copy(update={"name": sc.name + run.suffix})
        started = time.monotonic()
        name = self._name()
        p = self.ctd.ctr(*self._args(image.uid_ref if run.arbitrary else image.ref, name,
                                     sc.args, sc.env, read_only=run.arbitrary,
                                     writable=cs.writable, net_host=True, gpu=False,
                                     detach=True, env_file=env_file, platform=image.platform))
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
                                     writable=[], net_host=True, gpu=False, detach=False,
                                     platform=image.platform),
                         timeout=300)
        return p.returncode == 0, p.stdout + p.stderr


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0
