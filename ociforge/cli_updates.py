"""`ociforge outdated` and `ociforge diff`: what changed upstream since the locks, and
what changed between two images.

Kept apart from cli.py and attached with `register(cli)`, like the registry commands.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from .cli_common import App, output_options, pass_app

if TYPE_CHECKING:
    from .recipes import Project

OUTDATED_EXIT = 10  # something is newer upstream than a lock (not an error)


def _layers(project: Project, names: tuple[str, ...]) -> list[str]:
    """Layers named directly, or those of the named images; every layer without names."""
    if not names:
        return list(project.layers)
    out: list[str] = []
    for name in names:
        out += [name] if name in project.layers else project.resolve(name).layers
    return list(dict.fromkeys(out))


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every layer of the project (the default).")
@output_options
@pass_app
def outdated(app: App, names: tuple[str, ...], all_: bool) -> None:
    """Report what is newer upstream than the locks: pip pins (from the package index),
    Maven add-ons (maven-metadata.xml), Spark releases per line (pyspark on the index)
    and Debian packages. NAMES are images or layers. Writes nothing. Exit 0 when
    nothing is outdated, 10 when something is."""
    from .outdated import check
    from .sources.base import DEFAULT_INDEX_URL, BuildContext

    if all_ and names:
        raise click.UsageError("name images or layers, or use --all, not both")
    project = app.project()
    layers = _layers(project, names)
    ctx = BuildContext(project_root=project.root, index_url=app.index_url or DEFAULT_INDEX_URL,
                       maven_repos=app.maven_repos)
    report = check(project, layers, ctx)
    rows = [(f.provider, f.layer, f.name, f.current, f.newest_compatible or "-", f.newest,
             f.note) for f in report.findings]
    lines = []
    if rows:
        head = ("kind", "layer", "package", "locked", "newest patch", "newest", "")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(6)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
                  + (f"  ({r[6]})" if r[6] else "") for r in [head, *rows]]
    lines += [f"not checked: {u.layer} ({u.provider}): {u.reason}" for u in report.unchecked]
    checked = ", ".join(f"{k} {n}" for k, n in report.checked.items())
    lines.append(f"{len(report.findings)} outdated in "
                 f"{len({f.layer for f in report.findings})} layers; compared: {checked}")
    app.emit(report.to_json(), "\n".join(lines))
    if report.findings:
        sys.exit(OUTDATED_EXIT)


def register(group: click.Group) -> None:
    group.add_command(outdated)
