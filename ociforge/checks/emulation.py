"""Running another platform's images here: containerd and runc start them like any
other, and the kernel hands their programs to the interpreter binfmt_misc has for
that architecture (qemu-user-static, registered by scripts/register-qemu.sh). Without
one they cannot run at all, so their runtime checks are skipped, saying why."""

from __future__ import annotations

from pathlib import Path

from ..platforms import machine

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")


# ELF e_machine of each architecture (bytes 18-19 of the header, little-endian).
_ELF_MACHINE = {"aarch64": 0xB7, "x86_64": 0x3E}


def _interprets(entry: Path, arch: str) -> bool:
    """Whether a binfmt_misc entry is enabled and takes 64-bit ELF programs of `arch`
    (by its magic: whatever the interpreter is called, qemu-aarch64-static or
    Debian's /usr/libexec/qemu-binfmt/aarch64-binfmt-P)."""
    try:
        lines = entry.read_text().splitlines()
    except OSError:
        return False
    fields = dict(ln.split(" ", 1) for ln in lines[1:] if " " in ln)
    try:
        magic = bytes.fromhex(fields.get("magic", ""))
    except ValueError:
        return False
    return (bool(lines) and lines[0] == "enabled" and fields.get("offset", "0") == "0"
            and len(magic) >= 20 and magic[:5] == b"\x7fELF\x02"
            and magic[18:20] == _ELF_MACHINE[arch].to_bytes(2, "little"))


def emulation_missing(platform: str, root: Path = BINFMT_MISC) -> str | None:
    """None if binfmt_misc has an enabled interpreter for `platform`'s programs, else a
    one-line reason naming what is missing and how to register it."""
    arch = machine(platform)
    fix = "run scripts/register-qemu.sh as root (qemu-user-static)"
    if not (root / "status").exists():
        return f"{platform} runs under emulation here, and binfmt_misc is not mounted: {fix}"
    entries = [p for p in sorted(root.iterdir()) if p.name not in ("register", "status")]
    if any(_interprets(p, arch) for p in entries):
        return None
    return (f"{platform} runs under emulation here, and binfmt_misc has no enabled "
            f"interpreter for {arch} (qemu-{arch}): {fix}")
