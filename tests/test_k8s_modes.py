"""Spark's Kubernetes modes for real, without a cluster: containers started in
containerd with exactly the security context of `ociforge k8s pod-template` (its
options come from the template: ociforge.k8s.ctr), on the host network.

- The `driver` entrypoint mode runs a job in client mode against a standalone master
  with no workers (a third container); the `executor` mode starts Spark's
  KubernetesExecutorBackend with the environment Spark's Kubernetes backend gives an
  executor pod (the driver prints it, built the way BasicExecutorFeatureStep builds
  it); the executor registers with the driver and runs every task. Spark accepts an
  executor it did not launch: CoarseGrainedSchedulerBackend's RegisterExecutor refuses
  only duplicate ids and excluded hosts, and the standalone master is never asked.
- The history server and the Connect server under the driver template.

As the template's uid 185, and as 12345:0 (runAsUser/runAsGroup put in place of the
template's, as a namespace that assigns uids does), on a 4.1 and a 3.5 image.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ociforge.checks.containerd import Containerd
from ociforge.checks.gpu import GpuHost
from ociforge.checks.runtime import PreparedImage, RuntimeChecker, _port_open, free_port
from ociforge.k8s.ctr import run_options
from ociforge.k8s.podtemplate import template_for
from ociforge.recipes import Project
from ociforge.store import Store

from conftest import TEST_CACHE, run_cli

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
SPARK_STORE = TEST_CACHE / "spark-store"
OFFLINE = {"OCIFORGE_INDEX_URL": "http://127.0.0.1:9/simple",
           "OCIFORGE_DEBIAN_MIRROR": "http://127.0.0.1:9/debian",
           "OCIFORGE_MAVEN_SETTINGS": "none", "OCIFORGE_MAVEN_REPOS": "http://127.0.0.1:9/maven"}
# A 4.1 image, and a 3.5 one with the Connect server (a Maven add-on on 3.5).
IMAGES = {"spark-4.1.1": [], "spark-3.5.8": ["s3a", "celeborn", "connect"]}
USERS = {"185": None, "12345:0": (12345, 0)}
JOB = PROJECT / "checks" / "k8s_driver_job.py"
EXECUTOR_MEMORY = "700m"
# Twelve options of our own after Spark's: SPARK_JAVA_OPT_n beyond 9, in numeric order.
USER_OPTS = [f"-Docf.opt{i:02d}=v{i}" for i in range(12)]


@dataclass
class Pod:
    """One image's containers: its references in containerd and its templates."""

    name: str
    prepared: PreparedImage
    templates: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def ctd(shared_containerd: Containerd) -> Containerd:
    """The session's: images the other modules imported are not imported again."""
    return shared_containerd


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ocf-k8s-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def pods(ctd: Containerd, workdir: Path) -> dict[str, Pod]:
    """Each image assembled from the test cache, imported (with its 12345:0 twin),
    and its driver and executor templates."""
    project = Project.load(PROJECT)
    store = Store(SPARK_STORE)
    checker = RuntimeChecker(ctd, workdir, GpuHost(), PROJECT)
    out = {}
    for base, features in IMAGES.items():
        args = [base, "--with", ",".join(features)] if features else [base]
        r = run_cli("assemble", *args, "--json", store=SPARK_STORE, project=PROJECT,
                    env=OFFLINE)
        if r.rc != 0:
            pytest.fail(f"assembling {base} from the test cache failed ({r.err.strip()}); "
                        "run scripts/prebuild-spark.sh first")
        name = r.json()["images"][0]["name"]
        archive = workdir / f"{name}.tar"  # written only if containerd lacks the image
        prepared = checker.prepare(store, name, archive)
        archive.unlink(missing_ok=True)
        out[base] = Pod(name, prepared, {
            role: template_for(project, base, role, with_features=features).manifest
            for role in ("driver", "executor")})
    return out


class Container:
    """`ctr run` of one container with a template's options; output collected."""

    def __init__(self, ctd: Containerd, workdir: Path, pod: Pod, role: str, user: str,
                 name: str, argv: list[str], env: dict[str, str] | None = None,
                 pod_dir: Path | None = None) -> None:
        opts = run_options(pod.templates[role], user_override=USERS[user])
        ref = pod.prepared.ref if opts.user == "185:185" else pod.prepared.uid_ref
        assert opts.user in ("185:185", "12345:0"), opts.user
        self.ctd, self.name = ctd, name
        env_file = workdir / f"{name}.env"
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{k}={v}\n" for k, v in (env or {}).items())
        hosts = workdir / "hosts"
        cmd = ["ctr", "--address", str(ctd.socket), "-n", "k8s.io", "run", "--net-host",
               "--mount", f"type=bind,src={hosts},dst=/etc/hosts,options=rbind:ro",
               "--mount", f"type=bind,src={JOB},dst=/ocf-check/{JOB.name},options=rbind:ro",
               "--env-file", str(env_file), *opts.ctr_args(pod_dir or workdir / name),
               "--rm", ref, name, *argv]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [ln for ln in self.lines if ln.startswith(prefix)]
            if found:
                return found[0][len(prefix):]
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.2)
        pytest.fail(f"{self.name}: no {prefix!r} line: …{self.output()[-3000:]}")

    def finish(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.remove()
            rc = self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        return rc

    def output(self) -> str:
        return "\n".join(self.lines)

    def remove(self) -> None:
        """Kill it (a server, a stuck job) and wait for `ctr run` to return."""
        self.ctd.remove_container(self.name)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reader.join(timeout=10)


def _json_line(c: Container, prefix: str) -> Any:
    return json.loads(c.wait_for(prefix, 5))


@pytest.fixture(scope="module")
def jobs(ctd: Containerd, workdir: Path, pods: dict[str, Pod]) -> dict[tuple[str, str], dict]:
    """The driver + executor job of each image as each user: what the containers said."""
    (workdir / "hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
    out = {}
    for base, pod in pods.items():
        for user in USERS:
            out[(base, user)] = _job(ctd, workdir, pod, user)
    return out


def _job(ctd: Containerd, workdir: Path, pod: Pod, user: str) -> dict:
    tag = f"{os.getpid()}-{pod.name}-{user.replace(':', '-')}"
    master_port, ui_port, driver_port, bm_port, app_ui = (free_port() for _ in range(5))
    loopback = {"SPARK_LOCAL_IP": "127.0.0.1"}
    master = Container(ctd, workdir, pod, "driver", user, f"ocf-master-{tag}",
                       ["/opt/entrypoint.sh", "spark-class",
                        "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                        "--port", str(master_port), "--webui-port", str(ui_port)],
                       loopback)
    executor = None
    started = time.monotonic()
    try:
        _wait_http(f"http://127.0.0.1:{ui_port}/json/", '"status" : "ALIVE"', 120, master)
        # What Spark's Kubernetes backend gives the driver pod: its IP as the bind address.
        driver = Container(ctd, workdir, pod, "driver", user, f"ocf-driver-{tag}", [
            "/opt/entrypoint.sh", "driver", "--master", f"spark://127.0.0.1:{master_port}",
            "--conf", "spark.driver.host=127.0.0.1",
            "--conf", f"spark.driver.port={driver_port}",
            "--conf", f"spark.driver.blockManager.port={bm_port}",
            "--conf", f"spark.ui.port={app_ui}",
            "--conf", f"spark.executor.memory={EXECUTOR_MEMORY}",
            "--conf", f"spark.executor.extraJavaOptions={' '.join(USER_OPTS)}",
            f"/ocf-check/{JOB.name}", "1", "2", EXECUTOR_MEMORY, f"ocf-exec-{tag}"[:63],
            "127.0.0.1"], {"SPARK_DRIVER_BIND_ADDRESS": "127.0.0.1", **loopback})
        env = json.loads(driver.wait_for("OCF EXECUTOR ENV ", 240))
        executor = Container(ctd, workdir, pod, "executor", user, f"ocf-exec-{tag}",
                             ["/opt/entrypoint.sh", "executor"], env)
        rc = driver.finish(400)
        executor_rc = executor.finish(120)
        result = {
            "rc": rc, "executor_rc": executor_rc, "env": env, "driver": driver.output(),
            "executor": executor.output(), "seconds": time.monotonic() - started,
            "master": _http_json(f"http://127.0.0.1:{ui_port}/json/")}
        for key, prefix in (("job", "OCF JOB "), ("registered", "OCF EXECUTOR REGISTERED ")):
            result[key] = driver.wait_for(prefix, 5)
        for key, prefix in (("tasks", "OCF TASKS "), ("rest", "OCF REST EXECUTORS "),
                            ("driver_security", "OCF DRIVER SECURITY ")):
            result[key] = _json_line(driver, prefix)
        print(f"\n{pod.name} as {user}: driver+executor job {result['seconds']:.0f} s")
        return result
    finally:
        for c in (executor, master):
            if c is not None:
                c.remove()


def _http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _wait_http(url: str, expect: str, timeout: float, server: Container) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                last = r.read().decode("utf-8", "replace")
                if re.search(expect, last):
                    return last
        except OSError as e:
            last = str(e)
        if server.proc.poll() is not None:
            break
        time.sleep(1)
    pytest.fail(f"{url}: no {expect!r} within {timeout} s: {last[-500:]}; "
                f"{server.name}: …{server.output()[-3000:]}")


@pytest.mark.parametrize("user", list(USERS))
@pytest.mark.parametrize("image", list(IMAGES))
def test_driver_and_executor_run_a_job_across_containers(jobs: dict, image: str,
                                                         user: str) -> None:
    job = jobs[(image, user)]
    assert job["rc"] == 0, job["driver"][-4000:]
    pod_name = job["env"]["SPARK_EXECUTOR_POD_NAME"]
    m = re.fullmatch(r"sum=(\d+) expected=(\d+) task_pods=(.*)", job["job"])
    assert m and m.group(1) == m.group(2), job["job"]
    # Every task ran in the executor container (its pod name in the tasks' environment,
    # the KubernetesExecutorBackend JVM in their process list), none in the driver.
    assert m.group(3) == pod_name
    assert job["registered"] == "1"
    uid, gid = (185, 185) if user == "185" else (12345, 0)
    for task in job["tasks"]:
        assert task["pod"] == pod_name and (task["uid"], task["gid"]) == (uid, gid), task
    # The driver's REST API lists the executor, which ran the tasks.
    executors = {e["id"]: e for e in job["rest"]}
    assert executors["1"]["hostPort"].startswith("127.0.0.1:")
    assert executors["1"]["totalTasks"] >= 8 and executors["1"]["failedTasks"] == 0
    # The standalone master launched nothing: no worker, no core granted to the application.
    assert job["master"]["aliveworkers"] == 0 and job["master"]["workers"] == []
    apps = {a["id"]: a for a in job["master"]["activeapps"] + job["master"]["completedapps"]}
    assert apps[job["env"]["SPARK_APPLICATION_ID"]]["cores"] == 0
    assert job["executor_rc"] == 0, job["executor"][-3000:]


@pytest.mark.parametrize("image", list(IMAGES))
def test_executor_jvm_gets_java_opts_in_order_and_its_memory(jobs: dict, image: str) -> None:
    for user in USERS:
        job = jobs[(image, user)]
        env = job["env"]
        opts = [env[f"SPARK_JAVA_OPT_{i}"] for i in range(len(
            [k for k in env if k.startswith("SPARK_JAVA_OPT_")]))]
        assert len(opts) > 11
        argv = job["tasks"][0]["jvm"]
        assert argv, "no KubernetesExecutorBackend process in the executor container"
        # The JVM's own command line: every SPARK_JAVA_OPT_n in numeric order (10 after 9),
        # then the heap from SPARK_EXECUTOR_MEMORY, then Spark's executor class.
        start = argv.index(opts[0])
        assert argv[start:start + len(opts)] == opts
        assert [o for o in argv if o.startswith("-Docf.opt")] == USER_OPTS
        rest = argv[start + len(opts):]
        assert rest[:2] == [f"-Xms{EXECUTOR_MEMORY}", f"-Xmx{EXECUTOR_MEMORY}"]
        cls = argv.index("org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend")
        assert argv[cls - 1].endswith(":/opt/spark/work-dir")  # the working dir (SPARK-43540)
        args = dict(zip(argv[cls + 1::2], argv[cls + 2::2], strict=False))
        assert args["--executor-id"] == "1" and args["--cores"] == "2"
        assert args["--podName"] == env["SPARK_EXECUTOR_POD_NAME"]
        assert args["--app-id"] == env["SPARK_APPLICATION_ID"]
        assert args["--hostname"] == "127.0.0.1" and args["--resourceProfileId"] == "0"
        # And the heap is the one the JVM runs with: Spark's storage memory is
        # (heap - 300 MiB) * 0.6, about 240 MiB for 700m (1g, the default, gives 434).
        storage = {e["id"]: e for e in job["rest"]}["1"]["maxMemory"] / 2**20
        assert 150 < storage < 300, storage


@pytest.mark.parametrize("image", list(IMAGES))
def test_containers_ran_under_the_templates_security_context(jobs: dict, image: str) -> None:
    """What the processes saw: no capability at all, no_new_privs, a seccomp filter, a
    read-only root, the emptyDirs writable."""
    for user in USERS:
        job = jobs[(image, user)]
        for seen in [job["driver_security"], *[t["security"] for t in job["tasks"]]]:
            assert seen["CapEff"] == seen["CapPrm"] == seen["CapBnd"] == 0, seen
            assert seen["NoNewPrivs"] == "1" and seen["Seccomp"] == "2", seen
            assert seen["root_writable"] is False, seen
            assert seen["writable"] == {"/tmp": True, "/opt/spark/work-dir": True}, seen


# The servers under the driver template, each image and server as one of the users
# (both users for both kinds of server across the two images; the job above ran as both).
SERVERS = [("spark-4.1.1", "history", "12345:0"), ("spark-4.1.1", "connect", "185"),
           ("spark-3.5.8", "history", "185"), ("spark-3.5.8", "connect", "12345:0")]
CONNECT_CLIENT = ("from pyspark.sql import SparkSession; s = SparkSession.builder.remote("
                  "'sc://127.0.0.1:{port}').getOrCreate(); print('COUNT=%d' % s.range(10).count())")


@pytest.fixture(scope="module")
def servers(ctd: Containerd, workdir: Path, pods: dict[str, Pod]) -> dict[tuple, str]:
    """What each server answered: the history server's application list, the count a
    PySpark Connect client (itself in a container under the template) got back."""
    (workdir / "hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
    out = {}
    for image, mode, user in SERVERS:
        pod = pods[image]
        port = free_port()
        tag = f"{os.getpid()}-{pod.name}-{mode}-{user.replace(':', '-')}"
        env = {"SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_HISTORY_PORT" if mode == "history" else "SPARK_CONNECT_PORT": str(port)}
        started = time.monotonic()
        server = Container(ctd, workdir, pod, "driver", user, f"ocf-{tag}",
                           ["/opt/entrypoint.sh", mode], env)
        try:
            if mode == "history":
                out[(image, mode, user)] = _wait_http(
                    f"http://127.0.0.1:{port}/api/v1/applications", r"^\s*\[\s*\]\s*$", 180,
                    server)
            else:
                out[(image, mode, user)] = _connect(ctd, workdir, pod, user, port, tag, server)
        finally:
            server.remove()
        print(f"\n{pod.name} {mode} server as {user}: {time.monotonic() - started:.0f} s")
    return out


def _connect(ctd: Containerd, workdir: Path, pod: Pod, user: str, port: int, tag: str,
             server: Container) -> str:
    deadline = time.monotonic() + 240
    last = ""
    n = 0
    while not _port_open(port) and server.proc.poll() is None:  # before any client starts
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    while time.monotonic() < deadline:
        n += 1
        client = Container(ctd, workdir, pod, "driver", user, f"ocf-client-{tag}-{n}",
                           ["python3", "-c", CONNECT_CLIENT.format(port=port)])
        client.finish(120)
        last = client.output()
        if "COUNT=" in last or server.proc.poll() is not None:
            break
        time.sleep(2)
    return last + f"\n{server.name}: …{server.output()[-3000:]}"


@pytest.mark.parametrize("image, mode, user", SERVERS)
def test_servers_run_under_the_driver_template(servers: dict, image: str, mode: str,
                                               user: str) -> None:
    answer = servers[(image, mode, user)]
    if mode == "history":
        assert json.loads(answer) == []
    else:
        assert "COUNT=10" in answer, answer[-3000:]
