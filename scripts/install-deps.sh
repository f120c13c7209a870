#!/usr/bin/env bash
# What ociforge needs to build the Spark images on Debian (bookworm), as root:
# mmdebstrap for the base root filesystem, a Python 3.11 virtual environment with
# ociforge installed in it (.venv). Extra Debian packages may be passed as arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
# qemu-user-static and arch-test: the linux/arm64 Debian base (mmdebstrap runs its
# maintainer scripts under qemu through binfmt_misc, registered by register-qemu.sh).
DEBS=(python3 python3-venv python3-pip mmdebstrap ca-certificates qemu-user-static arch-test
      "$@")
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
bash scripts/register-qemu.sh
# A virtual environment: Debian's own python3 refuses `pip install` (PEP 668).
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
# pip is pinned: `pip` layers record the version that resolved and installed them.
.venv/bin/python -m pip install -q --disable-pip-version-check pip==26.3 >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e "${OCIFORGE_EXTRAS:-.}"
