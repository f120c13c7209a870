"""`ociforge outdated` and `ociforge diff`: what changed upstream since the locks, and
what changed between two images.

Kept apart from cli.py and attached with `register(cli)`, like the registry commands.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .cli_common import App, human_size, output_options, pass_app

if TYPE_CHECKING:
    from .imagediff import Diff
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


def _signed(n: int) -> str:
    return ("+" if n >= 0 else "-") + human_size(abs(n))


def diff_lines(d: Diff) -> list[str]:
    """The human table of a diff: layers, then packages by group, then the size."""
    lines = [f"A  {d.a['name']}  {d.a['digest'][:19]}  {human_size(d.a['size'])}",
             f"B  {d.b['name']}  {d.b['digest'][:19]}  {human_size(d.b['size'])}"]
    lines += [f"layer changed  {x.name}" + (f" -> {y.name}" if y.name != x.name else "")
              + f"  {_signed(y.size - x.size)}" for x, y in d.changed]
    lines += [f"layer added    {y.name}  +{human_size(y.size)}" for y in d.added]
    lines += [f"layer removed  {x.name}  -{human_size(x.size)}" for x in d.removed]
    for group, changes in d.packages.items():
        lines += [f"{group:<8} {c['name']}  {c['old']} -> {c['new']}" for c in changes["changed"]]
        lines += [f"{group:<8} + {c['name']} {c['version']}" for c in changes["added"]]
        lines += [f"{group:<8} - {c['name']} {c['version']}" for c in changes["removed"]]
    if d.undescribed:
        lines.append("no provenance (packages not compared): " + ", ".join(d.undescribed))
    counts = {g: sum(len(v) for v in c.values()) for g, c in d.packages.items()}
    lines.append(f"{len(d.changed)} layers changed, {len(d.added)} added, {len(d.removed)} "
                 f"removed, {d.unchanged} the same; packages: "
                 + ", ".join(f"{g} {n}" for g, n in counts.items())
                 + f"; size {_signed(d.size_delta)}")
    return lines


def is_registry_reference(arg: str) -> bool:
    """`docker://REF`, `oci://REF`, or HOST/REPO… whose first part names a host
    (`registry.example.com/spark:4.1.4`, `127.0.0.1:5000/spark@sha256:…`)."""
    if arg.startswith(("docker://", "oci://")):
        return True
    first, sep, _ = arg.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--insecure", is_flag=True,
              help="Allow plain HTTP and unverified TLS to a non-loopback registry.")
@output_options
@pass_app
def diff(app: App, a: str, b: str, insecure: bool) -> None:
    """What differs from image A to image B: layers added, removed and changed (by the
    names in the image history), and the Debian packages, Python distributions and jars
    whose versions changed, with the size delta. A and B are names in the store, image
    archives (.tar), OCI layout directories (PATH#NAME picks one image) or registry
    references; package
    versions come from the provenance ociforge recorded when it built each layer.
    A registry reference (docker://REF, or HOST/REPO:TAG) is pulled into the store
    first, as `ociforge pull` does (blobs the store has are not fetched)."""
    from .imagediff import diff_images
    from .imagesource import open_image

    store = app.store()
    with ExitStack() as stack:
        images = []
        for arg in (a, b):
            if arg not in store.tags() and not Path(arg.partition("#")[0]).exists() \
                    and is_registry_reference(arg):
                from .cli_registry import pull_into

                arg = pull_into(store, arg, insecure=insecure).name
            img, close = open_image(arg, store)
            stack.callback(close)
            images.append(img)
        d = diff_images(store, images[0], images[1], a, b)
    app.emit(d.to_json(), "\n".join(diff_lines(d)))


def register(group: click.Group) -> None:
    group.add_command(outdated)
    group.add_command(diff)
