#!/bin/bash
# Graceful executor decommission: Kubernetes runs this as the executor pod's preStop
# hook. Sends SIGPWR to the executor JVM (Spark migrates its blocks and shuffle data)
# and waits for it to exit, up to DECOM_TIMEOUT seconds.
set -u
pid=$(pgrep -f 'org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend' | head -n 1)
if [ -z "$pid" ]; then
  echo "decom: no executor process found" >&2
  exit 0
fi
echo "decom: sending SIGPWR to executor pid $pid"
kill -s SIGPWR "$pid"
timeout="${DECOM_TIMEOUT:-600}"
while kill -0 "$pid" 2>/dev/null && [ "$timeout" -gt 0 ]; do
  sleep 1
  timeout=$((timeout - 1))
done
kill -0 "$pid" 2>/dev/null && echo "decom: executor still running after the timeout" >&2
exit 0
