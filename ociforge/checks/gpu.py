"""GPU injection for runtime checks, the way nvidia-container-toolkit does it: the
device nodes, the host driver's user-space libraries and `nvidia-smi` are bound
into the container. The image carries CUDA runtimes as wheels; the driver is the
host's. Discovery takes a root directory so it can be tested on a fake layout."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DRIVER_LIBS = re.compile(
    r"^lib(cuda|nvidia-ml|nvidia-ptxjitcompiler|nvidia-nvvm|nvidia-gpucomp|cudadebugger|"
    r"nvidia-allocator|nvidia-cfg|nvidia-opencl)\.so(\.\d+)*$")
LIB_DIRS = ["usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/lib", "usr/local/nvidia/lib64"]
CONTAINER_LIB_DIR = "/usr/lib/x86_64-linux-gnu"
BINARIES = ["nvidia-smi", "nvidia-debugdump", "nvidia-persistenced"]


@dataclass
class GpuHost:
    devices: list[str] = field(default_factory=list)      # /dev/nvidia0, /dev/nvidiactl, …
    libraries: list[Path] = field(default_factory=list)   # host paths
    binaries: list[Path] = field(default_factory=list)

    @property
    def present(self) -> bool:
        return any(d.endswith("nvidiactl") for d in self.devices) and any(
            p.name.startswith("libcuda.so") for p in self.libraries)

    def reason_absent(self) -> str:
        if not any(d.endswith("nvidiactl") for d in self.devices):
            return "no NVIDIA GPU on this machine (/dev/nvidiactl is missing)"
        return "NVIDIA devices present but no driver library libcuda.so found"

    def ctr_args(self) -> list[str]:
        """`ctr run` arguments: devices, then read-only binds of libraries and tools."""
        args: list[str] = []
        for dev in self.devices:
            args += ["--device", dev]
        for lib in self.libraries:
            args += ["--mount", f"type=bind,src={lib},dst={CONTAINER_LIB_DIR}/{lib.name},"
                                "options=rbind:ro"]
        for binary in self.binaries:
            args += ["--mount", f"type=bind,src={binary},dst=/usr/bin/{binary.name},"
                                "options=rbind:ro"]
        return args


def discover(root: Path = Path("/")) -> GpuHost:
    host = GpuHost()
    dev = root / "dev"
    if dev.is_dir():
        for p in sorted(dev.iterdir()):
            if re.fullmatch(r"nvidia(\d+|ctl|-uvm|-uvm-tools|-modeset)", p.name):
                host.devices.append("/dev/" + p.name)
    seen: set[str] = set()
    for d in LIB_DIRS:
        libdir = root / d
        if not libdir.is_dir():
            continue
        for p in sorted(libdir.iterdir()):
            if DRIVER_LIBS.match(p.name) and p.name not in seen:
                seen.add(p.name)
                host.libraries.append(p)
    for name in BINARIES:
        for d in ("usr/bin", "usr/local/bin", "usr/local/nvidia/bin"):
            if (root / d / name).exists():
                host.binaries.append(root / d / name)
                break
    return host
