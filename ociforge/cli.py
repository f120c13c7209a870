"""The `ociforge` command line.

Exit codes: 0 success; 1 other failure; 2 usage; 3 invalid recipe; 4 integrity
(digest mismatch, unsafe archive); 5 store corruption; 6 network; 7 build failure;
8 registry authentication; 9 checks failed (`ociforge test`); 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from .errors import OciforgeError


class Ctx:
    def __init__(self, store: Path | None, project: Path, as_json: bool, quiet: bool,
                 index_url: str | None) -> None:
        self.store_path = store
        self.project_root = project
        self.json = as_json
        self.quiet = quiet
        self.index_url = index_url
        self.maven_repos: list[str] | None = None

    def store(self):  # type: ignore[no-untyped-def]
        from .store import Store, default_store_path

        return Store(self.store_path or default_store_path())

    def project(self):  # type: ignore[no-untyped-def]
        from .recipes import Project

        return Project.load(self.project_root)

    def emit(self, data: Any, human: str | None = None) -> None:
        if self.json:
            click.echo(json.dumps(data, indent=2, sort_keys=True))
        elif human is not None and not self.quiet:
            click.echo(human)

    def reporter(self):  # type: ignore[no-untyped-def]
        from .progress import Reporter

        return Reporter(enabled=None if not (self.json or self.quiet) else False)


pass_ctx = click.make_pass_decorator(Ctx)


def _set_json(click_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        click_ctx.ensure_object(Ctx).json = True


def output_options(f: Any) -> Any:
    """`--json` accepted after the subcommand too (`ociforge assemble X --json`)."""
    return click.option("--json", "_json", is_flag=True, expose_value=False,
                        callback=_set_json, is_eager=False,
                        help="Machine-readable output on stdout.")(f)


def _fail(ctx: Ctx | None, err: OciforgeError) -> NoReturn:
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    if ctx is not None and ctx.json:
        click.echo(json.dumps({"error": msg, "exit_code": err.exit_code}))
    click.echo(f"ociforge: error: {msg}", err=True)
    sys.exit(err.exit_code)


with_option = click.option(
    "--with", "with_", metavar="FEATURE[,FEATURE…]",
    help="Add features (s3a, celeborn, connect, iceberg, gpu, jupyter, …) to each image; "
         "the new image's name and tag say which.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", type=click.Path(path_type=Path), envvar="OCIFORGE_STORE",
              help="Store directory (default: $XDG_CACHE_HOME/ociforge/store).")
@click.option("--project", type=click.Path(path_type=Path, file_okay=False), default=".",
              envvar="OCIFORGE_PROJECT", show_default=True,
              help="Project directory holding layers/ and recipes/.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
@click.option("--index-url", envvar="OCIFORGE_INDEX_URL",
              help="Python package index (simple API) for `pypi` sources.")
@click.option("--maven-repo", "maven_repos", multiple=True, metavar="[ID=]URL",
              help="Maven repository for `maven` layers without their own list (repeatable; "
                   "default $OCIFORGE_MAVEN_REPOS, then Maven Central).")
@click.version_option(package_name="ociforge")
@click.pass_context
def cli(click_ctx: click.Context, store: Path | None, project: Path, as_json: bool,
        quiet: bool, index_url: str | None, maven_repos: tuple[str, ...]) -> None:
    """Daemonless, reproducible OCI image assembly."""
    click_ctx.obj = Ctx(store, project, as_json, quiet, index_url)
    click_ctx.obj.maven_repos = list(maven_repos) or None


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every image the recipes define.")
@click.option("--archive", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write one archive (OCI layout + Docker manifest.json) here.")
@click.option("--oci-layout", type=click.Path(path_type=Path, file_okay=False),
              help="Also export an OCI image layout directory here.")
@click.option("--compression", type=click.Choice(["gzip", "zstd", "none"]),
              help="Layer compression (default: the recipe's, gzip unless set).")
@click.option("--swap-layer", "swaps", multiple=True, metavar="OLD=NEW",
              help="Use layer NEW wherever the recipes use OLD (e.g. another source of "
                   "the Spark distribution). Repeatable.")
@with_option
@output_options
@pass_ctx
def assemble(ctx: Ctx, names: tuple[str, ...], all_: bool, archive: Path | None,
             oci_layout: Path | None, compression: str | None, swaps: tuple[str, ...],
             with_: str | None) -> None:
    """Assemble images: build missing layers, write manifests, tag them in the store."""
    started = time.monotonic()
    project = ctx.project()
    for swap in swaps:
        old, sep, new = swap.partition("=")
        if not sep:
            raise click.UsageError(f"--swap-layer takes OLD=NEW, got {swap!r}")
        project.swap_layer(old, new)
    selected = _select(project, names, all_, with_)
    store = ctx.store()
    with ctx.reporter() as rep, store.writer_lock():
        results, builder = _build(ctx, store, project, selected, compression, rep)
        outputs: dict[str, Any] = {}
        if archive or oci_layout:
            refs = store.images(selected)
            total = sum(d.size for r in refs for d in [r.descriptor, *r.blobs()])
            if archive:
                from .outputs.archive import write_archive

                size = write_archive(store, refs, archive,
                                     progress=lambda n: rep.advance("archive", n, total))
                outputs["archive"] = {"path": str(archive), "size": size}
            if oci_layout:
                from .outputs.layout import export_layout

                export_layout(store, refs, oci_layout,
                              progress=lambda n: rep.advance("oci-layout", n, total))
                outputs["oci_layout"] = {"path": str(oci_layout)}
    stats = builder.stats
    report = {
        "images": [r.to_json() for r in results],
        "layers": {"built": stats.built, "reused": stats.reused,
                   "transcoded": stats.transcoded},
        "outputs": outputs,
        "seconds": round(time.monotonic() - started, 3),
    }
    lines = [f"{r.name:<32} {r.manifest.digest[:19]}  {_size(r.to_json()['size']):>9}  "
             f"{r.reference}" for r in results]
    lines.append(f"layers: {len(stats.built)} built, {len(stats.reused)} cached, "
                 f"{len(stats.transcoded)} recompressed; {report['seconds']} s")
    for key, out in outputs.items():
        lines.append(f"{key}: {out['path']}" + (f" ({_size(out['size'])})" if "size" in out
                                                else ""))
    ctx.emit(report, "\n".join(lines))


def _select(project: Any, names: tuple[str, ...], all_: bool, with_: str | None) -> list[str]:
    """Image names from arguments: aliases resolved, `--with` features added."""
    selected = list(project.images) if all_ else [project.resolve(n) for n in names]
    if not selected:
        raise click.UsageError("name at least one image, or use --all")
    if with_:
        features = [f.strip() for f in with_.split(",") if f.strip()]
        selected = [project.with_features(n, features) for n in selected]
    return list(dict.fromkeys(selected))


def _build_context(ctx: Ctx, store: Any, project: Any) -> Any:
    from .sources.base import DEFAULT_INDEX_URL, BuildContext
    from .tartree import source_date_epoch

    return BuildContext(store=store, project_root=project.root, sde=source_date_epoch(),
                        index_url=ctx.index_url or DEFAULT_INDEX_URL,
                        maven_repos=ctx.maven_repos)


def _layer_builder(ctx: Ctx, store: Any, project: Any, rep: Any) -> Any:
    from .layers import LayerBuilder

    return LayerBuilder(_build_context(ctx, store, project),
                        progress=lambda name, done, total:
                        rep.update(f"layer {name}", done, total))


def _build(ctx: Ctx, store: Any, project: Any, selected: list[str], compression: str | None,
           rep: Any) -> tuple[list[Any], Any]:
    """Assemble `selected` (building missing layers); returns results and the builder."""
    from .assemble import assemble as assemble_one

    for n in selected:
        project.image(n)  # unknown names fail before any work
    builder = _layer_builder(ctx, store, project, rep)
    for n in selected:  # resolve every input first: bad pins fail before any build
        for layer_name in project.image(n).layers:
            builder.key(layer_name, project.layer(layer_name))
    return [assemble_one(store, project, n, builder, compression) for n in selected], builder


@cli.command("test")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every image the recipes define.")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("test-reports"), show_default=True,
              help="Where the JSON and JUnit reports and the generated structure-test "
                   "configs are written.")
@click.option("--no-runtime", is_flag=True, help="Skip the containerd smoke runs.")
@click.option("--check-set", "only", multiple=True, metavar="NAME",
              help="Run only these check sets of the recipes (repeatable), e.g. the "
                   "feature sets on a variant whose baseline was checked already.")
@with_option
@click.option("--containerd", "containerd_address", type=click.Path(path_type=Path),
              help="Socket of a running containerd (default: start a private one).")
@output_options
@pass_ctx
def test_images(ctx: Ctx, names: tuple[str, ...], all_: bool, report_dir: Path,
                no_runtime: bool, only: tuple[str, ...], with_: str | None,
                containerd_address: Path | None) -> None:
    """Check images: structure tests, native checks, runtime and GPU smoke. Exit 9 on
    any failure."""
    from .checks import report as rpt
    from .checks.runner import CheckRun

    project = ctx.project()
    selected = _select(project, names, all_, with_)
    store = ctx.store()
    report_dir.mkdir(parents=True, exist_ok=True)
    results: list[Any] = []
    with ctx.reporter() as rep:
        with store.writer_lock():
            _build(ctx, store, project, selected, None, rep)
        run = CheckRun(store, project, report_dir, runtime=not no_runtime,
                       containerd_address=containerd_address, only=list(only) or None,
                       progress=lambda msg: rep.console.log(msg) if not (ctx.json or ctx.quiet)
                       else None)
        try:
            for name in selected:
                results += run.image(name)
        finally:
            run.close()
    rpt.write_json(results, report_dir / "report.json")
    rpt.write_junit(results, report_dir / "junit.xml")
    (report_dir / "report.md").write_text(rpt.markdown(results))
    counts = rpt.summary(results)
    human = [f"{r.status.upper():<8} {r.image:<26} {r.kind:<9} {r.name}"
             + (f": {r.message}" if r.status != rpt.PASSED and r.message else "")
             for r in results]
    human.append(f"{counts['passed']} passed, {counts['failed']} failed, "
                 f"{counts['skipped']} skipped; reports in {report_dir}")
    ctx.emit({"summary": counts, "results": [r.to_json() for r in results],
              "report_dir": str(report_dir)}, "\n".join(human))
    if counts["failed"]:
        sys.exit(9)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


@cli.group()
def layers() -> None:
    """Cached layers."""


@layers.command("ls")
@output_options
@pass_ctx
def layers_ls(ctx: Ctx) -> None:
    """List cached layer records: name, diff_id, size, source, blobs."""
    store = ctx.store()
    recs = sorted(store.iter_records(), key=lambda r: (r.name, r.built_at))
    data = [{"name": r.name, "input_key": r.input_key, "diff_id": r.diff_id,
             "size": r.size, "files": r.files, "source": r.source_kind,
             "blobs": {c: b.to_json() for c, b in r.blobs.items()},
             "provenance": r.provenance} for r in recs]
    lines = [f"{r['name']:<28} {r['diff_id'][:19]}  {_size(r['size']):>9}  {r['files']:>7} "
             f"files  {r['source']:<8} {','.join(sorted(r['blobs']))}" for r in data]
    ctx.emit(data, "\n".join(lines) if lines else "no cached layers")


@layers.command("build")
@click.argument("names", nargs=-1, required=True)
@click.option("--compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip",
              show_default=True)
@output_options
@pass_ctx
def layers_build(ctx: Ctx, names: tuple[str, ...], compression: str) -> None:
    """Build layers into the store without assembling an image (e.g. to warm a CI
    cache with the networked ones)."""
    project = ctx.project()
    defs = {n: project.layer(n) for n in names}
    store = ctx.store()
    with ctx.reporter() as rep, store.writer_lock():
        builder = _layer_builder(ctx, store, project, rep)
        for n, d in defs.items():
            builder.key(n, d)
        records = [builder.ensure(n, d, compression) for n, d in defs.items()]
    data = [{"name": r.name, "diff_id": r.diff_id, "size": r.size,
             "built": r.name in builder.stats.built} for r in records]
    ctx.emit(data, "\n".join(f"{d['name']:<28} {d['diff_id'][:19]}  {_size(d['size']):>9}  "
                             f"{'built' if d['built'] else 'cached'}" for d in data))


@cli.group()
def images() -> None:
    """Images defined by recipes and assembled in the store."""


@images.command("ls")
@output_options
@pass_ctx
def images_ls(ctx: Ctx) -> None:
    """List images the recipes define, with their layers and store digest if assembled."""
    project = ctx.project()
    tags = ctx.store().tags()
    data = []
    for name, image in project.images.items():
        entry = tags.get(name)
        data.append({"name": name, "layers": image.layers, "features": image.features,
                     "aliases": image.aliases,
                     "assembled": entry["digest"] if entry else None})
    lines = [f"{d['name']:<32} {(d['assembled'] or '-')[:19]:<19}  {' + '.join(d['layers'])}"
             for d in data]
    ctx.emit(data, "\n".join(lines))


@cli.command()
@click.argument("name")
@click.option("--raw", type=click.Choice(["manifest", "config"]), help="Print the raw JSON.")
@output_options
@pass_ctx
def inspect(ctx: Ctx, name: str, raw: str | None) -> None:
    """Show an assembled image: digest, config, layers and their provenance."""
    img = ctx.store().image(name)
    config = img.config
    if raw:
        click.echo(json.dumps(img.manifest if raw == "manifest" else config, indent=2))
        return
    layers_out = [{"name": layer.name, "digest": layer.descriptor.digest,
                   "size": layer.descriptor.size, "mediaType": layer.descriptor.media_type,
                   "diff_id": layer.diff_id,
                   "provenance": layer.record.provenance if layer.record else None}
                  for layer in img.layers]
    data = {"name": name, "reference": img.reference, "manifest_digest": img.descriptor.digest,
            "config_digest": img.config_descriptor.digest, "created": config.get("created"),
            "platform": img.platform, "config": config.get("config", {}),
            "layers": layers_out, "size": img.size}
    lines = [f"{name}  {img.reference}", f"manifest  {img.descriptor.digest}",
             f"config    {data['config_digest']}", f"platform  {data['platform']}",
             f"created   {data['created']}", f"size      {_size(data['size'])}"]
    for k, v in data["config"].items():
        lines.append(f"{k:<10}{json.dumps(v)}")
    for layer in layers_out:
        lines.append(f"  {layer['name'] or '?':<26} {layer['digest'][:19]}  "
                     f"{_size(layer['size']):>9}")
    ctx.emit(data, "\n".join(lines))


@cli.command()
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("docs/images.md"), show_default=True)
@output_options
@pass_ctx
def catalog(ctx: Ctx, output: Path) -> None:
    """Write the image catalog (images, layers, digests, sizes) as Markdown."""
    from .catalog import collect, render

    project = ctx.project()
    rows, missing = collect(ctx.store(), project)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(rows, missing, project))
    ctx.emit({"path": str(output), "images": [r.name for r in rows], "missing": missing},
             f"wrote {output}: {len(rows)} images" +
             (f" ({len(missing)} not assembled)" if missing else ""))


@cli.command()
@click.argument("layer_names", nargs=-1)
@output_options
@pass_ctx
def lock(ctx: Ctx, layer_names: tuple[str, ...]) -> None:
    """Re-resolve the lock files of `pip` and `maven` layers (all unless named)."""
    from .sources.maven import MavenSource
    from .sources.pip import PipSource

    project = ctx.project()
    build_ctx = _build_context(ctx, ctx.store(), project)
    names = list(layer_names) or list(project.layers)
    done = []
    for name in names:
        for src in project.layer(name).all_sources():
            if isinstance(src, PipSource | MavenSource):
                text = src.resolve(build_ctx)
                pins = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
                done.append({"layer": name, "lock": src.lock, "packages": len(pins)})
    ctx.emit(done, "\n".join(f"{d['layer']}: {d['lock']} ({d['packages']} packages)"
                             for d in done) or "no pip layers")


@cli.group("store")
def store_group() -> None:
    """Store maintenance."""


@store_group.command("path")
@output_options
@pass_ctx
def store_path(ctx: Ctx) -> None:
    """Print the store's location."""
    store = ctx.store()
    ctx.emit({"path": str(store.root)}, str(store.root))


@store_group.command("fsck")
@click.option("--no-repair", is_flag=True, help="Only report; quarantine nothing.")
@output_options
@pass_ctx
def store_fsck(ctx: Ctx, no_repair: bool) -> None:
    """Re-hash every blob; quarantine corrupt ones. Exit 5 if anything was wrong."""
    from .maintenance import fsck

    report = fsck(ctx.store(), repair=not no_repair)
    lines = [f"checked {report.checked} blobs ({_size(report.bytes_checked)})"]
    lines += [f"corrupt: {c['digest']} (hashes to {c['actual']})"
              + (f" -> {c['quarantined_to']}" if "quarantined_to" in c else "")
              for c in report.corrupt]
    lines += [f"dropped layer record: {r}" for r in report.dropped_records]
    lines += [f"image with missing blobs: {t}" for t in report.dangling_tags]
    if report.stale_tmp:
        lines.append(f"removed {report.stale_tmp} stale temporary files")
    lines.append("clean" if report.clean else "NOT clean")
    ctx.emit(report.to_json(), "\n".join(lines))
    if not report.clean:
        sys.exit(5)


@store_group.command("gc")
@click.option("--prune-layers", is_flag=True,
              help="Also drop cached layers that no tagged image uses.")
@click.option("--dry-run", is_flag=True, help="Report what would be removed.")
@output_options
@pass_ctx
def store_gc(ctx: Ctx, prune_layers: bool, dry_run: bool) -> None:
    """Remove blobs that no image and no cached layer references."""
    from .maintenance import gc

    report = gc(ctx.store(), prune_layers=prune_layers, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    ctx.emit(report.to_json(),
             f"{verb} {report.removed_blobs} blobs ({_size(report.freed_bytes)}), "
             f"{report.removed_records} layer records, {report.removed_tmp} temporary files; "
             f"kept {report.kept_blobs} blobs")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("ociforge: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("ociforge: interrupted", err=True)
        sys.exit(130)
    except OciforgeError as e:
        _fail(_json_ctx(), e)
    except Exception as e:
        if os.environ.get("OCIFORGE_DEBUG"):
            raise
        err = OciforgeError(f"internal error: {type(e).__name__}: {e} "
                            "(set OCIFORGE_DEBUG=1 for the traceback)")
        _fail(_json_ctx(), err)


def _json_ctx() -> Ctx | None:
    if "--json" in sys.argv[1:]:
        return Ctx(None, Path("."), True, False, None)
    return None


from .cli_registry import register as _register_registry  # noqa: E402

_register_registry(cli)
from .cli_sbom import register as _register_sbom  # noqa: E402, I001
_register_sbom(cli)


if __name__ == "__main__":
    main()
