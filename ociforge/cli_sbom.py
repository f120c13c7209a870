"""`ociforge sbom`: the SBOM of an assembled image, from its layers' provenance.

Kept apart from cli.py and attached with `register(cli)`, like the registry commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Protocol

import click

from .errors import OciforgeError


class _Ctx(Protocol):
    json: bool
    quiet: bool

    def store(self) -> Any: ...
    def emit(self, data: Any, human: str | None = None) -> None: ...


def _set_json(click_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and click_ctx.obj is not None:
        click_ctx.obj.json = True


@click.command()
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["spdx", "cyclonedx"]), default="spdx",
              show_default=True, help="SPDX 2.3 JSON or CycloneDX 1.5 JSON.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the document here (default: stdout).")
@click.option("--json", "_json", is_flag=True, expose_value=False, callback=_set_json,
              help="With -o: a machine-readable report on stdout.")
@click.pass_obj
def sbom(ctx: _Ctx, name: str, fmt: str, output: Path | None) -> None:
    """Write the SBOM of an assembled image: Debian packages, Python packages, Maven
    artifacts, the Spark distribution and its jars, repository files, each with a purl.

    Built from what ociforge recorded when it built each layer, not by scanning; the
    same image gives the same bytes. `ociforge push` attaches the SPDX document.
    """
    from .digests import digest_bytes
    from .sbom import generate, media_type

    inv, data = generate(ctx.store(), name, fmt)
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
    ctx.emit(report, human)


def register(group: click.Group) -> None:
    group.add_command(sbom)
