"""`ociforge sbom`: the SBOM of an assembled image, from its layers' provenance.

Kept apart from cli.py and attached with `register(cli)`, like the registry commands.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli_common import App, output_options
from .errors import OciforgeError


@click.command()
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["spdx", "cyclonedx"]), default="spdx",
              show_default=True, help="SPDX 2.3 JSON or CycloneDX 1.5 JSON.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the document here (default: stdout).")
@click.option("--platform", help="Of a multi-platform image, the image of this platform "
              "(default: the host's).")
@output_options
@click.pass_obj
def sbom(app: App, name: str, fmt: str, output: Path | None, platform: str | None) -> None:
    """Write the SBOM of an assembled image: Debian packages, Python packages, Maven
    artifacts, the Spark distribution and its jars, repository files, each with a purl.

    Built from what ociforge recorded when it built each layer, not by scanning; the
    same image gives the same bytes. `ociforge push` attaches the SPDX document.
    """
    from .digests import digest_bytes
    from .sbom import generate, media_type

    inv, data = generate(app.store(), name, fmt, platform)
    if not inv.components and not inv.files:
        raise OciforgeError(f"image {name!r} has no layer ociforge built (a pulled image?): "
                            "there is no provenance to describe it from")
    report = {"name": name, "format": fmt, "media_type": media_type(fmt),
              "manifest_digest": inv.manifest_digest, "digest": digest_bytes(data),
              "size": len(data), "packages": len(inv.components), "files": len(inv.files),
              "undescribed_layers": inv.unknown_layers,
              "path": str(output) if output else None}
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    from .store import atomic_write

    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, data)
    human = (f"wrote {output}: {report['packages']} packages, {report['files']} files "
             f"({fmt}, {len(data)} bytes) for {name} {inv.manifest_digest[:19]}")
    if inv.unknown_layers:
        human += f"; {len(inv.unknown_layers)} layers without provenance not described"
    app.emit(report, human)


def register(group: click.Group) -> None:
    group.add_command(sbom)
