#!/bin/bash
# ociforge Spark entrypoint. Modes (SPARK_MODE or the first argument):
#   driver | executor | connect | history | jupyter | anything else: exec "$@"
# Runs in the foreground under tini, as uid 185 or any arbitrary uid (nss_wrapper),
# and writes only to /tmp and the declared volumes (read-only root filesystem).
set -eo pipefail

# -- an identity for arbitrary uids (OpenShift, runAsUser without a passwd entry) ------
uid=$(id -u)
gid=$(id -g)
if ! getent passwd "$uid" >/dev/null 2>&1; then
  nss_dir=$(mktemp -d /tmp/nss_wrapper.XXXXXX)
  cp /etc/passwd "$nss_dir/passwd"
  cp /etc/group "$nss_dir/group"
  echo "spark:x:${uid}:${gid}:Spark user:/tmp:/bin/bash" >>"$nss_dir/passwd"
  getent group "$gid" >/dev/null 2>&1 || echo "spark:x:${gid}:" >>"$nss_dir/group"
  export NSS_WRAPPER_PASSWD="$nss_dir/passwd" NSS_WRAPPER_GROUP="$nss_dir/group"
  export LD_PRELOAD="${LD_PRELOAD:+$LD_PRELOAD:}libnss_wrapper.so"
  export HOME=/tmp
fi
if [ ! -w "${HOME:-/nonexistent}" ]; then
  export HOME=/tmp
fi

export SPARK_HOME="${SPARK_HOME:-/opt/spark}"
export SPARK_LOG_DIR="${SPARK_LOG_DIR:-/tmp/spark-logs}"
export SPARK_PID_DIR="${SPARK_PID_DIR:-/tmp/spark-pids}"
mkdir -p "$SPARK_LOG_DIR" "$SPARK_PID_DIR" 2>/dev/null || true

# -- classpath and java options -------------------------------------------------------
SPARK_CLASSPATH="${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}${SPARK_HOME}/jars/*"
if [ -n "${SPARK_EXTRA_CLASSPATH:-}" ]; then
  SPARK_CLASSPATH="$SPARK_CLASSPATH:$SPARK_EXTRA_CLASSPATH"
fi
# Hadoop jars of a Hadoop installation, unless given (as Spark's own entrypoint does).
if [ -n "${HADOOP_HOME:-}" ] && [ -z "${SPARK_DIST_CLASSPATH:-}" ]; then
  SPARK_DIST_CLASSPATH="$("$HADOOP_HOME/bin/hadoop" classpath)"
  export SPARK_DIST_CLASSPATH
fi
if [ -n "${HADOOP_CONF_DIR:-}" ]; then
  SPARK_CLASSPATH="$HADOOP_CONF_DIR:$SPARK_CLASSPATH"
fi
if [ -n "${SPARK_CONF_DIR:-}" ]; then
  SPARK_CLASSPATH="$SPARK_CONF_DIR:$SPARK_CLASSPATH"
else
  SPARK_CLASSPATH="$SPARK_HOME/conf:$SPARK_CLASSPATH"
fi
# The working directory last (SPARK-43540, Spark 3.5+): files Spark downloads there
# (spark.files, spark.jars in cluster mode) are on the executor's classpath.
SPARK_CLASSPATH="$SPARK_CLASSPATH:$PWD"

# SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ... in numeric order (not lexical: 10 after 9).
SPARK_EXECUTOR_JAVA_OPTS=()
while IFS= read -r name; do
  SPARK_EXECUTOR_JAVA_OPTS+=("${!name}")
done < <(compgen -v SPARK_JAVA_OPT_ | sort -t_ -k4 -n)

if [ -n "${PYSPARK_PYTHON:-}" ]; then export PYSPARK_PYTHON; fi
if [ -n "${PYSPARK_DRIVER_PYTHON:-}" ]; then export PYSPARK_DRIVER_PYTHON; fi

# Settings that features bake in (GPU plugin, …) live in $SPARK_HOME/conf.d, not in
# conf/ (Kubernetes mounts its own ConfigMap over conf/): given to spark-submit as
# --conf before the user's arguments, which therefore win. SPARK_IMAGE_CONF_D=none
# leaves them out (e.g. a GPU image's Connect server on a machine without a GPU).
IMAGE_CONF=()
conf_d="${SPARK_IMAGE_CONF_D:-$SPARK_HOME/conf.d}"
for f in "$conf_d"/*.conf; do
  [ -f "$f" ] || continue
  while read -r key value; do
    case "$key" in "" | "#"*) continue ;; esac
    IMAGE_CONF+=(--conf "$key=$value")
  done <"$f"
done

mode="${SPARK_MODE:-}"
case "${1:-}" in
  driver | executor | connect | history | jupyter)
    mode="$1"
    shift
    ;;
esac

case "$mode" in
  driver)
    # Spark's Kubernetes backend sets SPARK_DRIVER_BIND_ADDRESS to the pod's IP and
    # executors learn it as SPARK_DRIVER_POD_IP; elsewhere the driver binds everywhere
    # and tells executors nothing it does not know.
    POD_IP_CONF=()
    if [ -n "${SPARK_DRIVER_BIND_ADDRESS:-}" ]; then
      POD_IP_CONF=(--conf "spark.executorEnv.SPARK_DRIVER_POD_IP=$SPARK_DRIVER_BIND_ADDRESS")
    fi
    exec "$SPARK_HOME/bin/spark-submit" "${IMAGE_CONF[@]}" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:-0.0.0.0}" \
      "${POD_IP_CONF[@]}" \
      --deploy-mode client "$@"
    ;;
  executor)
    exec "${JAVA_HOME:+$JAVA_HOME/bin/}java" "${SPARK_EXECUTOR_JAVA_OPTS[@]}" \
      -Xms"${SPARK_EXECUTOR_MEMORY:-1g}" -Xmx"${SPARK_EXECUTOR_MEMORY:-1g}" \
      -cp "$SPARK_CLASSPATH${SPARK_DIST_CLASSPATH:+:$SPARK_DIST_CLASSPATH}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "$SPARK_DRIVER_URL" \
      --executor-id "$SPARK_EXECUTOR_ID" \
      --cores "$SPARK_EXECUTOR_CORES" \
      --app-id "$SPARK_APPLICATION_ID" \
      --hostname "$SPARK_EXECUTOR_POD_IP" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      --podName "$SPARK_EXECUTOR_POD_NAME" \
      "$@"
    ;;
  connect)
    # Spark Connect server in the foreground (start-connect-server.sh daemonizes).
    exec "$SPARK_HOME/bin/spark-submit" "${IMAGE_CONF[@]}" \
      --class org.apache.spark.sql.connect.service.SparkConnectServer \
      --name "Spark Connect server" \
      --conf "spark.connect.grpc.binding.port=${SPARK_CONNECT_PORT:-15002}" \
      "$@" spark-internal
    ;;
  history)
    export SPARK_HISTORY_LOG_DIR="${SPARK_HISTORY_LOG_DIR:-file:///tmp/spark-events}"
    case "$SPARK_HISTORY_LOG_DIR" in
      file://*) mkdir -p "${SPARK_HISTORY_LOG_DIR#file://}" ;;
    esac
    export SPARK_HISTORY_OPTS="${SPARK_HISTORY_OPTS:-} -Dspark.history.fs.logDirectory=${SPARK_HISTORY_LOG_DIR} -Dspark.history.ui.port=${SPARK_HISTORY_PORT:-18080}"
    # spark-class passes SPARK_HISTORY_OPTS to the HistoryServer JVM.
    exec "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.history.HistoryServer "$@"
    ;;
  jupyter)
    # JupyterLab in the foreground: no browser; Jupyter reads its token from
    # JUPYTER_TOKEN (and makes one up and logs it when unset); state under /tmp.
    if ! command -v jupyter >/dev/null 2>&1; then
      echo "jupyter mode needs a Jupyter image (jupyter-*): JupyterLab is not installed" >&2
      exit 64
    fi
    export JUPYTER_CONFIG_DIR="${JUPYTER_CONFIG_DIR:-/tmp/jupyter/config}"
    export JUPYTER_DATA_DIR="${JUPYTER_DATA_DIR:-/tmp/jupyter/data}"
    export JUPYTER_RUNTIME_DIR="${JUPYTER_RUNTIME_DIR:-/tmp/jupyter/runtime}"
    export IPYTHONDIR="${IPYTHONDIR:-/tmp/jupyter/ipython}"
    export PYSPARK_SUBMIT_ARGS="${PYSPARK_SUBMIT_ARGS:-${IMAGE_CONF[*]} pyspark-shell}"
    exec jupyter lab --no-browser --ip="${JUPYTER_IP:-0.0.0.0}" \
      --port="${JUPYTER_PORT:-8888}" \
      --ServerApp.root_dir="${JUPYTER_ROOT_DIR:-/opt/spark/work-dir}" "$@"
    ;;
  "")
    if [ "$#" -eq 0 ]; then
      echo "usage: [driver|executor|connect|history|jupyter] ARGS... | COMMAND ARGS..." >&2
      exit 64
    fi
    exec "$@"
    ;;
  *)
    echo "unknown SPARK_MODE '$mode' (driver, executor, connect, history, jupyter)" >&2
    exit 64
    ;;
esac
