"""`push --plan`: publish by stitching from `plan --json`, without loading the recipes.

Against Debian's docker-registry on loopback: the images, their configs, the index
entries and the SBOM referrers come out byte-identical (same digests) to the normal
`push --all --cache`; a plan from another ociforge version or for a changed project
is refused with exit 2 and nothing written to the registry; a layer neither stored
nor cached is named (exit 1); the publish process never
imports the session, the recipe models or the source modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import run_cli, write
from registry_images import fleet_project
from registry_server import Registry

pytestmark = pytest.mark.slow

WRITES = ("PUT", "POST", "PATCH")

# Runs `ociforge ARGS…` in this process, then says which heavy modules it loaded.
PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['ociforge', *sys.argv[1:]]\n"
    "code = 0\ntry:\n"
    "    runpy.run_module('ociforge.cli', run_name='__main__')\n"
    "except SystemExit as e:\n"
    "    code = e.code\n"
    "heavy = sorted(m for m in sys.modules if m == 'ociforge.session'\n"
    "               or m.startswith(('ociforge.recipes', 'ociforge.sources')))\n"
    "print('LOADED ' + ','.join(heavy), file=sys.stderr)\n"
    "sys.exit(code)\n")


def _published(report: dict) -> tuple[dict, dict]:
    images = {i["name"]: i["digest"] for i in report["images"]}
    sboms = {(a["name"], a.get("platform")): a["digest"] for a in report["attached"]}
    return images, sboms


def test_push_plan_publishes_the_same_bytes_without_the_recipes(registry: Registry,
                                                                 tmp_path: Path) -> None:
    project = fleet_project(tmp_path / "proj")
    # Every config field, per-platform env, two platforms (an index), its own
    # repository and tag: all that the stitch takes from the recipe.
    write(project / "recipes" / "rich.yaml", """\
        images:
          img-multi:
            layers: [base-0, e-0]
            platforms: [linux/arm64, linux/amd64]
            repository: example/multi
            tag: "1.0"
            annotations: {org.opencontainers.image.title: multi}
            platform_env:
              linux/arm64: {ARCH_DIR: /opt/arm64}
            config:
              entrypoint: [/bin/sh, -c]
              cmd: ["echo hi"]
              env: {B: "2", A: "1"}
              user: "185"
              workdir: /opt
              labels: {team: data}
              ports: ["8080/tcp"]
              volumes: [/data]
              stop_signal: SIGTERM
        """)
    cache = f"{registry.host}/ci/cache"
    both = {"OCIFORGE_PLATFORMS": "linux/amd64,linux/arm64"}
    r = run_cli("plan", "--all", "--json", store=tmp_path / "planner", project=project,
                env=both)
    assert r.rc == 0, r.err
    plan = r.json()
    assert plan["made_by"]["project"].startswith("sha256:")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(r.out)
    layers = sorted({ln for j in plan["jobs"] for ln in j["layers"]})
    r = run_cli("--cache", cache, "layers", "build", *layers, store=tmp_path / "builder",
                project=project, env=both)
    assert r.rc == 0, r.err

    # Today's publish: an empty store, the recipes loaded, images assembled from the cache.
    r = run_cli("--cache", cache, "push", "--all", "--to", f"{registry.host}/ci/normal",
                "--json", store=tmp_path / "pub-normal", project=project, env=both)
    assert r.rc == 0, r.err
    normal = _published(r.json())

    # From the plan: another empty store; no session, recipe or source module imported.
    p = subprocess.run([sys.executable, "-c", PROBE, "--store", str(tmp_path / "pub-plan"),
                        "--project", str(project), "--cache", cache, "push", "--plan",
                        str(plan_file), "--all", "--to", f"{registry.host}/ci/planned",
                        "--json"], capture_output=True, text=True, timeout=600,
                       env={**os.environ, **both})
    assert p.returncode == 0, p.stderr
    assert "LOADED \n" in p.stderr, p.stderr
    planned = _published(json.loads(p.stdout))
    assert planned == normal and len(normal[0]) == len(plan["images"]) == 6
    assert len([k for k in normal[1] if k[0] == "img-multi"]) == 2  # an SBOM per platform
    assert all(normal[1].values())  # every image got its SBOM, both ways

    # No cache and an empty store: the missing layer is named, nothing is pushed.
    r = run_cli("push", "--plan", plan_file, "img-e", "--to", f"{registry.host}/ci/refused",
                store=tmp_path / "pub-nocache", project=project, env=both)
    assert r.rc == 1 and "e-0 (sha256:" in r.err, r.err

    # A plan of another ociforge version, or for a project changed since: refused, exit
    # 2, one line naming the plan's field; nothing written to the registry.
    stale = json.loads(plan_file.read_text())
    stale["made_by"]["ociforge"] = "0.0.1"
    (tmp_path / "foreign.json").write_text(json.dumps(stale))
    r = run_cli("--cache", cache, "push", "--plan", tmp_path / "foreign.json", "--all",
                "--to", f"{registry.host}/ci/refused", store=tmp_path / "pub-foreign",
                project=project)
    assert r.rc == 2 and "made_by.ociforge" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    recipe = next((project / "recipes").glob("*.yaml"))
    recipe.write_text(recipe.read_text() + "\n# changed after the plan\n")
    r = run_cli("--cache", cache, "push", "--plan", plan_file, "--all",
                "--to", f"{registry.host}/ci/refused", store=tmp_path / "pub-stale",
                project=project)
    assert r.rc == 2 and "made_by.project" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{registry.host}/v2/ci/refused/tags/list")
    assert e.value.code == 404  # the repository was never written


def test_a_malformed_plan_is_refused_in_one_line(tmp_path: Path) -> None:
    from ociforge.publishplan import stamp

    project = fleet_project(tmp_path / "proj")
    plan = {"made_by": stamp(project, 0),
            "stitch": {"img-a": {"compression": "gzip", "platforms": [{"layers": "x"}]}}}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    r = run_cli("push", "--plan", tmp_path / "plan.json", "--all", "--to",
                "127.0.0.1:9/ci/never", store=tmp_path / "s", project=project)
    assert r.rc == 2 and "stitch.img-a.platforms" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "s" / "index.json").exists() or "img-a" not in \
        (tmp_path / "s" / "index.json").read_text()
