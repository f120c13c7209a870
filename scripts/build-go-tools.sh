#!/usr/bin/env bash
# Go tools the tests use, built from the Go module proxy at pinned releases into the
# test cache (GOBIN, GOMODCACHE and GOCACHE there, so CI reuses the builds); each is
# rebuilt only when its version (or, for the small commands under tools/, its sources)
# changed:
#   versitygw           the S3 server of the workload tests (tests/s3_server.py)
#   actionlint          checks the GitHub Actions workflow of docs/ci.md
#   referrers-registry  tools/referrers-registry: go-containerregistry's registry with
#                       its OCI 1.1 referrers API on (Debian's docker-registry,
#                       distribution 2.8, has none; zot is not served by the Go proxy)
#   psa-check           tools/psa-check: Kubernetes' Pod Security admission checks
#                       (k8s.io/pod-security-admission) for the pod-template tests
#   crane               go-containerregistry's CLI, the daemonless image tool the
#                       benchmarks compare `ociforge push` with (bench/bench_crane.py)
# Networked: run by scripts/install-test-deps.sh, never by the tests.
set -euo pipefail
VERSITYGW_VERSION=v1.8.0
ACTIONLINT_VERSION=v1.7.12
CRANE_VERSION=v0.22.1
here=$(cd "$(dirname "$0")/.." && pwd)
cache="${OCIFORGE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ociforge-test}"
go_dir="$cache/go"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if [ ! -x "$GO" ]; then
  echo "go is not installed: the tests' Go tools are built from the Go module proxy" >&2
  exit 1
fi
mkdir -p "$go_dir/bin"
export GOMODCACHE="$go_dir/mod" GOCACHE="$go_dir/build"

fresh() {  # name stamp: the binary is there and was built from this stamp
  [ -x "$go_dir/bin/$1" ] && [ "$(cat "$go_dir/bin/$1.version" 2>/dev/null)" = "$2" ]
}

done_() {  # name stamp
  echo "$2" >"$go_dir/bin/$1.version"
  echo "$1 ($2): $go_dir/bin/$1"
}

install() {  # name module version: a released command, `go install MODULE@VERSION`
  if ! fresh "$1" "$3"; then
    GOBIN="$go_dir/bin" GOFLAGS="-modcacherw -buildvcs=false" "$GO" install "$2@$3"
  fi
  done_ "$1" "$3"
}

build_local() {  # name: a command of ours under tools/NAME, pinned by its go.mod/go.sum
  local stamp
  stamp=$(cat "$here/tools/$1"/go.mod "$here/tools/$1"/go.sum "$here/tools/$1"/*.go |
          sha256sum | cut -c1-16)
  if ! fresh "$1" "$stamp"; then
    (cd "$here/tools/$1" && GOFLAGS="-modcacherw -buildvcs=false -mod=readonly" \
      "$GO" build -o "$go_dir/bin/$1" .)
  fi
  done_ "$1" "$stamp"
}

install versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION"
install actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"
install crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION"
build_local referrers-registry
build_local psa-check
