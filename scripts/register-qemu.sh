#!/usr/bin/env bash
# Registers qemu-aarch64 (from Debian's qemu-user-static) with binfmt_misc, as root, so
# that linux/arm64 programs run on an amd64 machine: mmdebstrap's maintainer scripts
# for the arm64 Debian base, and arm64 images under containerd (tests/test_platforms_run.py).
# A fresh machine or container without systemd-binfmt has none registered. Idempotent.
set -euo pipefail
binfmt=/proc/sys/fs/binfmt_misc
conf=/usr/lib/binfmt.d/qemu-aarch64.conf
if [ "$(uname -m)" = aarch64 ] || [ -e "$binfmt/qemu-aarch64" ]; then
  exit 0
fi
if [ ! -e "$binfmt/register" ]; then
  mount -t binfmt_misc binfmt_misc "$binfmt"
fi
if [ ! -s "$conf" ]; then
  echo "register-qemu: $conf is missing: apt-get install qemu-user-static" >&2
  exit 1
fi
# The file holds the one registration line (":name:type:offset:magic:mask:interpreter:flags");
# flag F opens the interpreter now, so it works inside containers and chroots too.
grep -v '^#' "$conf" | grep . > "$binfmt/register"
test -e "$binfmt/qemu-aarch64"
echo "qemu-aarch64 registered with binfmt_misc"
