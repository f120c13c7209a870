"""`ociforge export`: write images already in the store as an archive or an OCI layout,
choosing the platform of a multi-platform image for the archive.

Kept apart from cli.py and attached with `register(cli)` (see cli_registry.py for why).
"""

from __future__ import annotations

from pathlib import Path

import click

from .cli_common import App, human_size, output_options


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--archive", type=click.Path(path_type=Path, dir_okay=False),
              help="One archive (OCI layout + Docker manifest.json) of one platform per "
                   "image, for `minikube image load` / `kind load image-archive`.")
@click.option("--oci-layout", type=click.Path(path_type=Path, file_okay=False),
              help="An OCI image layout directory with every platform of each image.")
@click.option("--platform", help="The archive's platform (default: the host's, e.g. "
              "linux/amd64); an image that lacks it is an error naming the ones it has.")
@output_options
@click.pass_obj
def export(app: App, names: tuple[str, ...], archive: Path | None, oci_layout: Path | None,
           platform: str | None) -> None:
    """Write store images as an archive and/or an OCI layout (nothing is built)."""
    from .outputs.archive import write_archive
    from .outputs.layout import export_layout

    if not archive and not oci_layout:
        raise click.UsageError("give --archive and/or --oci-layout")
    store = app.store()
    # Everything is read (and a missing platform refused) before anything is written.
    images = store.images(names, platform) if archive else []
    whole = store.tagged(names) if oci_layout else []
    out: dict[str, dict[str, object]] = {}
    size = 0
    with store.writer_lock():
        if archive:
            size = write_archive(store, images, archive)
            out["archive"] = {"path": str(archive), "size": size,
                              "platforms": {i.name: i.platform for i in images}}
        if oci_layout:
            export_layout(store, whole, oci_layout)
            out["oci_layout"] = {"path": str(oci_layout), "digests": {
                t.name: t.descriptor.digest for t in whole}}
    lines = []
    if archive:
        lines.append(f"archive: {archive} ({human_size(size)}; "
                     + ", ".join(f"{i.name} {i.platform}" for i in images) + ")")
    if oci_layout:
        lines.append(f"oci-layout: {oci_layout} ({', '.join(t.name for t in whole)})")
    app.emit(out, "\n".join(lines))


def register(group: click.Group) -> None:
    group.add_command(export)
