#!/usr/bin/env bash
# Builds the Spark baseline images, the Python layers of the features (cuDF for GPU
# images, JupyterLab, the 3.5 Connect client) and every Maven add-on layer (from the
# committed locks) into the test cache's store, and fills a Maven repository of the
# real add-on jars under the test cache (tests/maven_cache.py): the one step of the
# test run that reaches PyPI, Debian and Maven Central, so that the tests assemble all
# images with the network closed (they serve that repository on 127.0.0.1). Layers
# already cached are not rebuilt, jars already in the repository not fetched again.
# With CHECK_BASE_REPRODUCIBLE=1 it also builds the Debian base layer a second time
# from its lock in a fresh store, with an empty downloads cache (every .deb fetched
# again), and fails if the two differ.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${OCIFORGE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ociforge-test}"
store="$cache/spark-store"
OCIFORGE=${OCIFORGE:-ociforge}
# The matrix declares linux/amd64 and linux/arm64; the test store needs amd64 only (the
# arm64 tests build their own, tests/test_platforms_run.py).
export OCIFORGE_PLATFORMS=${OCIFORGE_PLATFORMS:-linux/amd64}
PYTHON=${PYTHON:-python3}
"$OCIFORGE" --store "$store" --project . assemble spark-4.1.1 spark-4.1.0 spark-3.5.8 spark-3.5.7 \
  spark-4.3.0 spark-4.1.4 spark-3.5.9
"$OCIFORGE" --store "$store" --project . layers build python-gpu-4.1 python-gpu-3.5 \
  jupyterlab-4.1 jupyterlab-3.5 python-connect-3.5
# linux/arm64 (tests/test_platforms_run.py): the layers that differ per platform for
# spark-4.1.1, spark-4.1.1-gpu-iceberg and jupyter-4.1.1 (the Python layers with native
# code, NVIDIA's arm64 RAPIDS jar); every other layer is the amd64 one. The Debian base
# runs its maintainer scripts under qemu (binfmt_misc, registered here if missing).
bash scripts/register-qemu.sh
"$OCIFORGE" --store "$store" --project . layers build --platform linux/arm64 \
  debian-base python-deps-4.1 python-gpu-4.1 jupyterlab-4.1 rapids-4.1

# Maven add-ons: every maven layer, from the committed locks (Maven Central, each jar
# checked against its lock), then the same jars, the seeds' dependency list and the
# extra jars tests need into the Maven repository under the test cache, by Maven.
# shellcheck disable=SC2046
"$OCIFORGE" --store "$store" --project . layers build $("$PYTHON" tests/maven_cache.py layers)
m2="$cache/m2"
work=$(mktemp -d /tmp/ocf-m2.XXXXXX)
"$PYTHON" tests/maven_cache.py pom > "$work/pom.xml"
mvn -q -B -Dmaven.repo.local="$m2" -f "$work/pom.xml" dependency:copy
for pom in tests/data/seed-deps/*/pom.xml; do
  mvn -q -B -Dmaven.repo.local="$m2" -f "$pom" dependency:copy-dependencies \
    -DoutputDirectory="$work/seed"
done
rm -rf "$work"

if [ "${CHECK_BASE_REPRODUCIBLE:-0}" = 1 ]; then
  fresh=$(mktemp -d /tmp/ocf-repro.XXXXXX)
  trap 'rm -rf "$fresh"' EXIT
  # The base the images use now (the store may also hold older cached versions).
  first=$("$OCIFORGE" --store "$store" inspect spark-4.1.1 --json |
          python3 -c 'import json,sys; print(next(l["diff_id"] for l in json.load(sys.stdin)["layers"] if l["name"]=="debian-base"))')
  mkdir -p "$fresh/proj/layers/locks" "$fresh/proj/recipes"
  cp layers/debian-base.yaml "$fresh/proj/layers/"
  cp layers/locks/debian-base.lock "$fresh/proj/layers/locks/"
  printf 'images:\n  base:\n    layers: [debian-base]\n' > "$fresh/proj/recipes/base.yaml"
  TZ=Asia/Tokyo OCIFORGE_CACHE="$fresh/cache" \
    "$OCIFORGE" --store "$fresh/store" --project "$fresh/proj" assemble base >/dev/null
  second=$("$OCIFORGE" --store "$fresh/store" layers ls --json |
           python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["diff_id"])')
  if [ "$first" != "$second" ]; then
    echo "debian-base is not reproducible: $first vs $second" >&2
    exit 1
  fi
  echo "debian-base rebuilt in a fresh store: same diff_id $first"
fi
