#!/usr/bin/env bash
# One command, on a fresh Debian machine as root: install what ociforge needs, build
# a Spark image and write it as an archive for `minikube image load`.
#   scripts/build-spark.sh [IMAGE] [ARCHIVE]      (default: spark-4.1.1 out/IMAGE.tar)
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:-spark-4.1.1}"
archive="${2:-out/$image.tar}"
# The archive holds one platform (what `minikube image load` takes): this machine's,
# unless PLATFORM says otherwise (e.g. PLATFORM=linux/arm64, built under qemu).
platform="${PLATFORM:-linux/$(dpkg --print-architecture)}"
bash scripts/install-deps.sh
mkdir -p "$(dirname "$archive")"
.venv/bin/ociforge --project . assemble "$image" --platform "$platform" --archive "$archive"
ref=$(.venv/bin/ociforge --project . inspect "$image" --json |
      .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["reference"])')
echo
echo "wrote $archive ($ref). Load it with one of:"
echo "  minikube image load $archive"
echo "  kind load image-archive $archive"
echo "  ctr -n k8s.io images import $archive"
