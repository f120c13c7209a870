"""`ociforge plan`: the selection's layers split into N CI build jobs, then publish.

Kept apart from cli.py and attached with `register(cli)`, like the SBOM command.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .cli_common import App, human_size, output_options
from .errors import RecipeError


@click.command("plan")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every image the recipes define.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many build jobs to split the layers into.")
@click.option("--github-matrix", is_flag=True,
              help="Print only the JSON a GitHub Actions `strategy.matrix` takes.")
@output_options
@click.pass_obj
def plan(app: App, names: tuple[str, ...], all_: bool, jobs: int, github_matrix: bool) -> None:
    """Split the layers of images NAME… (or --all) into build jobs: each distinct layer
    in exactly one job, a layer built on other images together with theirs, largest
    first (sizes from this store's layer records); then one publish stage that only
    stitches manifests. With --json, also the sha256 of each checkout file the layers
    take, by git blob id, for `push --file-digests`, and each image's layer keys and
    config inputs (`stitch`, stamped `made_by`) for `push --plan`. Each job runs `ociforge layers
    build LAYER…` (with the run's `--cache`, which makes the layers every other job's
    and the publish stage's)."""
    from .plan import known_sizes, make_plan

    if not names and not all_:
        raise click.UsageError("name images, or use --all")
    project = app.project()
    selected = list(project.images) if all_ else [project.resolve(n).name for n in names]
    keys = _input_keys(app, project, selected)
    store = app.store()
    # The size of the very layer where the store has its record (the arm64 one, a
    # layer recorded under another name with the same inputs), else by name.
    sizes: dict[str, int] = known_sizes(store)
    sizes |= {e: rec.size for e, key in keys.items() if (rec := store.read_record(key))}
    result = make_plan(project, dict.fromkeys(selected), jobs, sizes, keys)
    if github_matrix:
        click.echo(json.dumps(result.github_matrix(), separators=(",", ":")))
        return
    if app.json:
        # The checkout's file digests, so the publish job's fresh checkout needs no
        # re-hash (`push --file-digests`; served only for files git finds unchanged).
        session = app.session()
        digests = session.checkout_digests(
            dict.fromkeys(ln for layers in result.images.values() for ln in layers))
        stitch: dict[str, Any] = {}
        if not result.needs:  # builder layers: keys need their base images assembled
            try:
                stitch = _stitch_inputs(session, selected, all_)
            except RecipeError as e:  # a missing lock: the plan still splits the jobs
                app.warn(f"no stitch inputs for `push --plan`: {e}")
        app.emit({**result.to_json(), "file_digests": digests, **stitch})
        return
    cache = f"--cache {app.cache_repo} " if app.cache_repo else ""
    for job in result.jobs:
        click.echo(f"job {job.index}  {human_size(job.size):>10}  "
                   f"ociforge {cache}layers build {' '.join(job.layers)}")
    click.echo(f"publish     {len(result.images)} images (stitching only)"
               + (f": ociforge {cache}push --all --to REGISTRY/REPO" if cache else ""))
    if result.unknown and not app.quiet:
        click.echo(f"no size on record under these names in this store: "
                   f"{', '.join(result.unknown)}", err=True)


def _input_keys(app: App, project: Any, selected: list[str]) -> dict[str, str]:
    """The input key of each job entry of the selection that builds on no image (a
    `builder` layer's key needs its base images assembled: left out); none when a lock
    is missing — the plan then splits by name alone."""
    from .plan import entries, parse_token

    by_platform: dict[str, list[str]] = {}
    for entry in dict.fromkeys(entries(project, selected)):
        layer, platform = parse_token(entry)
        if not any(src.needs_images() for src in project.layer(layer).all_sources()):
            by_platform.setdefault(platform, []).append(entry)
    session, out = app.session(), dict[str, str]()
    try:
        for platform, mine in by_platform.items():
            keys = session.keys([parse_token(e)[0] for e in mine], platform)
            out |= {e: keys[parse_token(e)[0]] for e in mine}
    except RecipeError as e:
        app.warn(f"layers with the same inputs not joined in one job: {e}")
        return {}
    return out


def _stitch_inputs(session: Any, names: list[str], all_: bool) -> dict[str, Any]:
    """What `push --plan` publishes from: per image (the run's features added) and
    platform, its layers' input keys and the recipe's config and manifest inputs;
    stamped with this ociforge and this project (publishplan.load checks both)."""
    from .assemble import stitch_inputs
    from .publishplan import stamp

    table = {}
    for name in session.select(names, all_):
        image = session.project.resolve(name)
        platforms = []
        for p in session.platforms_of(image):
            keys = session.keys(p.layers, p.platform)
            platforms.append({**stitch_inputs(image.name, p),
                              "layers": [[ln, keys[ln]] for ln in p.layers]})
        table[image.name] = {"compression": image.compression, "platforms": platforms}
    return {"made_by": stamp(session.project.root, session.ctx.sde), "stitch": table}


def register(group: click.Group) -> None:
    group.add_command(plan)
