#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian (bookworm) machine, as root:
# Debian tools the tests drive for real, the package with its test extras, and the
# small Debian artifacts the tests use as inputs. Idempotent; downloads are cached.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(python3 python3-venv docker-registry containerd runc skopeo umoci mmdebstrap pigz zstd busybox-static
      faketime apache2-utils openssl ca-certificates dpkg-dev default-jre-headless)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package starts a registry on :5000 that the tests do not use.
systemctl disable --now docker-registry >/dev/null 2>&1 || true

# A virtual environment: Debian's own python3 refuses `pip install` (PEP 668).
if [ ! -x .venv/bin/python ]; then
  if ! "${PYTHON:-python3}" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    apt-get install -y -qq python3-venv python3-pip >/dev/null
    "${PYTHON:-python3}" -m venv .venv
  fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

cache="${OCIFORGE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ociforge-test}"
mkdir -p "$cache"
if [ ! -s "$cache/busybox-static.deb" ]; then
  tmp=$(mktemp -d); chmod 777 "$tmp"
  (cd "$tmp" && apt-get download -qq busybox-static 2>/dev/null)
  mv "$tmp"/busybox-static_*.deb "$cache/busybox-static.deb"
  rm -rf "$tmp"
fi
echo "test dependencies ready (cache: $cache)"
