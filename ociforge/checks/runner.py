"""`ociforge test`: every check that applies to an image, in one pass per image.

Order per image: native checks on the tar headers, structure tests on the archive,
then runtime smoke in containerd (started once for the whole run). Of one platform:
the host's, or another one's (`--platform`), whose runtime checks run under emulation
where binfmt_misc can (GPU checks never: no GPU is passed to an emulated program)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import RecipeError
from ..image import host_platform
from ..outputs.archive import write_archive
from ..recipes import Project, suggest
from ..store import Store
from . import imagefs, jarclasses, native, structure
from .containerd import Containerd, can_run_containers
from .emulation import BINFMT_MISC, emulation_missing
from .gpu import GpuHost, discover
from .layerindex import LayerIndex
from .model import CheckSet, for_image, missing_env
from .report import CheckResult, skipped
from .runtime import RuntimeChecker, checked_image


class CheckRun:
    def __init__(self, store: Store, project: Project, report_dir: Path, *,
                 runtime: bool = True, containerd_address: Path | None = None,
                 gpu: GpuHost | None = None, only: list[str] | None = None,
                 progress: Callable[[str], None] | None = None,
                 platform: str | None = None, binfmt_misc: Path = BINFMT_MISC) -> None:
        for wanted in only or []:
            if wanted not in project.checks:
                raise RecipeError(f"unknown check set {wanted!r}"
                                  f"{suggest(wanted, list(project.checks))}")
        self.only = only
        self.store = store
        self.project = project
        self.report_dir = report_dir
        self.runtime = runtime
        self.containerd_address = containerd_address
        self.gpu = gpu or discover()
        # None: the host's (as a name tagged with an index stands for); another: emulated.
        self.platform = platform
        self.emulated = platform if platform not in (None, host_platform()) else None
        self.binfmt_misc = binfmt_misc
        self.progress = progress or (lambda _msg: None)
        self._ctd: Containerd | None = None
        self._checker: RuntimeChecker | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="ocf-test-", dir="/tmp"))
        self.index = LayerIndex(store, native.SECRET_CONTENT)

    def checksets(self, name: str) -> list[CheckSet]:
        features = self.project.resolve(name).features
        return [cs for set_name, cs in self.project.checks.items()
                if cs.applies_to(name, features) and (not self.only or set_name in self.only)]

    def _runtime(self) -> RuntimeChecker:
        if self._checker is None:
            self._ctd = Containerd(self.workdir / "containerd", self.containerd_address).start()
            self._checker = RuntimeChecker(self._ctd, self.workdir, self.gpu,
                                           self.project.root)
        return self._checker

    def image(self, name: str) -> list[CheckResult]:
        sets = self.checksets(name)
        if not sets:
            return [skipped(name, "native", "checks", "no check set in the recipes matches "
                            "this image")]
        img = checked_image(self.store, name, self.platform, emulated=bool(self.emulated))
        config = img.config
        labels = config.get("config", {}).get("Labels") or {}
        sets = [for_image(cs, labels, img.platform) for cs in sets]
        self.progress(f"{name}: reading layers")
        fs = imagefs.load(img, self.index)
        imagefs.read_small(img, self.index, fs, [fc.path.rstrip("/") for cs in sets
                                                 for fc in cs.files if fc.contains])
        results: list[CheckResult] = native.run(name, fs, config, sets)
        results += [jarclasses.check(img, self.index, fs, spec)
                    for cs in sets for spec in cs.duplicate_classes]
        archive = self.workdir / f"{name}.tar"

        def make_archive() -> Path:
            if not archive.exists():
                write_archive(self.store, [img], archive)
            return archive

        try:
            # Written once, when a step needs it: the tar driver's file tests, or an
            # import into containerd (none where containerd already has the image).
            self.progress(f"{name}: structure tests")
            results += structure.run(name, structure.config_for(sets, fs), self.report_dir,
                                     img.config_bytes, make_archive)
            results += self._runtime_checks(name, archive, sets)
        finally:
            archive.unlink(missing_ok=True)
        return results

    def _runtime_checks(self, name: str, archive: Path, sets: list[CheckSet]
                        ) -> list[CheckResult]:
        results: list[CheckResult] = []
        runnable = []
        for cs in sets:
            unset = missing_env(cs, os.environ)
            if cs.gpu and self.emulated:
                why = (f"GPU checks run on the host's platform ({host_platform()}) only, "
                       f"never under emulation of {self.emulated}")
                results += [skipped(name, "gpu", c, why) for c in _names(cs)]
            elif unset:  # a workload against a server of the user's, none given
                why = (f"needs {', '.join(unset)} in the environment (the server to run "
                       "this workload against; see docs/checks.md)")
                results += [skipped(name, "runtime", c, why) for c in _names(cs)]
            else:
                runnable.append(cs)
        if not any(_names(cs) for cs in runnable):
            return results
        reason = None if self.runtime else "runtime checks disabled (--no-runtime)"
        if reason is None and self.containerd_address is None:
            reason = can_run_containers()
        if reason is None and self.emulated:
            reason = emulation_missing(self.emulated, self.binfmt_misc)
        if reason:
            return results + [skipped(name, "runtime", c, reason)
                              for cs in runnable for c in _names(cs)]
        checker = self._runtime()
        self.progress(f"{name}: importing into containerd")
        prepared = checker.prepare(self.store, name, archive, self.emulated)
        if not prepared.imported:
            self.progress(f"{name}: in containerd already (same digest), not imported again")
        for cs in runnable:
            for cc in cs.commands:
                self.progress(f"{name}: {cc.name}")
                results += checker.command(prepared, cs, cc)
            for sc in cs.servers:
                self.progress(f"{name}: {sc.name} server")
                results += checker.server(prepared, cs, sc)
        return results

    def close(self) -> None:
        if self._ctd is not None:
            self._ctd.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _names(cs: CheckSet) -> list[str]:
    """The set's runtime checks (commands, then servers) by name."""
    return [c.name for c in cs.commands] + [s.name for s in cs.servers]
