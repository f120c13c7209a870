#!/usr/bin/env bash
# The whole test suite, end-to-end tests included, on a fresh Debian machine (root).
# Installs what it needs first (scripts/install-test-deps.sh). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check ociforge tests bench
mypy ociforge
# Every lock present and current (no network): a missing or stale lock fails here.
ociforge lock --check
# The only networked step: real Spark images from PyPI and Debian into the test cache.
CHECK_BASE_REPRODUCIBLE=${CHECK_BASE_REPRODUCIBLE:-1} bash scripts/prebuild-spark.sh
python -m pytest -v -ra --durations=20 "$@"
