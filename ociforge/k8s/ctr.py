"""A pod template's security context as `ctr run` options, so that a container started
in containerd runs the way the kubelet would start the template's container: its user
and group, a read-only root, each `emptyDir` as the kubelet makes it (a directory of
the node, mode 0777; with `fsGroup`, group fsGroup and mode 2777, bind-mounted), the
capabilities it drops and adds, no_new_privs unless privilege escalation is allowed,
and containerd's default seccomp profile for `RuntimeDefault`.

Not a tmpfs per emptyDir: runc gives a tmpfs mounted over an image directory that
directory's mode (0775 for /opt/spark/work-dir), which the kubelet's emptyDir does not
have, and an arbitrary uid could not write there.

What a template says that `ctr` cannot do is an error, never skipped. One thing the
kubelet does is out of ctr 1.6's reach: `fsGroup` as a supplementary group of the
process (the volumes' group and setgid bit are reproduced; writing needs neither).
ctr 1.6 also has no `--user`: the caller runs an image whose config `User` is `user`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OciforgeError

# Every Linux capability (linux/capability.h, CAP_LAST_CAP = CAP_CHECKPOINT_RESTORE):
# `drop: [ALL]` drops each of them, since ctr 1.6's --cap-drop knows no ALL.
ALL_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN",
    "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
    "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
    "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)


class TemplateError(OciforgeError):
    """A template that cannot be run as written (a volume type ctr cannot make, …)."""

    exit_code = 3


@dataclass(frozen=True)
class EmptyDir:
    volume: str                        # the volume's name
    mount_path: str
    group: int | None                  # fsGroup: the directory's group, mode 2777


@dataclass(frozen=True)
class RunOptions:
    user: str                          # "uid:gid", for the image config's User
    read_only: bool
    empty_dirs: list[EmptyDir]
    cap_drop: list[str]
    cap_add: list[str]
    no_new_privileges: bool
    seccomp_default: bool

    def ctr_args(self, pod_dir: Path) -> list[str]:
        """`ctr run` flags (before the image reference). The emptyDirs are directories
        under `pod_dir`, made here as the kubelet makes them if they do not exist yet
        (containers of one pod share them)."""
        args: list[str] = ["--read-only"] if self.read_only else []
        for d in self.empty_dirs:
            src = pod_dir / d.volume
            if not src.exists():
                src.mkdir(parents=True)
                if d.group is not None:
                    os.chown(src, 0, d.group)
                src.chmod(0o2777 if d.group is not None else 0o777)
            args += ["--mount", f"type=bind,src={src},dst={d.mount_path},options=rbind:rw"]
        for cap in self.cap_drop:
            args += ["--cap-drop", f"CAP_{cap}"]
        for cap in self.cap_add:
            args += ["--cap-add", f"CAP_{cap}"]
        if not self.no_new_privileges:
            args.append("--allow-new-privs")
        if self.seccomp_default:
            args.append("--seccomp")
        return args


def _setting(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A container's securityContext value, else the pod's (as the kubelet resolves it)."""
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (pod.get("securityContext") or {}).get(key)


def run_options(manifest: dict[str, Any], container: int = 0,
                user_override: tuple[int, int] | None = None) -> RunOptions:
    """The `ctr run` options for one container of a pod manifest. `user_override` is
    what a namespace that assigns uids (OpenShift's restricted SCC) puts in place of
    runAsUser/runAsGroup."""
    spec = manifest.get("spec") or {}
    c = (spec.get("containers") or [])[container]
    sc = c.get("securityContext") or {}
    uid = _setting(spec, c, "runAsUser")
    gid = _setting(spec, c, "runAsGroup")
    if user_override is not None:
        uid, gid = user_override
    if uid is None:
        raise TemplateError("the template sets no runAsUser: the image's user would apply")
    fs_group = (spec.get("securityContext") or {}).get("fsGroup")
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    empty_dirs = []
    for m in c.get("volumeMounts") or []:
        vol = volumes.get(m["name"])
        if vol is None:
            raise TemplateError(f"volumeMount {m['name']!r} names no volume")
        if "emptyDir" not in vol:
            raise TemplateError(f"volume {m['name']!r}: only emptyDir volumes can be run here")
        empty_dirs.append(EmptyDir(m["name"], m["mountPath"], fs_group))
    caps = sc.get("capabilities") or {}
    drop = [d.upper().removeprefix("CAP_") for d in caps.get("drop") or []]
    profile = (_setting(spec, c, "seccompProfile") or {}).get("type")
    if profile not in (None, "RuntimeDefault", "Unconfined"):
        raise TemplateError(f"seccompProfile {profile!r}: only RuntimeDefault or Unconfined "
                            "can be run here")
    if sc.get("privileged"):
        raise TemplateError("privileged containers are not run here")
    return RunOptions(
        user=f"{uid}:{gid if gid is not None else 0}",
        read_only=bool(sc.get("readOnlyRootFilesystem")),
        empty_dirs=empty_dirs,
        cap_drop=list(ALL_CAPABILITIES) if "ALL" in drop else drop,
        cap_add=[a.upper().removeprefix("CAP_") for a in caps.get("add") or []],
        no_new_privileges=sc.get("allowPrivilegeEscalation") is False,
        seccomp_default=profile == "RuntimeDefault",
    )
