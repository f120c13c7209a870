#!/usr/bin/env bash
# Go tools the layer-cache and CI-workflow tests use, built from the Go module proxy at
# pinned releases into the test cache (GOBIN, GOMODCACHE and GOCACHE there, as
# build-s3-server.sh does, so CI reuses the build):
#   registry    go-containerregistry's registry: implements the OCI 1.1 referrers API
#               (Debian's docker-registry, distribution 2.8, does not)
#   actionlint  checks the GitHub Actions workflow of docs/ci.md
# Networked: run by scripts/install-test-deps.sh, never by the tests.
set -euo pipefail
GGCR_VERSION=v0.22.1
ACTIONLINT_VERSION=v1.7.12
cache="${OCIFORGE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ociforge-test}"
go_dir="$cache/go"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if [ ! -x "$GO" ]; then
  echo "go is not installed: the test registry and actionlint are built with go install" >&2
  exit 1
fi
mkdir -p "$go_dir/bin"
build() {  # name module version
  local bin="$go_dir/bin/$1"
  if [ -x "$bin" ] && [ "$(cat "$bin.version" 2>/dev/null)" = "$3" ]; then
    echo "$1 $3: $bin"
    return
  fi
  GOBIN="$go_dir/bin" GOMODCACHE="$go_dir/mod" GOCACHE="$go_dir/build" \
    GOFLAGS="-modcacherw -buildvcs=false" "$GO" install "$2@$3"
  echo "$3" >"$bin.version"
  echo "$1 $3: $bin"
}
build registry github.com/google/go-containerregistry/cmd/registry "$GGCR_VERSION"
build actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"
