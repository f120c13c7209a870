"""Issue 17, item 1: ociforge vs the seeds' way — multi-stage Dockerfiles built with
`buildah bud --layers` (bench/dockerfiles/), same inputs, same scenarios:

  a  cold build of spark-4.1.1
  b  cold build of the four baselines (3.5.7, 3.5.8, 4.1.0, 4.1.1)
  c  rebuild of the four, nothing changed
  d  the entrypoint changed (the last layer), rebuild of the four
  e  one pin of the 4.1 Python layer changed (a middle layer), rebuild of the four
  f  the iceberg variant on top of each baseline
  g  export of spark-4.1.1 to an archive for `minikube image load`

What is cached before "cold": for buildah an empty storage (overlay driver, its own
--root), the Debian base given as `FROM oci-archive:` (its import is inside the
timing; measured alone as well); for ociforge a store holding only the debian-base
layer (the same base, its blob and record linked in untimed). Both read the same
files: the pyspark sdists, JDBC .debs and Maven jars from ociforge's downloads cache
(hard links in the build context), the wheels from one local wheelhouse (buildah:
`pip install --no-index --find-links`; ociforge: `--index-url file://…/simple`).
No network in any timed part. One run per scenario (issue 17: "one run each"),
buildah first then ociforge, each under `flock /tmp/bench.lock`, the load average
recorded before and after.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import OCIFORGE, REPO_ROOT, RESULTS_DIR, machine
from seeds_setup import BASELINES, PIN_FROM, PIN_TO, Seeds, pin_line

LOCK = Path(os.environ.get("OCIFORGE_BENCH_LOCK", "/tmp/bench.lock"))
ONE = "4.1.1"
GOALS = {"a": 0.5, "b": 0.5, "c": 0.1, "d": 0.1, "e": 0.1, "f": 0.1, "g": 0.5}
TITLES = {
    "a": "cold build, spark-4.1.1",
    "b": "cold build, the four baselines",
    "c": "rebuild of the four, nothing changed",
    "d": "entrypoint changed (last layer), four images",
    "e": "one Python pin changed (middle layer), four images",
    "f": "iceberg variant on each of the four",
    "g": "export spark-4.1.1 to an archive (minikube image load)",
}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def locked_time(argvs: list[list[str]], cwd: Path | None = None,
                cpu: dict[str, float] | None = None) -> float:
    """Wall seconds of the commands run one after another, holding the bench lock
    (so two benchmarks never time at once); the lock wait is not timed. With `cpu`,
    its "client" entry gets the CPU seconds the commands used."""
    LOCK.touch(exist_ok=True)
    with open(LOCK) as fd:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.sync()
            c0, t0 = children_cpu(), time.perf_counter()
            for argv in argvs:
                proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(f"{' '.join(argv[:8])}…: exit {proc.returncode}: "
                                       f"{(proc.stdout + proc.stderr)[-2000:]}")
            wall = time.perf_counter() - t0
            if cpu is not None:
                cpu["client"] = children_cpu() - c0
            return wall
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def rewrite(path: Path, text: str) -> None:
    """Replace a file's contents without writing through a hard link."""
    mode = path.stat().st_mode
    path.unlink()
    path.write_text(text)
    path.chmod(mode)


# The layer's lock of each platform (the bench builds linux/amd64 only; the arm64
# lock is moved too so that `ociforge lock --check` accepts the project).
ARCH_LOCKS = [("python-deps-4.1.lock", "manylinux_2_36_x86_64"),
              ("python-deps-4.1.aarch64.lock", "manylinux_2_36_aarch64")]


def lock_with_pin(text: str, new_line: str, platform: str = "manylinux_2_36_x86_64") -> str:
    """A python-deps-4.1 lock (of `platform`) with PIN_FROM moved to PIN_TO, and its
    `# requirements:` hash as ociforge computes it from the layer's requirements."""
    sys.path.insert(0, str(REPO_ROOT))
    from ociforge.digests import key_of
    layer = (REPO_ROOT / "layers" / "python-deps-4.1.yaml").read_text()
    reqs = [r.replace(PIN_FROM, PIN_TO) for r in re.findall(r"^\s+- (\S+==\S+)$", layer, re.M)]
    wanted = key_of({"requirements": sorted(r.lower() for r in reqs),
                     "python": "3.11", "platform": platform})
    name = PIN_FROM.split("==")[0]
    text = re.sub(rf"^{re.escape(name)}==\S+ .*$", new_line, text, flags=re.M)
    return re.sub(r"^# requirements: \S+$", f"# requirements: {wanted}", text, flags=re.M)


# -- the two tools ----------------------------------------------------------------------

@dataclass
class BuildahSide:
    """buildah with its own storage (overlay) and a private copy of the build context."""

    seeds: Seeds
    work: Path

    @property
    def ctx(self) -> Path:
        return self.work / "context"

    def reset(self) -> None:
        root = self.work / "root"
        if root.exists():
            subprocess.run(self.cmd("rmi", "-a", "-f"), capture_output=True, check=False)
            subprocess.run(["umount", "-R", str(root / "overlay")], capture_output=True,
                           check=False)
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        subprocess.run(["cp", "-al", str(self.seeds.context), str(self.ctx)], check=True)

    def cmd(self, *args: str) -> list[str]:
        return ["buildah", "--root", str(self.work / "root"), "--runroot",
                str(self.work / "run"), "--storage-driver", "overlay", *args]

    def build(self, version: str) -> list[str]:
        line, py4j = BASELINES[version]
        return self.cmd("bud", "--layers", "--isolation", "chroot", "-q",
                        "--build-arg", f"BASE=oci-archive:{self.seeds.base_archive}",
                        "--build-arg", f"SPARK_VERSION={version}",
                        "--build-arg", f"PY_LINE={line}", "--build-arg", f"PY4J={py4j}",
                        "-t", f"localhost/spark:{version}", "-f",
                        str(self.ctx / "Dockerfile"), str(self.ctx))

    def variant(self, version: str) -> list[str]:
        return self.cmd("bud", "--layers", "--isolation", "chroot", "-q",
                        "--build-arg", f"BASELINE=localhost/spark:{version}",
                        "--build-arg", f"SPARK_VERSION={version}",
                        "-t", f"localhost/spark:{version}-iceberg", "-f",
                        str(self.ctx / "Dockerfile.iceberg"), str(self.ctx))

    def export(self, out: Path) -> list[str]:
        return self.cmd("push", "-q", f"localhost/spark:{ONE}",
                        f"docker-archive:{out}:spark:{ONE}")

    def edit_entrypoint(self) -> None:
        p = self.ctx / "spark" / "entrypoint.sh"
        rewrite(p, p.read_text() + "# bench: entrypoint changed\n")

    def edit_pin(self, new_line: str) -> None:
        p = self.ctx / "requirements-4.1.txt"
        rewrite(p, lock_with_pin(p.read_text(), new_line))

    def sizes(self) -> dict[str, Any]:
        out = subprocess.run(self.cmd("images", "--json"), capture_output=True, text=True,
                             check=True).stdout
        sizes = {}
        for img in json.loads(out):
            for name in img.get("names") or []:
                if name.startswith("localhost/spark:"):
                    sizes[name.split(":", 1)[1]] = {"uncompressed": img.get("size")}
        for tag in sizes:
            insp = subprocess.run(self.cmd("inspect", "--type", "image",
                                           f"localhost/spark:{tag}"),
                                  capture_output=True, text=True, check=True).stdout
            sizes[tag]["layers"] = len(json.loads(insp)["OCIv1"]["rootfs"]["diff_ids"])
        return sizes


@dataclass
class OciforgeSide:
    """ociforge with its own store (debian-base only when cold) and project copy."""

    seeds: Seeds
    work: Path
    extra: list[str] = field(default_factory=list)

    @property
    def store(self) -> Path:
        return self.work / "store"

    @property
    def project(self) -> Path:
        return self.work / "project"

    def reset(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        shutil.copytree(self.seeds.project, self.project, symlinks=True)
        seed_base_layer(self.seeds.store, self.store)

    def cmd(self, *args: str) -> list[str]:
        return [OCIFORGE, "--store", str(self.store), "--project", str(self.project), "-q",
                "--index-url", self.seeds.index_url, *args]

    def build(self, *versions: str) -> list[str]:
        return self.cmd("assemble", *[f"spark-{v}" for v in versions])

    def variants(self, *versions: str) -> list[str]:
        return self.cmd("assemble", *[f"spark-{v}" for v in versions], "--with", "iceberg")

    def export(self, out: Path) -> list[str]:
        return self.cmd("assemble", f"spark-{ONE}", "--archive", str(out))

    def edit_entrypoint(self) -> None:
        p = self.project / "docker" / "spark" / "entrypoint.sh"
        rewrite(p, p.read_text() + "# bench: entrypoint changed\n")

    def edit_pin(self, new_line: str) -> None:
        y = self.project / "layers" / "python-deps-4.1.yaml"
        rewrite(y, y.read_text().replace(PIN_FROM, PIN_TO))
        locks = self.project / "layers" / "locks"
        for lk, platform in ARCH_LOCKS:
            rewrite(locks / lk, lock_with_pin((locks / lk).read_text(), new_line, platform))

    def sizes(self) -> dict[str, Any]:
        index = json.loads((self.store / "index.json").read_text())
        tar_size = {}
        for rec in (self.store / "ociforge" / "layers").glob("*.json"):
            doc = json.loads(rec.read_text())
            tar_size[doc["diff_id"]] = doc["size"]
        sizes = {}
        for m in index["manifests"]:
            name = (m.get("annotations") or {}).get("org.opencontainers.image.ref.name", "")
            if not name.startswith("spark-"):
                continue
            man = json.loads((self.store / "blobs" / "sha256" /
                              m["digest"].split(":")[1]).read_text())
            config = json.loads((self.store / "blobs" / "sha256" /
                                 man["config"]["digest"].split(":")[1]).read_text())
            sizes[name.removeprefix("spark-")] = {
                "compressed_bytes": sum(layer["size"] for layer in man["layers"]),
                "uncompressed_bytes": sum(tar_size.get(d, 0)
                                          for d in config["rootfs"]["diff_ids"]),
                "layers": len(man["layers"])}
        return sizes


def seed_base_layer(src_store: Path, dest: Path) -> None:
    """A new store holding only the debian-base layer records and their blobs."""
    subprocess.run([OCIFORGE, "--store", str(dest), "-q", "layers", "ls"], check=True,
                   capture_output=True)
    (dest / "ociforge" / "layers").mkdir(parents=True, exist_ok=True)
    for rec in (src_store / "ociforge" / "layers").glob("*.json"):
        doc = json.loads(rec.read_text())
        if doc.get("name") != "debian-base":
            continue
        shutil.copy(rec, dest / "ociforge" / "layers" / rec.name)
        for blob in doc["blobs"].values():
            h = blob["digest"].split(":")[1]
            target = dest / "blobs" / "sha256" / h
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.link(src_store / "blobs" / "sha256" / h, target)


# -- scenarios --------------------------------------------------------------------------

Side = BuildahSide | OciforgeSide


def steps(side: Side, scenario: str, out: Path, new_line: str) -> list[list[str]]:
    """The commands of one scenario for one tool (edits for d and e made first)."""
    four = list(BASELINES)
    if scenario == "d":
        side.edit_entrypoint()
    if scenario == "e":
        side.edit_pin(new_line)
    if isinstance(side, BuildahSide):
        if scenario == "a":
            return [side.build(ONE)]
        if scenario in "bcde":
            return [side.build(v) for v in four]
        if scenario == "f":
            return [side.variant(v) for v in four]
        return [side.export(out)]
    if scenario == "a":
        return [side.build(ONE)]
    if scenario in "bcde":
        return [side.build(*four)]
    if scenario == "f":
        return [side.variants(*four)]
    return [side.export(out)]


def run_tool(side: Side, scenarios: str, out_dir: Path, new_line: str,
             log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Scenarios in order: a on a cold side, then b..g on one reset before b."""
    results: dict[str, dict[str, Any]] = {}
    tool = "buildah" if isinstance(side, BuildahSide) else "ociforge"
    for sc in scenarios:
        if sc in "ab":
            side.reset()
        out = out_dir / f"{tool}-{sc}.tar"
        argvs = steps(side, sc, out, new_line)
        before = loadavg()
        secs = locked_time(argvs)
        results[sc] = {"seconds": round(secs, 3), "load_before": before,
                       "load_after": loadavg(), "commands": len(argvs),
                       "at": time.strftime("%H:%M:%S", time.gmtime())}
        if sc == "g":
            results[sc]["archive_bytes"] = out.stat().st_size
            out.unlink()
        if sc == "f":
            results["sizes"] = side.sizes()
        log(f"  {tool:<9} {sc}  {TITLES[sc]:<55} {secs:8.2f} s  load {before}")
    return results


def base_import_seconds(seeds: Seeds, work: Path) -> float:
    """buildah's import of the base archive alone (part of its cold builds)."""
    side = BuildahSide(seeds, work)
    side.reset()
    try:
        return locked_time([side.cmd("pull", "-q", f"oci-archive:{seeds.base_archive}")])
    finally:
        side.reset()
        shutil.rmtree(work, ignore_errors=True)


def bench_buildah(seeds: Seeds, scratch: Path, scenarios: str = "abcdefg") -> dict[str, Any]:
    new_line = pin_line(seeds)
    started = machine()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    tools: dict[str, dict[str, Any]] = {}
    try:
        for name, side in (("buildah", BuildahSide(seeds, scratch / "buildah")),
                           ("ociforge", OciforgeSide(seeds, scratch / "ociforge"))):
            tools[name] = run_tool(side, scenarios, scratch, new_line, log)
            if isinstance(side, BuildahSide):
                side.reset()  # frees the overlay storage before ociforge runs
            shutil.rmtree(side.work, ignore_errors=True)
        base_import = base_import_seconds(seeds, scratch / "buildah-import")
    finally:
        shutil.rmtree(scratch / "buildah", ignore_errors=True)
    rows = []
    for sc in scenarios:
        b, o = tools["buildah"][sc]["seconds"], tools["ociforge"][sc]["seconds"]
        rows.append({"scenario": sc, "case": TITLES[sc], "buildah_s": b, "ociforge_s": o,
                     "ratio": round(o / b, 3), "goal": GOALS[sc],
                     "met": o / b <= GOALS[sc],
                     "load_before": {t: tools[t][sc]["load_before"] for t in tools},
                     "load_after": {t: tools[t][sc]["load_after"] for t in tools}})
    doc = {"benchmark": "buildah", "title": "ociforge vs buildah bud --layers (issue 17, 1)",
           "machine": started, "machine_after": machine(),
           "buildah_version": subprocess.run(["buildah", "--version"], capture_output=True,
                                             text=True).stdout.strip(),
           "storage_driver": "overlay", "isolation": "chroot",
           "buildah_base_import_s": round(base_import, 3),
           "changed_pin": f"{PIN_FROM} -> {PIN_TO}", "rows": rows, "tools": tools}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "buildah.json").write_text(json.dumps(doc, indent=2) + "\n")
    print_rows(rows)
    return doc


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(f"\n== ociforge vs buildah bud --layers\n{'':3}{'case':<55}{'buildah':>9}"
          f"{'ociforge':>9}{'ratio':>7}  goal")
    for r in rows:
        print(f"{r['scenario']:<3}{r['case']:<55}{r['buildah_s']:>9.2f}{r['ociforge_s']:>9.2f}"
              f"{r['ratio']:>7.2f}  ≤ {r['goal']} {'met' if r['met'] else 'MISSED'}")


def profile_incremental(seeds: Seeds, scratch: Path,
                        rows: list[dict[str, Any]]) -> dict[str, str]:
    """cProfile (all threads) of ociforge's side of scenarios e and f (the two that
    build layers from warm state, nearest their goals), re-run untimed on a
    hard-linked copy of the prepared store: e with the pin moved, f with the
    variant's layers taken out of the store. Written to
    results/profiles/buildah-<scenario>.txt."""
    from profile_cli import profile_cli
    out: dict[str, str] = {}
    for r in rows:
        sc = r["scenario"]
        if sc not in "ef":
            continue
        work = scratch / f"profile-{sc}"
        side = OciforgeSide(seeds, work)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        shutil.copytree(seeds.project, side.project, symlinks=True)
        subprocess.run(["cp", "-al", str(seeds.store), str(side.store)], check=True)
        if sc == "e":
            side.edit_pin(pin_line(seeds))
            argv = side.build("4.1.0", "4.1.1")
        else:
            for rec in (side.store / "ociforge" / "layers").glob("*.json"):
                name = json.loads(rec.read_text()).get("name", "")
                if name.startswith(("s3a-", "iceberg-", "hadoop-cloud-")):
                    rec.unlink()
            argv = side.variants(*BASELINES)
        path = RESULTS_DIR / "profiles" / f"buildah-{sc}.txt"
        profile_cli(argv[1:], path, top=30)
        out[sc] = str(path.relative_to(REPO_ROOT))
        shutil.rmtree(work, ignore_errors=True)
    return out


def main(ns: Any) -> None:
    """`python bench/run.py buildah`: setup (networked only when something is missing),
    then the scenarios (`--scenarios`, default all)."""
    from common import workdir
    from seeds_setup import prepare
    seeds = prepare(full=False)
    with workdir("buildah") as scratch:
        doc = bench_buildah(seeds, scratch, getattr(ns, "scenarios", None) or "abcdefg")
        doc["profiles"] = profile_incremental(seeds, scratch, doc["rows"])
        (RESULTS_DIR / "buildah.json").write_text(json.dumps(doc, indent=2) + "\n")


def _mb(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:,.0f} MB"


def markdown(doc: dict[str, Any]) -> str:
    """The docs/benchmarks.md section, from results/buildah.json."""
    m, after = doc["machine"], doc.get("machine_after", {})
    lines = [
        f"Measured {m['date']} on {m['nproc']} × {m['cpu']}, {doc['buildah_version']} "
        f"(storage driver {doc['storage_driver']}, isolation {doc['isolation']}); one run "
        f"per scenario, buildah's scenarios first, then ociforge's. Load average "
        f"(1/5/15 min) {m['loadavg_1_5_15']} at the start, "
        f"{after.get('loadavg_1_5_15')} at the end; each scenario's own before/after is "
        "in the JSON and below.", "",
        "| | scenario | buildah | ociforge | ratio | goal | load before (b / o) |",
        "|---|---|---:|---:|---:|---|---|"]
    for r in doc["rows"]:
        lb = r["load_before"]
        lines.append(f"| {r['scenario']} | {r['case']} | {r['buildah_s']:.2f} s | "
                     f"{r['ociforge_s']:.2f} s | **{r['ratio']:.2f}** | ≤ {r['goal']}: "
                     f"{'met' if r['met'] else '**missed**'} | {lb['buildah'][0]} / "
                     f"{lb['ociforge'][0]} |")
    lines += ["", f"buildah's import of the base archive alone (part of its cold builds a "
              f"and b): {doc['buildah_base_import_s']:.2f} s. Changed pin in (e): "
              f"`{doc['changed_pin']}`.", ""]
    bs = doc["tools"]["buildah"].get("sizes", {})
    os_ = doc["tools"]["ociforge"].get("sizes", {})
    if bs or os_:
        lines += ["Image sizes (after scenario f; buildah: uncompressed, as `buildah "
                  "images` reports it; ociforge: the layers' tar bytes, and their gzip "
                  "blobs):", "",
                  "| image | buildah layers | buildah size | ociforge layers | "
                  "ociforge size | ociforge gzip |", "|---|---:|---:|---:|---:|---:|"]
        for tag in sorted(set(bs) | set(os_)):
            b, o = bs.get(tag, {}), os_.get(tag, {})
            lines.append(f"| spark-{tag} | {b.get('layers', '–')} | "
                         f"{b.get('uncompressed', '–')} | {o.get('layers', '–')} | "
                         f"{_mb(o.get('uncompressed_bytes'))} | "
                         f"{_mb(o.get('compressed_bytes'))} |")
        g = (doc["tools"]["buildah"].get("g", {}), doc["tools"]["ociforge"].get("g", {}))
        if g[0] and g[1]:
            lines += ["", f"Archives of (g): buildah `docker-archive` "
                      f"{_mb(g[0]['archive_bytes'])} (uncompressed layers), ociforge "
                      f"`--archive` {_mb(g[1]['archive_bytes'])} (gzip layers)."]
    return "\n".join(lines) + "\n"
