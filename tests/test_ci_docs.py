"""The CI workflows of docs/ci.md are valid and use only what ociforge has: the GitHub
workflow passes actionlint (built from the Go module proxy by scripts/build-go-tools.sh),
the GitLab one parses, both are the files docs/examples holds, every `ociforge`
subcommand they run exists, and the plan output they read has the keys they read."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import TEST_CACHE, run_cli
from registry_images import fleet_project

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / "docs" / "examples" / "github-workflow.yml"
GITLAB = ROOT / "docs" / "examples" / "gitlab-ci.yml"
ACTIONLINT = TEST_CACHE / "go" / "bin" / "actionlint"


def test_github_workflow_passes_actionlint() -> None:
    if not ACTIONLINT.exists():
        pytest.fail(f"{ACTIONLINT} is missing: run scripts/build-go-tools.sh")
    p = subprocess.run([str(ACTIONLINT), "-no-color", str(GITHUB)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_docs_show_the_checked_files() -> None:
    doc = (ROOT / "docs" / "ci.md").read_text()
    assert GITHUB.read_text() in doc
    assert GITLAB.read_text() in doc
    gitlab = yaml.safe_load(GITLAB.read_text())
    assert gitlab["stages"] == ["plan", "build", "publish", "test"]


def test_workflows_run_only_existing_commands(tmp_path: Path) -> None:
    lines = (GITHUB.read_text() + GITLAB.read_text()).splitlines()
    text = "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in lines)  # no comments
    commands = set(re.findall(r"ociforge ((?:layers|store) \w+|[a-z]+)", text))
    commands.discard("layers")
    assert {"plan", "push", "test", "sbom", "assemble", "lock", "layers build"} <= commands
    for command in sorted(commands):
        r = run_cli(*command.split(), "--help", store=tmp_path / "s")
        assert r.rc == 0, (command, r.err)


def test_plan_output_has_what_the_workflows_read(tmp_path: Path) -> None:
    project = fleet_project(tmp_path / "proj")
    r = run_cli("plan", "--all", "--jobs", "4", "--github-matrix", store=tmp_path / "s",
                project=project)
    assert r.rc == 0, r.err
    matrix = json.loads(r.out)
    assert len(matrix["include"]) == 4
    assert all(set(e) == {"job", "layers"} for e in matrix["include"])
    r = run_cli("plan", "--all", "--jobs", "4", "--json", store=tmp_path / "s",
                project=project)
    plan = r.json()
    assert all({"job", "layers"} <= set(j) for j in plan["jobs"])
    assert sorted(plan["publish"]) == ["img-a", "img-b", "img-c", "img-d", "img-e"]


def test_plan_commands_carry_the_cache(tmp_path: Path) -> None:
    """`ociforge --cache R plan` prints job commands a runner can paste: with `--cache`."""
    project = fleet_project(tmp_path / "proj")
    r = run_cli("--cache", "127.0.0.1:5000/ci/cache", "plan", "--all", "--jobs", "2",
                store=tmp_path / "s", project=project)
    assert r.rc == 0, r.err
    jobs = [ln for ln in r.out.splitlines() if ln.startswith("job ")]
    assert len(jobs) == 2
    assert all("ociforge --cache 127.0.0.1:5000/ci/cache layers build " in j for j in jobs)
    assert "ociforge --cache 127.0.0.1:5000/ci/cache push --all" in r.out
