"""Pod templates (`ociforge k8s pod-template`): every matrix image's driver and executor
template is valid against the Kubernetes API schema (kubernetes-validate's bundled
schemas, offline), admitted by Pod Security `restricted` as Kubernetes' own admission
code judges it (tools/psa-check: k8s.io/pod-security-admission), and mounts an
emptyDir over every path the image writes. Broken templates are caught, one test per
rule. Also: the templates' security context as ctr options, and the entrypoint's
executor mode as Spark's Kubernetes backend calls it (with a stand-in java).
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ociforge.k8s.checks import readonly_problems
from ociforge.k8s.ctr import ALL_CAPABILITIES, EmptyDir, TemplateError, run_options
from ociforge.k8s.podtemplate import pod_template, template_for, written_paths
from ociforge.recipes import Project
from ociforge.recipes.models import ImageDef

from conftest import TEST_CACHE, run_cli, write

PROJECT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.37"   # kubernetes-validate 1.37.0's schemas; psa-check's k8s.io modules v0.37


@pytest.fixture(scope="module")
def project() -> Project:
    return Project.load(PROJECT)


@pytest.fixture(scope="module")
def psa_check() -> Path:
    path = TEST_CACHE / "go" / "bin" / "psa-check"
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/install-test-deps.sh (it builds "
                    "tools/psa-check from the Go module proxy)")
    return path


def admission(psa: Path, tmp: Path, manifests: dict[str, dict]) -> dict[str, dict]:
    """Pod Security `restricted` (latest) on each manifest: file stem -> result."""
    files = []
    for name, m in manifests.items():
        files.append(tmp / f"{name}.yaml")
        files[-1].write_text(yaml.safe_dump(m))
    p = subprocess.run([str(psa), "-level", "restricted", *map(str, files)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 1), p.stderr
    return {Path(r["file"]).stem: r for r in map(json.loads, p.stdout.splitlines())}


def schema_error(manifest: dict) -> str | None:
    try:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return str(e.message)
    return None


def test_every_matrix_image_template_is_valid_and_admitted(project: Project, psa_check: Path,
                                                           tmp_path: Path) -> None:
    manifests, written = {}, {}
    matrix = [n for n in project.images if re.fullmatch(r"(spark|jupyter)-\d.*", n)]
    assert len(matrix) == 47  # 25 Spark and 22 Jupyter images
    for name in matrix:
        for role in ("driver", "executor"):
            tpl = template_for(project, name, role)
            manifests[f"{name}.{role}"] = tpl.manifest
            written[f"{name}.{role}"] = tpl.written
    for key, m in manifests.items():
        assert schema_error(m) is None, (key, schema_error(m))
        assert readonly_problems(m, written[key]) == [], key
    results = admission(psa_check, tmp_path, manifests)
    assert sorted(results) == sorted(manifests)
    refused = {k: r["forbidden"] for k, r in results.items() if not r["allowed"]}
    assert refused == {}


def test_template_fields_users_rely_on(project: Project) -> None:
    tpl = template_for(project, "jupyter-4.1.1-gpu-iceberg", "executor").manifest
    pod = tpl["spec"]["securityContext"]
    assert pod == {"runAsNonRoot": True, "runAsUser": 185, "runAsGroup": 185, "fsGroup": 185,
                   "seccompProfile": {"type": "RuntimeDefault"}}
    c = tpl["spec"]["containers"][0]
    assert c["name"] == "spark-kubernetes-executor"
    assert c["image"] == "docker.io/library/jupyter:4.1.1-gpu-iceberg"
    assert c["securityContext"] == {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True, "runAsNonRoot": True}
    assert c["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp", "/opt/spark/work-dir"}
    assert all("emptyDir" in v for v in tpl["spec"]["volumes"])
    # Drivers and CPU images ask for no GPU.
    for name, role in (("spark-4.1.1-gpu", "driver"), ("spark-4.1.1", "executor")):
        c = template_for(project, name, role).manifest["spec"]["containers"][0]
        assert "resources" not in c
    assert template_for(project, "spark-4.1.1", "driver").manifest["spec"]["containers"][0][
        "name"] == "spark-kubernetes-driver"


def test_written_paths_come_from_the_recipe(project: Project) -> None:
    """Volumes, the work dir, the directories the environment names (nested ones held
    by the emptyDir above them) and the check sets' writable paths."""
    found = {w.path: w for w in template_for(project, "spark-4.1.1", "driver").written}
    assert found["/tmp"].covered_by is None and "config volume" in found["/tmp"].why
    assert found["/opt/spark/work-dir"].why == ["config volume", "config workdir",
                                                "check set writable"]
    assert found["/tmp/spark-logs"].covered_by == "/tmp"
    assert found["/tmp/spark-logs"].why == ["env SPARK_LOG_DIR"]
    assert found["/tmp/spark-pids"].why == ["env SPARK_PID_DIR"]
    image = ImageDef.model_validate({
        "name": "x", "layers": ["l"], "config": {
            "user": "1000:1000", "volumes": ["/data"], "workdir": "/work",
            "env": {"SPARK_LOCAL_DIRS": "/scratch/a,/scratch/b", "JUPYTER_DATA_DIR": "/data/j"}}})
    tpl = pod_template(image, "executor", [])
    container = tpl.manifest["spec"]["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/data": "data", "/scratch/a": "scratch-a", "/scratch/b": "scratch-b",
                      "/work": "work"}
    assert [w.path for w in written_paths(image, []) if w.covered_by] == ["/data/j"]
    assert tpl.manifest["spec"]["securityContext"]["runAsUser"] == 1000


def broken(manifest: dict, change: str) -> dict:
    m = copy.deepcopy(manifest)
    spec = m["spec"]
    c = spec["containers"][0]
    sc = c["securityContext"]
    if change == "capability added":
        sc["capabilities"]["add"] = ["SYS_ADMIN"]
    elif change == "NET_RAW added":
        sc["capabilities"]["add"] = ["NET_RAW"]
    elif change == "ALL not dropped":
        sc["capabilities"]["drop"] = ["NET_RAW"]
    elif change == "privilege escalation":
        sc["allowPrivilegeEscalation"] = True
    elif change == "root allowed":
        sc.pop("runAsNonRoot")
        spec["securityContext"].pop("runAsNonRoot")
    elif change == "uid 0":
        sc["runAsUser"] = 0
    elif change == "seccomp unconfined":
        spec["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    elif change == "no seccomp":
        spec["securityContext"].pop("seccompProfile")
    elif change == "hostPath volume":
        spec["volumes"][0] = {"name": spec["volumes"][0]["name"],
                              "hostPath": {"path": "/var/tmp"}}
    elif change == "privileged":
        sc["privileged"] = True
    elif change == "host network":
        spec["hostNetwork"] = True
    elif change == "host port":
        c["ports"] = [{"containerPort": 4040, "hostPort": 4040}]
    else:
        raise AssertionError(change)
    return m


# Each rule of Pod Security Standards `restricted` (and of `baseline`, which it
# includes), as kubernetes.io/docs/concepts/security/pod-security-standards words it,
# and the reason Kubernetes' admission code gives when a template breaks it.
RULES = {
    "capability added": ("Capabilities: Containers must drop ALL capabilities, and are only "
                         "permitted to add back the NET_BIND_SERVICE capability",
                         "unrestricted capabilities"),
    "NET_RAW added": ("Capabilities (baseline): Adding additional capabilities beyond those "
                      "listed below must be disallowed", "unrestricted capabilities"),
    "ALL not dropped": ("Capabilities: Containers must drop ALL capabilities",
                        "unrestricted capabilities"),
    "privilege escalation": ("Privilege Escalation: Privilege escalation (such as via set-user-ID "
                             "or set-group-ID file mode) should not be allowed",
                             "allowPrivilegeEscalation != false"),
    "root allowed": ("Running as Non-root: Containers must be required to run as non-root users",
                     "runAsNonRoot != true"),
    "uid 0": ("Running as Non-root user: Containers must not set runAsUser to 0",
              "runAsUser=0"),
    "seccomp unconfined": ("Seccomp (baseline): Seccomp profile must not be explicitly set to "
                           "Unconfined", "seccompProfile"),
    "no seccomp": ("Seccomp: Seccomp profile must be explicitly set to one of the allowed "
                   "values", "seccompProfile"),
    "hostPath volume": ("Volume Types: The restricted policy only permits the following volume "
                        "types", "restricted volume types"),
    "privileged": ("Privileged Containers: Privileged Pods disable most security mechanisms "
                   "and must be disallowed", "privileged"),
    "host network": ("Host Namespaces: Sharing the host namespaces must be disallowed",
                     "host namespaces"),
    "host port": ("Host Ports: HostPorts should be disallowed entirely", "hostPort"),
}


@pytest.fixture(scope="module")
def broken_results(project: Project, psa_check: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    good = template_for(project, "spark-4.1.1", "executor").manifest
    manifests = {re.sub(r"\W", "_", k): broken(good, k) for k in RULES}
    results = admission(psa_check, tmp_path_factory.mktemp("psa"), manifests)
    return {k: results[re.sub(r"\W", "_", k)] for k in RULES}


@pytest.mark.parametrize("change", list(RULES))
def test_a_broken_template_is_refused_by_pod_security(broken_results: dict,
                                                      change: str) -> None:
    _rule, reason = RULES[change]
    result = broken_results[change]
    assert not result["allowed"], change
    assert any(f["reason"].startswith(reason) for f in result["forbidden"]), result["forbidden"]


def test_a_missing_emptydir_is_caught(project: Project) -> None:
    """Admission would let it in; the image's first write would fail."""
    tpl = template_for(project, "jupyter-4.1.1", "driver")
    m = copy.deepcopy(tpl.manifest)
    m["spec"]["volumes"] = [v for v in m["spec"]["volumes"] if v["name"] != "opt-spark-work-dir"]
    c = m["spec"]["containers"][0]
    c["volumeMounts"] = [v for v in c["volumeMounts"] if v["name"] != "opt-spark-work-dir"]
    assert readonly_problems(m, tpl.written) == [
        "container 'spark-kubernetes-driver': no emptyDir over /opt/spark/work-dir (config "
        "volume, config workdir, check set writable), which the image writes"]
    m["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    assert "readOnlyRootFilesystem is not true" in readonly_problems(m, tpl.written)[0]
    # An emptyDir swapped for a hostPath at the same place is no emptyDir either.
    m = copy.deepcopy(tpl.manifest)
    m["spec"]["volumes"][1] = {"name": m["spec"]["volumes"][1]["name"], "hostPath": {"path": "/x"}}
    assert any("/tmp" in p for p in readonly_problems(m, tpl.written))


def test_schema_validation_catches_what_the_api_server_refuses(project: Project) -> None:
    good = template_for(project, "spark-4.1.1", "driver").manifest
    m = copy.deepcopy(good)
    m["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    assert "'readOnlyRootFS' was unexpected" in (schema_error(m) or "")
    m = copy.deepcopy(good)
    m["spec"]["securityContext"]["runAsUser"] = "185"
    assert "is not of type" in (schema_error(m) or "")
    m = copy.deepcopy(good)
    del m["spec"]["containers"][0]["name"]
    assert "'name' is a required property" in (schema_error(m) or "")


def test_ctr_options_come_from_the_template(project: Project, tmp_path: Path) -> None:
    tpl = template_for(project, "spark-3.5.8", "executor").manifest
    opts = run_options(tpl)
    assert opts.user == "185:185" and opts.read_only and opts.no_new_privileges
    assert opts.seccomp_default and opts.cap_add == []
    assert opts.cap_drop == list(ALL_CAPABILITIES) and len(ALL_CAPABILITIES) == 41
    # The kubelet's emptyDir under fsGroup: a directory of group fsGroup, mode 2777.
    assert opts.empty_dirs == [EmptyDir("opt-spark-work-dir", "/opt/spark/work-dir", 185),
                               EmptyDir("tmp", "/tmp", 185)]
    args = opts.ctr_args(tmp_path)
    assert args[:3] == ["--read-only", "--mount",
                        f"type=bind,src={tmp_path}/opt-spark-work-dir,dst=/opt/spark/work-dir,"
                        "options=rbind:rw"]
    made = (tmp_path / "tmp").stat()
    assert (made.st_uid, made.st_gid, oct(made.st_mode & 0o7777)) == (0, 185, "0o2777")
    assert args.count("--cap-drop") == 41 and "CAP_SYS_ADMIN" in args and "--seccomp" in args
    assert "--allow-new-privs" not in args
    assert run_options(tpl, user_override=(12345, 0)).user == "12345:0"
    # Without fsGroup, the kubelet's plain emptyDir: root's, mode 0777.
    plain = copy.deepcopy(tpl)
    del plain["spec"]["securityContext"]["fsGroup"]
    run_options(plain).ctr_args(tmp_path / "plain")
    made = (tmp_path / "plain" / "tmp").stat()
    assert (made.st_uid, made.st_gid, oct(made.st_mode & 0o7777)) == (0, 0, "0o777")
    # What a template changes, the options change with it.
    loose = broken(tpl, "capability added")
    loose["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    loose["spec"]["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    opts = run_options(loose)
    assert opts.cap_add == ["SYS_ADMIN"] and not opts.no_new_privileges
    assert not opts.seccomp_default and "--allow-new-privs" in opts.ctr_args(tmp_path)


@pytest.mark.parametrize("change, message", [
    ("hostPath volume", "only emptyDir volumes can be run here"),
    ("privileged", "privileged containers are not run here"),
])
def test_ctr_options_refuse_what_ctr_cannot_do(project: Project, change: str,
                                               message: str) -> None:
    tpl = template_for(project, "spark-4.1.1", "driver").manifest
    with pytest.raises(TemplateError, match=message):
        run_options(broken(tpl, change))


def test_cli_pod_template(tmp_path: Path) -> None:
    out = tmp_path / "t" / "executor.yaml"
    r = run_cli("k8s", "pod-template", "spark-4.1.1-gpu", "--role", "executor", "-o", out,
                store=tmp_path / "store", project=PROJECT)
    assert r.rc == 0, r.err
    assert r.out == f"wrote {out}: executor pod template for spark-4.1.1-gpu\n"
    m = yaml.safe_load(out.read_text())
    assert m["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    r = run_cli("k8s", "pod-template", "spark-3.5.7", "--with", "celeborn", "--image",
                "registry.example/spark:3.5.7-celeborn", store=tmp_path / "store",
                project=PROJECT)
    assert r.rc == 0, r.err
    m = yaml.safe_load(r.out)
    assert m["spec"]["containers"][0]["image"] == "registry.example/spark:3.5.7-celeborn"
    assert m["metadata"]["labels"]["ociforge.io/image"] == "spark-3.5.7-celeborn"
    r = run_cli("--json", "k8s", "pod-template", "spark-4.1.1", store=tmp_path / "store",
                project=PROJECT)
    data = r.json()
    assert data["role"] == "driver" and data["template"]["kind"] == "Pod"
    assert {"path": "/tmp/spark-logs", "why": ["env SPARK_LOG_DIR"],
            "covered_by": "/tmp"} in data["written_paths"]
    r = run_cli("k8s", "pod-template", "spark-4.1.2", store=tmp_path / "store", project=PROJECT)
    assert r.rc == 3 and "unknown image 'spark-4.1.2' (did you mean" in r.err
    assert not list((tmp_path / "t").glob("*.tmp*"))


def test_cli_refuses_an_image_running_as_root(tmp_path: Path) -> None:
    write(tmp_path / "layers" / "l.yaml", "source:\n  kind: files\n  dirs: [{path: /x}]\n")
    write(tmp_path / "recipes" / "r.yaml",
          "images:\n  rooty:\n    layers: [l]\n    config: {user: '0:0'}\n")
    r = run_cli("k8s", "pod-template", "rooty", store=tmp_path / "store", project=tmp_path)
    assert r.rc == 3
    assert "config.user '0:0' is root; Pod Security `restricted` refuses runAsUser 0" in r.err


def test_entrypoint_executor_mode_as_spark_calls_it(tmp_path: Path) -> None:
    """SPARK_JAVA_OPT_n in numeric order (SPARK_JAVA_OPT_10 after _9), the heap from
    SPARK_EXECUTOR_MEMORY, the classpath (conf dir first, the working dir last) and
    KubernetesExecutorBackend's arguments, with a java that prints its arguments."""
    java_home = tmp_path / "jdk"
    write(java_home / "bin" / "java", '#!/bin/sh\nfor a in "$@"; do echo "[$a]"; done\n', 0o755)
    work = tmp_path / "work"
    work.mkdir()
    env: dict[str, Any] = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "JAVA_HOME": str(java_home),
        "SPARK_HOME": "/opt/spark", "SPARK_CONF_DIR": "/opt/spark/conf",
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@10.0.0.1:7078",
        "SPARK_EXECUTOR_ID": "3", "SPARK_EXECUTOR_CORES": "2", "SPARK_APPLICATION_ID": "app-1",
        "SPARK_EXECUTOR_POD_IP": "10.0.0.9", "SPARK_EXECUTOR_POD_NAME": "app-exec-3",
        "SPARK_RESOURCE_PROFILE_ID": "0", "SPARK_EXECUTOR_MEMORY": "3072m",
        **{f"SPARK_JAVA_OPT_{i}": f"-Dopt={i} with space" for i in range(12)}}
    out = subprocess.run(["bash", PROJECT / "docker/spark/entrypoint.sh", "executor"],
                         capture_output=True, text=True, env=env, cwd=work, check=True).stdout
    args = re.findall(r"\[(.*)\]", out)
    assert args[:12] == [f"-Dopt={i} with space" for i in range(12)]
    assert args[12:16] == ["-Xms3072m", "-Xmx3072m", "-cp",
                           f"/opt/spark/conf:/opt/spark/jars/*:{work}"]
    assert args[16:] == [
        "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
        "--driver-url", "spark://CoarseGrainedScheduler@10.0.0.1:7078", "--executor-id", "3",
        "--cores", "2", "--app-id", "app-1", "--hostname", "10.0.0.9",
        "--resourceProfileId", "0", "--podName", "app-exec-3"]


def test_entrypoint_driver_mode_tells_executors_the_pod_ip(tmp_path: Path) -> None:
    home = tmp_path / "spark"
    write(home / "bin" / "spark-submit", '#!/bin/sh\nfor a in "$@"; do echo "[$a]"; done\n',
          0o755)
    env = {"PATH": os.environ["PATH"], "SPARK_HOME": str(home), "HOME": str(tmp_path)}

    def driver(extra: dict[str, str]) -> list[str]:
        out = subprocess.run(["bash", PROJECT / "docker/spark/entrypoint.sh", "driver", "a.py"],
                             capture_output=True, text=True, env={**env, **extra},
                             check=True).stdout
        return re.findall(r"\[(.*)\]", out)

    assert driver({"SPARK_DRIVER_BIND_ADDRESS": "10.1.2.3"}) == [
        "--conf", "spark.driver.bindAddress=10.1.2.3",
        "--conf", "spark.executorEnv.SPARK_DRIVER_POD_IP=10.1.2.3",
        "--deploy-mode", "client", "a.py"]
    assert driver({}) == ["--conf", "spark.driver.bindAddress=0.0.0.0", "--deploy-mode",
                          "client", "a.py"]
