#!/bin/bash
# GPU discovery script for Spark resource scheduling
# (spark.{driver,executor}.resource.gpu.discoveryScript): prints the GPUs this
# container sees as {"name": "gpu", "addresses": ["0", "1", ...]}.
set -euo pipefail
addresses=()
while IFS= read -r index; do
  index="${index//[[:space:]]/}"
  [ -n "$index" ] && addresses+=("\"$index\"")
done < <(nvidia-smi --query-gpu=index --format=csv,noheader)
joined=$(IFS=,; echo "${addresses[*]:-}")
echo "{\"name\": \"gpu\", \"addresses\": [${joined//,/, }]}"
