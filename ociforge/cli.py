"""The `ociforge` command line.

Exit codes: 0 success; 1 other failure; 2 usage; 3 invalid recipe; 4 integrity
(digest mismatch, unsafe archive); 5 store corruption; 6 network; 7 build failure;
8 registry authentication; 9 checks failed (`ociforge test`); 10 something is outdated
(`ociforge outdated`); 130 interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from .cli_common import App, fail, human_size, output_options, pass_app
from .errors import OciforgeError
from .platforms import DEFAULT_PLATFORM, PLATFORMS

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
@click.option("--cache", "cache_repo", envvar="OCIFORGE_CACHE_REPO", metavar="REGISTRY/REPO",
              help="Share layers through this registry repository: look a layer up "
                   "there before building it, push it there after ($OCIFORGE_CACHE_REPO; "
                   "docs/ci.md).")
@click.option("--cache-mode", type=click.Choice(["read", "readwrite"]),
              envvar="OCIFORGE_CACHE_MODE", default="readwrite", show_default=True,
              help="`read`: use the layer cache, never write to it (untrusted branches; "
                   "$OCIFORGE_CACHE_MODE).")
@click.option("--cache-ca-file", envvar="OCIFORGE_CACHE_CA_FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CA bundle to verify the cache registry's TLS certificate with "
                   "($OCIFORGE_CACHE_CA_FILE).")
@click.option("--cache-insecure", is_flag=True, envvar="OCIFORGE_CACHE_INSECURE",
              help="Allow plain HTTP and unverified TLS to a non-loopback cache registry "
                   "($OCIFORGE_CACHE_INSECURE).")
@click.version_option(package_name="ociforge")
@click.pass_context
def cli(click_ctx: click.Context, store: Path | None, project: Path, as_json: bool,
        quiet: bool, index_url: str | None, maven_repos: tuple[str, ...],
        cache_repo: str | None, cache_mode: str, cache_ca_file: Path | None,
        cache_insecure: bool) -> None:
    """Daemonless, reproducible OCI image assembly."""
    click_ctx.obj = App(store, project, as_json, quiet, index_url, tuple(maven_repos),
                        cache_repo or None, cache_mode, cache_insecure, cache_ca_file)


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
@click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH",
              help="Build for these platforms (linux/amd64, linux/arm64; repeatable or a "
                   "comma list). Default: the image's `platforms`, kept to "
                   "$OCIFORGE_PLATFORMS when set.")
@with_option
@output_options
@pass_app
def assemble(app: App, names: tuple[str, ...], all_: bool, archive: Path | None,
             oci_layout: Path | None, compression: str | None, swaps: tuple[str, ...],
             platforms: tuple[str, ...], with_: str | None) -> None:
    """Assemble images: build missing layers, write manifests, tag them in the store
    (one manifest per platform; several platforms are tagged as one image index)."""
    started = time.monotonic()
    with app.reporter() as rep:
        session = app.session(rep, swaps=swaps, with_=with_, platforms=platforms)
        selected = _select(session, names, all_)
        with session.store.writer_lock():
            results = session.assemble(selected, compression)
            outputs = session.export(
                selected, archive=archive, oci_layout=oci_layout,
                progress=lambda what, n, total: rep.advance(what, n, total)) \
                if archive or oci_layout else {}
    stats = session.stats
    report = {
        "images": [r.to_json() for r in results],
        "layers": {"built": stats.built, "reused": stats.reused,
                   "transcoded": stats.transcoded, "remote": stats.remote},
        "outputs": outputs,
        "seconds": round(time.monotonic() - started, 3),
    }
    lines = [f"{r.name:<32} {r.manifest.digest[:19]}  {human_size(r.to_json()['size']):>9}  "
             f"{r.reference}" + (f"  {r.platform}" if r.platform != DEFAULT_PLATFORM else "")
             for r in results]
    lines.append(f"layers: {len(stats.built)} built, {len(stats.reused)} cached, "
                 + (f"{len(stats.remote)} from the layer cache, " if stats.remote else "")
                 + f"{len(stats.transcoded)} recompressed; {report['seconds']} s")
    for key, out in outputs.items():
        lines.append(f"{key}: {out['path']}" + (f" ({human_size(out['size'])})"
                                                if "size" in out else ""))
    app.emit(report, "\n".join(lines))


def _select(session: Any, names: tuple[str, ...], all_: bool) -> list[str]:
    if not names and not all_:
        raise click.UsageError("name at least one image, or use --all")
    return list(session.select(names, all_))


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
@click.option("--platform", type=click.Choice(PLATFORMS), metavar="OS/ARCH",
              help="Check the image of this platform (default: the host's); another "
                   "platform's runtime checks run under emulation (binfmt_misc), its GPU "
                   "checks are skipped.")
@output_options
@pass_app
def test_images(app: App, names: tuple[str, ...], all_: bool, report_dir: Path,
                no_runtime: bool, only: tuple[str, ...], with_: str | None,
                containerd_address: Path | None, platform: str | None) -> None:
    """Check images: structure tests, native checks, runtime and GPU smoke. Exit 9 on
    any failure; exit 3, nothing run, for an image not built for --platform."""
    from .checks import report as rpt
    from .checks.runner import CheckRun
    from .image import host_platform

    report_dir.mkdir(parents=True, exist_ok=True)
    results: list[Any] = []
    with app.reporter() as rep:
        session = app.session(rep, with_=with_)
        selected = _select(session, names, all_)
        with session.store.writer_lock():
            # One platform (the host's unless asked); the tag keeps the other ones.
            session.assemble(selected, platforms=[platform or host_platform()],
                             keep_tagged=True)
        run = CheckRun(session.store, session.project, report_dir, runtime=not no_runtime,
                       containerd_address=containerd_address, only=list(only) or None,
                       progress=lambda msg: rep.console.log(msg) if not (app.json or app.quiet)
                       else None, platform=platform)
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
    app.emit({"summary": counts, "results": [r.to_json() for r in results],
              "report_dir": str(report_dir)}, "\n".join(human))
    if counts["failed"]:
        sys.exit(9)


@cli.group()
def layers() -> None:
    """Cached layers."""


@layers.command("ls")
@output_options
@pass_app
def layers_ls(app: App) -> None:
    """List cached layer records: name, diff_id, size, source, blobs."""
    store = app.store()
    recs = sorted(store.iter_records(), key=lambda r: (r.name, r.built_at))
    data: list[dict[str, Any]] = [{"name": r.name, "input_key": r.input_key, "diff_id": r.diff_id,
             "size": r.size, "files": r.files, "source": r.source_kind,
             "blobs": {c: b.to_json() for c, b in r.blobs.items()},
             "provenance": r.provenance} for r in recs]
    lines = [f"{r['name']:<28} {r['diff_id'][:19]}  {human_size(r['size']):>9}  {r['files']:>7} "
             f"files  {r['source']:<8} {','.join(sorted(r['blobs']))}" for r in data]
    app.emit(data, "\n".join(lines) if lines else "no cached layers")


@layers.command("build")
@click.argument("names", nargs=-1, required=True)
@click.option("--compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip",
              show_default=True)
@click.option("--platform", default=DEFAULT_PLATFORM, show_default=True,
              type=click.Choice(list(PLATFORMS)),
              help="The platform of layers whose bytes depend on it (Debian, wheels, "
                   "Maven `classifiers`); `NAME@OS/ARCH` builds one layer for another.")
@output_options
@pass_app
def layers_build(app: App, names: tuple[str, ...], compression: str, platform: str) -> None:
    """Build layers into the store without assembling an image (e.g. to warm a CI
    cache with the networked ones). NAME@linux/arm64 builds NAME for that platform:
    the form `ociforge plan` writes its jobs in."""
    from .plan import parse_token

    wanted = [parse_token(n, platform) for n in dict.fromkeys(names)]
    for _, p in wanted:
        if p not in PLATFORMS:
            raise click.BadParameter(f"{p!r} is not one of {', '.join(PLATFORMS)}",
                                     param_hint="NAMES")
    by_platform: dict[str, list[str]] = {}
    for n, p in wanted:
        by_platform.setdefault(p, []).append(n)
    data: list[dict[str, Any]] = []
    with app.reporter() as rep:
        session = app.session(rep)
        for n, _ in wanted:
            session.project.layer(n)  # unknown names fail before any work
        for p, ns in by_platform.items():  # every lock of every platform, before any build
            session.keys(ns, p)
        stats = session.stats
        with session.store.writer_lock():
            for p, ns in by_platform.items():
                done, fetched = len(stats.built), len(stats.remote)
                records = session.build_layers(ns, compression, p)
                # Per layer asked for, by its own name: two layers with the same inputs
                # (releases carrying one add-on jar) share one record, named after the
                # first one built.
                data += [{"name": n, "platform": p, "key": r.input_key, "diff_id": r.diff_id,
                          "size": r.size, "built": n in stats.built[done:],
                          "remote": n in stats.remote[fetched:],
                          **({"same_as": r.name} if r.name != n else {})}
                         for n, r in zip(ns, records, strict=True)]
    app.emit(data, "\n".join(
        f"{d['name'] + ('' if d['platform'] == platform else '@' + d['platform']):<28} "
        f"{d['diff_id'][:19]}  {human_size(d['size']):>9}  "
        + ("built" if d["built"] else "layer cache" if d["remote"] else "cached")
        + (f" (same as {d['same_as']})" if "same_as" in d else "") for d in data))


@cli.group()
def images() -> None:
    """Images defined by recipes and assembled in the store."""


@images.command("ls")
@output_options
@pass_app
def images_ls(app: App) -> None:
    """List images the recipes define, with their platforms, layers and store digest
    if assembled (and the platforms the store has of it, where they differ)."""
    from .image import tag_platforms

    project = app.project()
    store = app.store()
    tags = store.tags()
    data: list[dict[str, Any]] = []
    lines = []
    for name, image in project.images.items():
        entry = tags.get(name)
        data.append({"name": name, "layers": image.layers, "features": image.features,
                     "aliases": image.aliases, "platforms": image.declared_platforms(),
                     "assembled": entry["digest"] if entry else None,
                     "assembled_platforms": tag_platforms(store, entry) if entry else None})
        d = data[-1]
        have = d["assembled_platforms"]
        platforms = ",".join(p.split("/", 1)[-1] for p in d["platforms"]) + (
            f" (store: {','.join(p.split('/', 1)[-1] for p in have) or '?'})"
            if have is not None and have != d["platforms"] else "")
        lines.append(f"{name:<32} {(d['assembled'] or '-')[:19]:<19}  {platforms:<12} "
                     f"{' + '.join(d['layers'])}")
    app.emit(data, "\n".join(lines))


@cli.command()
@click.argument("name")
@click.option("--raw", type=click.Choice(["manifest", "config", "index"]),
              help="Print the raw JSON (index: of a multi-platform image).")
@click.option("--platform", help="Of a multi-platform image, the image of this platform "
              "(e.g. linux/arm64); without it, the index and its platforms are shown.")
@output_options
@pass_app
def inspect(app: App, name: str, raw: str | None, platform: str | None) -> None:
    """Show an assembled image: digest, config, layers and their provenance."""
    from .image import StoredIndex

    store = app.store()
    (tagged,) = store.tagged([name])
    if isinstance(tagged, StoredIndex) and (raw == "index" or (raw is None and not platform)):
        if raw:
            click.echo(json.dumps(tagged.index, indent=2))
            return
        _inspect_index(app, tagged)
        return
    if raw == "index":
        raise click.UsageError(f"image {name!r} is one manifest, not an index")
    img = store.image(name, platform)
    config = img.config
    if raw:
        click.echo(json.dumps(img.manifest if raw == "manifest" else config, indent=2))
        return
    layers_out: list[dict[str, Any]] = [{"name": layer.name, "digest": layer.descriptor.digest,
                   "size": layer.descriptor.size, "mediaType": layer.descriptor.media_type,
                   "diff_id": layer.diff_id,
                   "provenance": layer.record.provenance if layer.record else None}
                  for layer in img.layers]
    data: dict[str, Any] = {
        "name": name, "reference": img.reference, "manifest_digest": img.descriptor.digest,
        "config_digest": img.config_descriptor.digest, "created": config.get("created"),
        "platform": img.platform, "config": config.get("config", {}),
        "layers": layers_out, "size": img.size}
    lines = [f"{name}  {img.reference}"]
    if isinstance(tagged, StoredIndex):
        data["index_digest"] = tagged.descriptor.digest
        lines.append(f"index     {tagged.descriptor.digest}")
    lines += [f"manifest  {img.descriptor.digest}",
              f"config    {data['config_digest']}", f"platform  {data['platform']}",
              f"created   {data['created']}", f"size      {human_size(data['size'])}"]
    for k, v in data["config"].items():
        lines.append(f"{k:<10}{json.dumps(v)}")
    for layer in layers_out:
        lines.append(f"  {layer['name'] or '?':<26} {layer['digest'][:19]}  "
                     f"{human_size(layer['size']):>9}")
    app.emit(data, "\n".join(lines))


def _inspect_index(app: App, index: Any) -> None:
    """A multi-platform image: its index, then one line per platform."""
    shared = set.intersection(*({layer.descriptor.digest for layer in img.layers}
                                for img in index.images))
    data = {"name": index.name, "reference": index.reference,
            "index_digest": index.descriptor.digest, "mediaType": index.descriptor.media_type,
            "platforms": [{"platform": img.platform, "manifest_digest": img.descriptor.digest,
                           "size": img.size, "layers": len(img.layers)}
                          for img in index.images],
            "shared_layers": len(shared), "size": index.size}
    lines = [f"{index.name}  {index.reference}", f"index     {index.descriptor.digest}",
             f"size      {human_size(index.size)} (the platforms' layers, each blob once; "
             f"{len(shared)} layers shared by all)"]
    lines += [f"  {p['platform']:<14} {p['manifest_digest'][:19]}  {human_size(p['size']):>9}"
              f"  {p['layers']} layers" for p in data["platforms"]]
    app.emit(data, "\n".join(lines))


@cli.command()
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("docs/images.md"), show_default=True)
@click.option("--since", "since_", type=click.Path(path_type=Path, exists=True),
              help="A release's image archive or OCI layout: add what changed since then "
                   "(layers, package counts, size) per image.")
@output_options
@pass_app
def catalog(app: App, output: Path, since_: Path | None) -> None:
    """Write the image catalog (images, layers, digests, sizes) as Markdown."""
    from .catalog import collect, render, since

    project = app.project()
    store = app.store()
    rows, missing = collect(store, project)
    text = render(rows, missing, project)
    if since_ is not None:
        text += "\n".join(since(store, rows, since_)) + "\n"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    app.emit({"path": str(output), "images": [r.name for r in rows], "missing": missing},
             f"wrote {output}: {len(rows)} images" +
             (f" ({len(missing)} not assembled)" if missing else ""))


@cli.command()
@click.argument("layer_names", nargs=-1)
@click.option("--check", is_flag=True,
              help="Only verify, without the network, that every lock exists and matches "
                   "the recipes (pins for every coordinate, none left over, pip locks made "
                   "from the current requirements); exit 3 naming what to re-lock.")
@click.option("--update", is_flag=True,
              help="Also re-resolve Debian locks that are current (the suites moved: "
                   "security updates); without it a Debian lock is resolved only when "
                   "missing or no longer matching its layer.")
@output_options
@pass_app
def lock(app: App, layer_names: tuple[str, ...], check: bool, update: bool) -> None:
    """Re-resolve the lock files of `pip` and `maven` layers, and write missing or
    stale Debian locks (all layers unless named; `--update`: Debian locks too)."""
    session = app.session()
    names = list(layer_names) or list(session.project.layers)
    for n in names:
        session.project.layer(n)  # unknown names fail before any work
    reports = (session.check_locks(names, unclaimed_pins=True) if check
               else session.lock(names, update=True, move=update))
    done = [{"layer": r.layer, "lock": r.lock.path, "packages": r.lock.entries,
             "changed": r.lock.changed} for r in reports]
    verb = "current" if check else "locked"
    app.emit(done, "\n".join(f"{d['layer']}: {d['lock']} ({d['packages']} packages, {verb})"
                             for d in done) or "no layers with lock files")


@cli.group("store")
def store_group() -> None:
    """Store maintenance."""


@store_group.command("path")
@output_options
@pass_app
def store_path(app: App) -> None:
    """Print the store's location."""
    store = app.store()
    app.emit({"path": str(store.root)}, str(store.root))


@store_group.command("fsck")
@click.option("--no-repair", is_flag=True, help="Only report; quarantine nothing.")
@output_options
@pass_app
def store_fsck(app: App, no_repair: bool) -> None:
    """Re-hash every blob; quarantine corrupt ones and unreadable layer records;
    rebuild a damaged index.json. Exit 5 if anything was wrong."""
    from .maintenance import fsck

    report = fsck(app.store(), repair=not no_repair)
    lines = [f"checked {report.checked} blobs ({human_size(report.bytes_checked)})"]
    if report.index:
        idx = report.index
        lines.append(f"damaged index: {idx['problem']}"
                     + (f" -> {idx['quarantined_to']}" if idx["quarantined_to"] else ""))
        verb = "recoverable" if no_repair else "recovered"
        lines += [f"{verb} tag {name} (from the {where})" if where != "untagged manifest"
                  else f"kept a manifest no tag reaches as {name} (it may have been tagged "
                       "in what was lost; `ociforge store untag` it if not)"
                  for name, where in idx["tags"].items()]
    lines += [f"corrupt: {c['digest']} "
              + (f"(hashes to {c['actual']})" if c["actual"].startswith("sha256:")
                 else f"({c['actual']})")
              + (f" -> {c['quarantined_to']}" if "quarantined_to" in c else "")
              for c in report.corrupt]
    lines += [f"unreadable: {r['problem']}"
              + (f" -> {r['quarantined_to']}" if "quarantined_to" in r else "")
              for r in report.unreadable_files]
    lines += [f"dropped layer record: {r}" for r in report.dropped_records]
    lines += [f"image with missing blobs: {t}" for t in report.dangling_tags]
    if report.stale_tmp:
        lines.append(f"removed {report.stale_tmp} stale temporary files")
    lines.append("clean" if report.clean else "NOT clean")
    app.emit(report.to_json(), "\n".join(lines))
    if not report.clean:
        sys.exit(5)


@store_group.command("gc")
@click.option("--prune-layers", is_flag=True,
              help="Also drop cached layers that no tagged image uses.")
@click.option("--dry-run", is_flag=True, help="Report what would be removed.")
@output_options
@pass_app
def store_gc(app: App, prune_layers: bool, dry_run: bool) -> None:
    """Remove blobs that no image and no cached layer references."""
    from .maintenance import gc

    report = gc(app.store(), prune_layers=prune_layers, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    app.emit(report.to_json(),
             f"{verb} {report.removed_blobs} blobs ({human_size(report.freed_bytes)}), "
             f"{report.removed_records} layer records, {report.removed_tmp} temporary files; "
             f"kept {report.kept_blobs} blobs")


@store_group.command("untag")
@click.argument("names", nargs=-1, required=True)
@output_options
@pass_app
def store_untag(app: App, names: tuple[str, ...]) -> None:
    """Remove tags from the store's index (their blobs go at the next gc)."""
    from .errors import ImageNotInStoreError

    store = app.store()
    tags = store.tags()
    for name in names:
        if name not in tags:
            raise ImageNotInStoreError(name, tags)
    for name in names:
        store.untag(name)
    app.emit({"untagged": list(names)}, "\n".join(f"untagged {n}" for n in names))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every `finally` cleans up (temporary blobs,
    staging directories, half-written outputs) before ociforge exits with 143."""


def _terminate(_signum: int, _frame: object) -> None:
    raise Terminated()


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:
        interrupted = _interruption(e)
        if interrupted is None and isinstance(e, click.Abort):
            interrupted = KeyboardInterrupt()
        if interrupted is not None:
            _stop(interrupted)
        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if os.environ.get("OCIFORGE_DEBUG") and not isinstance(e, OciforgeError):
            raise
        if isinstance(e, OSError):
            fail(_json_app(), host_error(e))
        if not isinstance(e, OciforgeError):
            e = OciforgeError(f"internal error: {type(e).__name__}: {e} "
                              "(set OCIFORGE_DEBUG=1 for the traceback)")
        fail(_json_app(), e)
    except KeyboardInterrupt as e:
        _stop(e)


def _interruption(e: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM behind `e`, if there is one: click turns it into Abort,
    and code unwinding from a write the signal cut short may raise another error
    (a BufferError, say) with the interruption as its context."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return cur
        seen.add(id(cur))
        cur = cur.__context__ or cur.__cause__
    return None


def _stop(e: KeyboardInterrupt) -> None:
    """Exit 143 for SIGTERM, 130 for Ctrl-C; cleanup already ran while unwinding."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the exit
    terminated = isinstance(e, Terminated)
    click.echo(f"ociforge: {'terminated' if terminated else 'interrupted'}", err=True)
    sys.exit(143 if terminated else 130)


def host_error(e: OSError) -> OciforgeError:
    """A file-system condition (disk full, read-only, missing directory, permission)
    as one line naming the path, exit 1: the machine's problem, not ociforge's."""
    where = e.filename if e.filename is not None else ""
    what = e.strerror or type(e).__name__
    return OciforgeError(f"{where}: {what}" if where else what)


def _json_app() -> App | None:
    if "--json" in sys.argv[1:]:
        return App(as_json=True)
    return None


from .cli_registry import register as _register_registry  # noqa: E402

_register_registry(cli)
from .cli_sbom import register as _register_sbom  # noqa: E402, I001
_register_sbom(cli)
from .cli_k8s import register as _register_k8s  # noqa: E402, I001
_register_k8s(cli)
from .cli_plan import register as _register_plan  # noqa: E402, I001
_register_plan(cli)
from .cli_updates import register as _register_updates  # noqa: E402, I001
_register_updates(cli)
from .cli_export import register as _register_export  # noqa: E402, I001
_register_export(cli)


if __name__ == "__main__":
    main()
