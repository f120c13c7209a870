"""`ociforge test --platform`: the checks read the chosen platform's image (a small
two-platform image of files whose configs differ by platform), a platform the image is
not built for is refused before anything runs, and what cannot run here says why:
another platform's runtime checks without an interpreter in binfmt_misc, its GPU
checks always. Emulated runs for real: tests/test_platforms_run.py (spark images)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ociforge.checks.emulation import emulation_missing
from ociforge.checks.gpu import GpuHost
from ociforge.checks.runner import CheckRun
from ociforge.recipes import Project
from ociforge.store import Store

from conftest import run_cli, store_is_empty, write

ARM = "linux/arm64"
CHECKS = """\
checks:
  duo:
    images: [duo, solo]
    writable: []
    files: [{path: /data/readme.txt, mode: "0644", owner: "0:0"}]
    metadata: {env: {DUO_ARCH: arm64}}
    commands: [{name: it runs, args: [/bin/true]}]
  accel:
    images: [duo]
    gpu: true
    commands: [{name: gpu smoke, args: [/bin/true]}]
"""


def _project(root: Path) -> Path:
    write(root / "files" / "readme.txt", "the same bytes on every platform\n")
    write(root / "layers" / "data.yaml", """\
        source:
          kind: files
          files: [{src: files/readme.txt, dest: /data/readme.txt}]
        """)
    write(root / "recipes" / "duo.yaml", """\
        images:
          duo:
            platforms: [linux/amd64, linux/arm64]
            platform_env:
              linux/amd64: {DUO_ARCH: amd64}
              linux/arm64: {DUO_ARCH: arm64}
            layers: [data]
            config: {user: "185:185", cmd: [/bin/true]}
          solo:
            layers: [data]
            config: {user: "185:185"}
        """)
    recipe = root / "recipes" / "duo.yaml"
    recipe.write_text(recipe.read_text() + CHECKS)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return _project(tmp_path / "p")


def _test(tmp_path: Path, project: Path, *args: str) -> tuple[int, dict]:
    r = run_cli("test", *args, "--no-runtime", "--json", "--report-dir",
                tmp_path / "reports", store=tmp_path / "s", project=project, timeout=600)
    assert r.out, r.err
    return r.rc, r.json()


def _by_name(report: dict) -> dict[str, tuple[str, str]]:
    return {x["name"]: (x["status"], x["message"]) for x in report["results"]}


def test_checks_read_the_chosen_platforms_image(tmp_path: Path, project: Path) -> None:
    rc, report = _test(tmp_path, project, "duo", "--platform", ARM)
    results = _by_name(report)
    assert rc == 0, report
    assert results["file /data/readme.txt"][0] == "passed"
    # The structure test reads the arm64 config (its DUO_ARCH), not the host's.
    assert [s for n, (s, _) in results.items() if n.startswith("Metadata")] == ["passed"]
    assert results["it runs"] == ("skipped", "runtime checks disabled (--no-runtime)")
    # The host's image has the other value: the same check fails on it.
    rc, report = _test(tmp_path, project, "duo")
    assert rc == 9
    failed = [n for n, (s, _) in _by_name(report).items() if s == "failed"]
    assert len(failed) == 1 and failed[0].startswith("Metadata"), report
    # Checking one platform keeps the other one in the tag.
    assert Store(tmp_path / "s").platforms("duo") == ["linux/amd64", ARM]


def test_a_platform_the_image_is_not_built_for_runs_nothing(tmp_path: Path,
                                                              project: Path) -> None:
    r = run_cli("test", "solo", "--platform", ARM, "--report-dir", tmp_path / "reports",
                store=tmp_path / "s", project=project)
    assert r.rc == 3
    assert r.err.strip().splitlines()[-1].endswith(
        "image solo is not built for linux/arm64 (its platforms: linux/amd64)")
    assert store_is_empty(tmp_path / "s")
    assert not (tmp_path / "reports" / "report.json").exists()
    r = run_cli("test", "duo", "--platform", "linux/s390x", store=tmp_path / "s",
                project=project)
    assert r.rc == 2 and "linux/s390x" in r.err


def test_emulated_runtime_and_gpu_checks_say_why_they_are_skipped(
        tmp_path: Path, project: Path) -> None:
    """Without an aarch64 interpreter in binfmt_misc (an empty one, mounted), the
    runtime checks of the arm64 image are skipped naming what is missing; GPU checks
    of another platform are skipped even with one (none is passed to emulation)."""
    r = run_cli("assemble", "duo", "--platform", f"linux/amd64,{ARM}", store=tmp_path / "s",
                project=project)
    assert r.rc == 0, r.err
    binfmt = tmp_path / "binfmt_misc"
    write(binfmt / "status", "enabled\n")
    run = CheckRun(Store(tmp_path / "s"), Project.load(project), tmp_path / "reports",
                   containerd_address=tmp_path / "no.sock", gpu=GpuHost(), platform=ARM,
                   binfmt_misc=binfmt)
    (tmp_path / "reports").mkdir()
    try:
        results = {r.name: r for r in run.image("duo")}
    finally:
        run.close()
    assert results["file /data/readme.txt"].status == "passed"
    assert (results["it runs"].status, results["it runs"].message) == (
        "skipped", "linux/arm64 runs under emulation here, and binfmt_misc has no enabled "
        "interpreter for aarch64 (qemu-aarch64): run scripts/register-qemu.sh as root "
        "(qemu-user-static)")
    gpu = results["gpu smoke"]
    assert (gpu.status, gpu.kind) == ("skipped", "gpu")
    assert gpu.message == ("GPU checks run on the host's platform (linux/amd64) only, "
                           "never under emulation of linux/arm64")


AARCH64 = ("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\n"
           "offset 0\nmagic 7f454c460201010000000000000000000200b700\n"
           "mask ffffffffffffff00fffffffffffffffffeffffff\n")


def test_binfmt_misc_interpreters_are_found_by_the_architecture_they_take(
        tmp_path: Path) -> None:
    assert "binfmt_misc is not mounted" in (emulation_missing(ARM, tmp_path / "none") or "")
    write(tmp_path / "status", "enabled\n")
    write(tmp_path / "register", "")
    # Any name: the magic (ELF e_machine) says which architecture it runs.
    write(tmp_path / "arm-programs", AARCH64.replace("enabled", "disabled"))
    assert "no enabled interpreter for aarch64" in (emulation_missing(ARM, tmp_path) or "")
    write(tmp_path / "arm-programs", AARCH64)
    assert emulation_missing(ARM, tmp_path) is None
    assert "for x86_64 (qemu-x86_64)" in (emulation_missing("linux/amd64", tmp_path) or "")


def test_the_report_json_names_the_platform_free_results_as_before(tmp_path: Path,
                                                                   project: Path) -> None:
    """Without --platform nothing changes for the host's image: the same results as
    asking for the host's platform by name."""
    first = _test(tmp_path, project, "duo")[1]["results"]
    again = _test(tmp_path, project, "duo", "--platform", "linux/amd64")[1]["results"]
    strip = [{k: v for k, v in x.items() if k != "seconds"} for x in first]
    assert strip == [{k: v for k, v in x.items() if k != "seconds"} for x in again]
    assert json.dumps(strip)


def test_a_file_check_names_the_file_of_the_images_platform(tmp_path: Path) -> None:
    """NVIDIA's arm64 RAPIDS build is a jar with a classifier: the gpu check set names
    it on linux/arm64 images, the plain jar on the others (their results unchanged)."""
    from ociforge.checks.model import for_image

    gpu = Project.load(Path(__file__).resolve().parent.parent).checks["gpu"]
    labels = {"io.ociforge.scala.version": "2.13", "io.ociforge.rapids.version": "26.08.1"}
    jars = {p: for_image(gpu, labels, p).files[0].path
            for p in (None, "linux/amd64", ARM)}
    assert jars == {None: "/opt/spark/jars/rapids-4-spark_2.13-26.08.1.jar",
                    "linux/amd64": "/opt/spark/jars/rapids-4-spark_2.13-26.08.1.jar",
                    ARM: "/opt/spark/jars/rapids-4-spark_2.13-26.08.1-cuda12-arm64.jar"}
    # The metadata test expects each platform's JAVA_HOME (the image's platform_env).
    spark = Project.load(Path(__file__).resolve().parent.parent).checks["spark"]
    java = {p: (for_image(spark, labels, p).metadata or gpu.metadata).env["JAVA_HOME"]
            for p in ("linux/amd64", ARM)}
    assert java == {"linux/amd64": "/usr/lib/jvm/java-17-openjdk-amd64",
                    ARM: "/usr/lib/jvm/java-17-openjdk-arm64"}
    proj = _project(tmp_path / "p")
    recipe = proj / "recipes" / "duo.yaml"
    recipe.write_text(recipe.read_text().replace(
        'files: [{path: /data/readme.txt, mode: "0644", owner: "0:0"}]',
        'files: [{path: /data/readme.txt, platform_path: {linux/s390x: /x}}]'))
    r = run_cli("images", "ls", store=tmp_path / "s", project=proj)
    assert r.rc == 3 and "checks.duo.files[0].platform_path" in r.err, r.err
