#!/usr/bin/env bash
# Go tools the layer-cache and CI-workflow tests use, built from the Go module proxy at
# pinned releases into the test cache (GOBIN, GOMODCACHE and GOCACHE there, as
# build-s3-server.sh does, so CI reuses the build):
#   referrers-registry  tools/referrers-registry: go-containerregistry's registry with
#               its OCI 1.1 referrers API on (Debian's docker-registry, distribution 2.8,
#               has none; zot is not served by the Go module proxy)
#   actionlint  checks the GitHub Actions workflow of docs/ci.md
# Networked: run by scripts/install-test-deps.sh, never by the tests.
set -euo pipefail
GGCR_VERSION=v0.22.1  # keep in step with tools/referrers-registry/go.mod
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
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$go_dir/bin/referrers-registry"
stamp="$GGCR_VERSION $(sha256sum "$here/tools/referrers-registry/main.go" | cut -c1-16)"
if [ -x "$bin" ] && [ "$(cat "$bin.version" 2>/dev/null)" = "$stamp" ]; then
  echo "referrers-registry ($stamp): $bin"
else
  (cd "$here/tools/referrers-registry" && GOMODCACHE="$go_dir/mod" GOCACHE="$go_dir/build" \
    GOFLAGS="-modcacherw -buildvcs=false" "$GO" build -o "$bin" .)
  echo "$stamp" >"$bin.version"
  echo "referrers-registry ($stamp): $bin"
fi
build actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"
