"""A copy of this repository's recipes, layers and docker/ files, for tests and
benchmarks that write into a project (lock files of stand-in jars, extra recipes)
without touching the checkout."""

from __future__ import annotations

import shutil
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
NOT_PROJECT = (".git", ".venv", "tests", "bench", "docs", "*_cache", "*.egg-info", "out")


def copy_project(dest: Path, *also_leave_out: str) -> Path:
    shutil.copytree(PROJECT, dest, ignore=shutil.ignore_patterns(*NOT_PROJECT, *also_leave_out))
    return dest
