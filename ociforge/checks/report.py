"""Check results and their three renderings: a table, JUnit XML, JSON."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass
class CheckResult:
    image: str
    kind: str        # structure, native, runtime, server, gpu
    name: str
    status: str
    message: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def passed(image: str, kind: str, name: str, message: str = "", seconds: float = 0.0
           ) -> CheckResult:
    return CheckResult(image, kind, name, PASSED, message, round(seconds, 3))


def failed(image: str, kind: str, name: str, message: str, seconds: float = 0.0
           ) -> CheckResult:
    return CheckResult(image, kind, name, FAILED, message, round(seconds, 3))


def skipped(image: str, kind: str, name: str, reason: str) -> CheckResult:
    return CheckResult(image, kind, name, SKIPPED, reason)


def summary(results: list[CheckResult]) -> dict[str, int]:
    out = {PASSED: 0, FAILED: 0, SKIPPED: 0}
    for r in results:
        out[r.status] += 1
    return out


def write_junit(results: list[CheckResult], path: Path) -> None:
    suites = ET.Element("testsuites")
    for image in dict.fromkeys(r.image for r in results):
        mine = [r for r in results if r.image == image]
        counts = summary(mine)
        suite = ET.SubElement(suites, "testsuite", name=image, tests=str(len(mine)),
                              failures=str(counts[FAILED]), skipped=str(counts[SKIPPED]),
                              time=f"{sum(r.seconds for r in mine):.3f}")
        for r in mine:
            case = ET.SubElement(suite, "testcase", classname=f"{image}.{r.kind}", name=r.name,
                                 time=f"{r.seconds:.3f}")
            if r.status == FAILED:
                ET.SubElement(case, "failure", message=r.message[:500]).text = r.message
            elif r.status == SKIPPED:
                ET.SubElement(case, "skipped", message=r.message)
    ET.indent(suites)
    path.write_bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True))


def write_json(results: list[CheckResult], path: Path) -> None:
    data = {"summary": summary(results), "results": [r.to_json() for r in results]}
    path.write_text(json.dumps(data, indent=2) + "\n")


def markdown(results: list[CheckResult]) -> str:
    lines = ["| image | kind | check | result | seconds | detail |", "|---|---|---|---|---:|---|"]
    for r in results:
        detail = r.message.replace("|", "\\|").replace("\n", " ")[:160]
        lines.append(f"| `{r.image}` | {r.kind} | {r.name} | {r.status} | {r.seconds:.1f} | "
                     f"{detail} |")
    counts = summary(results)
    lines += ["", f"{counts[PASSED]} passed, {counts[FAILED]} failed, "
                  f"{counts[SKIPPED]} skipped"]
    return "\n".join(lines) + "\n"
