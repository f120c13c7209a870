#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian (bookworm) machine, as root:
# the Debian tools the tests drive for real, ociforge with its test extras in .venv,
# and the small Debian artifacts the tests use as inputs. Idempotent; downloads cached.
set -euo pipefail
cd "$(dirname "$0")/.."
OCIFORGE_EXTRAS='.[test]' bash scripts/install-deps.sh \
  docker-registry containerd runc skopeo umoci pigz zstd busybox-static faketime \
  apache2-utils openssl dpkg-dev default-jre-headless buildah maven gpg gpgv
# The Debian package starts a registry on :5000 that the tests do not use.
systemctl disable --now docker-registry >/dev/null 2>&1 || true

cache="${OCIFORGE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ociforge-test}"
mkdir -p "$cache"
if [ ! -s "$cache/busybox-static.deb" ]; then
  tmp=$(mktemp -d); chmod 777 "$tmp"
  (cd "$tmp" && apt-get download -qq busybox-static 2>/dev/null)
  mv "$tmp"/busybox-static_*.deb "$cache/busybox-static.deb"
  rm -rf "$tmp"
fi
# The tests' Go tools (S3 server, actionlint, referrers registry, Pod Security checks),
# from the Go module proxy.
bash scripts/build-go-tools.sh
echo "test dependencies ready (cache: $cache)"
