"""`ociforge k8s`: what Kubernetes needs besides the image (pod templates).

Kept apart from cli.py and attached with `register(cli)`, like the SBOM command.
"""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from .cli_common import App, output_options


@click.group()
def k8s() -> None:
    """Kubernetes: pod templates for Spark's Kubernetes backend."""


@k8s.command("pod-template")
@click.argument("name")
@click.option("--role", type=click.Choice(["driver", "executor"]), default="driver",
              show_default=True, help="spark.kubernetes.{driver,executor}.podTemplateFile.")
@click.option("--with", "with_", metavar="FEATURE[,FEATURE…]",
              help="The image with these features added (as `assemble --with` names it).")
@click.option("--image", "reference", metavar="REF",
              help="Image reference in the template (default: the recipe's repository:tag).")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the template here (default: stdout).")
@output_options
@click.pass_obj
def pod_template(app: App, name: str, role: str, with_: str | None, reference: str | None,
                 output: Path | None) -> None:
    """Write a pod template for image NAME that Pod Security `restricted` admits: uid/gid
    and fsGroup from the image, no privilege escalation, all capabilities dropped,
    RuntimeDefault seccomp, a read-only root with an emptyDir over every path the image
    writes; GPU images' executors ask for nvidia.com/gpu.

    Needs only the recipes (no assembled image). With --json: the template and the
    paths the image writes, each with where the recipe says so.
    """
    from .k8s.podtemplate import template_for

    features = [f.strip() for f in (with_ or "").split(",") if f.strip()]
    tpl = template_for(app.project(), name, role, with_features=features, reference=reference)
    text = yaml.safe_dump(tpl.manifest, sort_keys=False)
    if output is not None:
        from .store import atomic_write

        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(output, text.encode())
    if app.json:
        app.emit({**tpl.to_json(), "path": str(output) if output else None})
    elif output is None:
        click.echo(text, nl=False)
    elif not app.quiet:
        click.echo(f"wrote {output}: {role} pod template for {tpl.image}")


def register(group: click.Group) -> None:
    group.add_command(k8s)
