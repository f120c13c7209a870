#!/usr/bin/env bash
# The S3 endpoint the workload tests start on 127.0.0.1: versitygw (Apache-2.0), an S3
# gateway over a directory, built from the Go module proxy at a pinned release into
# the test cache (GOBIN, GOMODCACHE and GOCACHE there, so CI reuses the build; about
# 2 minutes and 750 MB of module and build cache the first time). Networked: run by
# scripts/install-test-deps.sh, never by the tests.
set -euo pipefail
VERSITYGW_VERSION=v1.8.0
cache="${OCIFORGE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ociforge-test}"
go_dir="$cache/go"
bin="$go_dir/bin/versitygw"
if [ -x "$bin" ] && [ "$(cat "$bin.version" 2>/dev/null)" = "$VERSITYGW_VERSION" ]; then
  echo "versitygw $VERSITYGW_VERSION: $bin"
  exit 0
fi
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if [ ! -x "$GO" ]; then
  echo "go is not installed: versitygw is built from the Go module proxy (go install)" >&2
  exit 1
fi
mkdir -p "$go_dir/bin"
GOBIN="$go_dir/bin" GOMODCACHE="$go_dir/mod" GOCACHE="$go_dir/build" \
  GOFLAGS="-modcacherw -buildvcs=false" \
  "$GO" install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
echo "$VERSITYGW_VERSION" >"$bin.version"
echo "versitygw $VERSITYGW_VERSION: $bin"
