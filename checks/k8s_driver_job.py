"""The driver of a two-container job (tests/test_k8s_modes.py): what Spark's Kubernetes
backend does for one executor pod, done by hand, then a job that must run there.

1. Print the executor's environment exactly as BasicExecutorFeatureStep builds it
   (SPARK_DRIVER_URL, SPARK_EXECUTOR_*, SPARK_APPLICATION_ID, SPARK_JAVA_OPT_n from
   spark.executor.extraJavaOptions split by Spark's own Utils.splitCommandString, then
   the executor start-up settings as -Dkey=value) as one `OCF EXECUTOR ENV {json}` line:
   the test starts the executor container with it.
2. Wait until that executor registered with this driver.
3. Run a job whose tasks report where they ran: the executor's pod name from their
   environment, the executor JVM's command line from /proc (its own container's
   process list) and the security they run under; then the driver's REST API's list
   of executors and the driver's own security.

Arguments: EXECUTOR_ID EXECUTOR_CORES EXECUTOR_MEMORY POD_NAME POD_IP [WAIT_S]
"""

import json
import os
import sys
import time
import urllib.request

from pyspark.sql import SparkSession


def is_executor_startup_conf(name: str) -> bool:
    """SparkConf.isExecutorStartupConf: the settings an executor needs before it can
    talk to the driver (auth, rpc, network, ports)."""
    return ((name.startswith("spark.auth") and name != "spark.authenticate.secret")
            or name.startswith("spark.rpc") or name.startswith("spark.network")
            or (name.startswith("spark.") and name.endswith(".port"))
            or name.startswith("spark.port."))


def executor_env(spark: SparkSession, executor_id: str, cores: str, memory: str,
                 pod_name: str, pod_ip: str) -> dict:
    sc = spark.sparkContext
    conf = sc.getConf()
    jvm = sc._jvm
    app_id = sc.applicationId
    user_opts = []
    extra = conf.get("spark.executor.extraJavaOptions")
    if extra:
        extra = extra.replace("{{APP_ID}}", app_id).replace("{{EXECUTOR_ID}}", executor_id)
        seq = jvm.org.apache.spark.util.Utils.splitCommandString(extra)
        user_opts = [seq.apply(i) for i in range(seq.length())]
    spark_opts = [f"-D{k}={v}" for k, v in conf.getAll() if is_executor_startup_conf(k)]
    env = {
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@"
                            f"{conf.get('spark.driver.host')}:{conf.get('spark.driver.port')}",
        "SPARK_EXECUTOR_CORES": cores,
        "SPARK_EXECUTOR_MEMORY": memory,
        "SPARK_APPLICATION_ID": app_id,
        "SPARK_CONF_DIR": "/opt/spark/conf",
        "SPARK_EXECUTOR_ID": executor_id,
        "SPARK_RESOURCE_PROFILE_ID": "0",
        "SPARK_EXECUTOR_POD_IP": pod_ip,      # a fieldRef to status.podIP in a pod
        "SPARK_EXECUTOR_POD_NAME": pod_name,  # a fieldRef to metadata.name
    }
    for i, opt in enumerate(user_opts + spark_opts):
        env[f"SPARK_JAVA_OPT_{i}"] = opt
    return env


def security() -> dict:
    """What this process got: capabilities, no_new_privs, seccomp mode, and which paths
    it can write (the root must not be writable; the emptyDirs must)."""
    seen: dict = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("CapEff", "CapPrm", "CapBnd"):
                seen[key] = int(value.strip(), 16)
            elif key in ("NoNewPrivs", "Seccomp"):
                seen[key] = value.strip()

    def can_write(directory: str) -> bool:
        path = os.path.join(directory, f".ocf-probe-{os.getpid()}")
        try:
            with open(path, "w"):
                pass
        except OSError:
            return False
        os.unlink(path)
        return True

    seen["root_writable"] = can_write("/") or can_write("/opt/spark")
    seen["writable"] = {d: can_write(d) for d in ("/tmp", "/opt/spark/work-dir")}
    return seen


def executor_process(_: object) -> list:
    """Runs in a task: where it runs (pod name, uid, gid), the executor JVM's command
    line as its container's process list shows it, and the security it runs under."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode().split("\0")
        except OSError:
            continue
        if "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend" in argv:
            found.append([a for a in argv if a])
    return [{"pod": os.environ.get("SPARK_EXECUTOR_POD_NAME"), "uid": os.getuid(),
             "gid": os.getgid(), "jvm": found[0] if len(found) == 1 else found,
             "security": security()}]


def main() -> None:
    executor_id, cores, memory, pod_name, pod_ip = sys.argv[1:6]
    wait_s = float(sys.argv[6]) if len(sys.argv) > 6 else 240
    spark = SparkSession.builder.appName("ocf-k8s-modes").getOrCreate()
    sc = spark.sparkContext
    env = executor_env(spark, executor_id, cores, memory, pod_name, pod_ip)
    print("OCF EXECUTOR ENV " + json.dumps(env, sort_keys=True), flush=True)

    deadline = time.monotonic() + wait_s
    while executor_id not in str(sc._jsc.sc().getExecutorIds().mkString(",")).split(","):
        if time.monotonic() > deadline:
            print(f"OCF NO EXECUTOR registered within {wait_s:.0f} s", flush=True)
            sys.exit(3)
        time.sleep(0.5)
    print(f"OCF EXECUTOR REGISTERED {executor_id}", flush=True)

    n = 100_000
    total = sc.parallelize(range(n), 4).map(lambda x: x * 2).sum()
    tasks = sc.parallelize(range(4), 4).mapPartitions(executor_process).collect()
    pods = sorted({str(t["pod"]) for t in tasks})
    print(f"OCF JOB sum={total} expected={n * (n - 1)} task_pods={','.join(pods)}", flush=True)
    print("OCF TASKS " + json.dumps(tasks), flush=True)
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/executors"
    with urllib.request.urlopen(url, timeout=30) as r:
        executors = [e for e in json.loads(r.read()) if e["id"] != "driver"]
    print("OCF REST EXECUTORS " + json.dumps(executors), flush=True)
    print("OCF DRIVER SECURITY " + json.dumps(security()), flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
