"""The issue-17 benchmark harness (bench/): the inputs its scenarios edit are ones
ociforge accepts, and the docs sections are regenerated from the results alone.
Nothing here is timed (timings never go in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.project_copy import PROJECT, copy_project

sys.path.insert(0, str(PROJECT / "bench"))
from bench_buildah import ARCH_LOCKS, lock_with_pin
from run import regenerate_docs
from seeds_setup import PIN_FROM, PIN_TO, maven_jars

OCIFORGE = str(Path(sys.executable).with_name("ociforge"))
NEW_LINE = f"{PIN_TO} --hash=sha256:{'ab' * 32}  # zstandard-0.24.0-cp311-cp311-x.whl"


def lock_check(project: Path) -> subprocess.CompletedProcess[str]:
    # Only the baseline's Python layer: the GPU and Jupyter locks stacked on it would
    # need re-locking too, but no image of the scenario uses them.
    return subprocess.run([OCIFORGE, "--project", str(project), "lock", "--check",
                           "python-deps-4.1"],
                          capture_output=True, text=True, check=False)


def test_pin_change_scenario_gives_a_lock_ociforge_accepts(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "p")
    layer = project / "layers" / "python-deps-4.1.yaml"
    locks = project / "layers" / "locks"
    layer.write_text(layer.read_text().replace(PIN_FROM, PIN_TO))
    assert lock_check(project).returncode == 3  # the pin moved, the lock did not
    for name, platform in ARCH_LOCKS:  # each platform's lock of the layer
        (locks / name).write_text(lock_with_pin((locks / name).read_text(), NEW_LINE, platform))
    proc = lock_check(project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, _ in ARCH_LOCKS:
        text = (locks / name).read_text()
        assert NEW_LINE in text and PIN_FROM not in text


def test_iceberg_jars_are_named_by_maven_file_name() -> None:
    jars = dict(maven_jars(PROJECT / "layers" / "locks" / "iceberg-4.1.lock"))
    assert "iceberg-spark-runtime-4.1_2.13-1.11.0.jar" in jars
    assert all(len(sha) == 64 for sha in jars.values())


@pytest.mark.parametrize("suite", ["buildah", "crane"])
def test_docs_section_is_rewritten_from_results_only(tmp_path: Path, suite: str) -> None:
    results = tmp_path / "results"
    results.mkdir()
    machine = {"date": "2026-11-30T12:00:00+0000", "nproc": 2, "cpu": "test CPU",
               "loadavg_1_5_15": [1.0, 1.0, 1.0]}
    if suite == "buildah":
        row = {"scenario": "a", "case": "cold build", "buildah_s": 10.0, "ociforge_s": 2.0,
               "ratio": 0.2, "goal": 0.5, "met": True,
               "load_before": {"buildah": [1.0], "ociforge": [1.1]}}
        doc = {"machine": machine, "machine_after": machine, "buildah_version": "b 1",
               "storage_driver": "overlay", "isolation": "chroot",
               "buildah_base_import_s": 3.0, "changed_pin": "x", "rows": [row],
               "tools": {"buildah": {}, "ociforge": {}}}
        expect = "| a | cold build | 10.00 s | 2.00 s | **0.20** | ≤ 0.5: met |"
    else:
        row = {"case": "first push", "ociforge_s": 2.0, "crane_s": 1.0, "ratio": 2.0,
               "goal_text": "≤ 0.8× MISSED"}
        doc = {"machine": machine, "crane": "v0", "registry": "r", "runs": 1, "rows": [row],
               "loads": [{"before": [1.0], "after": [2.0]}], "runs_s": {}}
        expect = "| first push | 2.000 s | 1.000 s | 2.00 | ≤ 0.8× **missed** |"
    (results / f"{suite}.json").write_text(json.dumps(doc))
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# B\nbefore\n<!-- bench:{suite} -->\nold\n<!-- /bench:{suite} -->\n"
                    "after\n")
    regenerate_docs(page, results)
    text = page.read_text()
    assert expect in text
    assert "\nold\n" not in text
    assert text.startswith("# B\nbefore\n") and text.endswith(f"<!-- /bench:{suite} -->\nafter\n")
