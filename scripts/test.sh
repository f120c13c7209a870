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
# mmdebstrap and the chroot tests bind-mount /dev into temporary trees: a removal
# that crossed a live bind mount would take the host's device nodes with it.
dev_null_ok() {
  [ -c /dev/null ] || { echo "test.sh: /dev/null is not a character device ($1);" \
    "restore it: rm -f /dev/null && mknod -m 666 /dev/null c 1 3" >&2; return 1; }
}
dev_null_ok "before the tests"
status=0
python -m pytest -v -ra --durations=20 "$@" || status=$?
dev_null_ok "after the tests" || status=1
exit $status
