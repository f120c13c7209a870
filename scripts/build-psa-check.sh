#!/usr/bin/env bash
# tools/psa-check: Kubernetes' own Pod Security admission checks
# (k8s.io/pod-security-admission, pinned in tools/psa-check/go.mod) as a command, built
# from the Go module proxy into the test cache (GOMODCACHE and GOCACHE there, like the
# S3 server; about 40 s and 60 MB the first time). Networked: run by
# scripts/install-test-deps.sh, never by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${OCIFORGE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ociforge-test}"
go_dir="$cache/go"
bin="$go_dir/bin/psa-check"
stamp=$(cat tools/psa-check/go.mod tools/psa-check/go.sum tools/psa-check/main.go | sha256sum | cut -c1-16)
if [ -x "$bin" ] && [ "$(cat "$bin.version" 2>/dev/null)" = "$stamp" ]; then
  echo "psa-check $stamp: $bin"
  exit 0
fi
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if [ ! -x "$GO" ]; then
  echo "go is not installed: psa-check is built from the Go module proxy" >&2
  exit 1
fi
mkdir -p "$go_dir/bin"
(cd tools/psa-check && GOMODCACHE="$go_dir/mod" GOCACHE="$go_dir/build" \
  GOFLAGS="-modcacherw -buildvcs=false -mod=readonly" "$GO" build -o "$bin" .)
echo "$stamp" >"$bin.version"
echo "psa-check $stamp: $bin"
