"""`ociforge push` and `ociforge pull`: the registry commands.

Kept apart from cli.py and attached with `register(cli)`. They reach the group's
context object through `click.pass_obj` rather than importing cli.py, which may be
running as `__main__` (so a second import would be a different module).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import click

from .cli_common import App, human_size, output_options
from .errors import OciforgeError

# From this many platform manifests in one push, their SBOMs are made in worker
# processes (docs/registry.md); fewer are made here, as starting workers costs more.
SBOM_WORKERS_FROM = 8
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)i?[bB]?\s*$")


def parse_size(_ctx: click.Context | None, _param: click.Parameter | None,
               value: str | None) -> int | None:
    """`16M`, `512k`, `1G`, or plain bytes (None stays None: the command's default)."""
    if value is None:
        return None
    m = _SIZE_RE.match(str(value))
    if not m:
        raise click.BadParameter(f"{value!r} is not a size (for example 16M)")
    n = int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]
    if n < 1 << 16:
        raise click.BadParameter("at least 64k")
    return n


def _as_tag(name: str) -> str:
    """A store name as a tag: `spark-4.1.1` stays, `library/busybox:1.36` (a pulled
    image) becomes `library-busybox-1.36`."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip(".-")[:128]


def _connection_options(f: Any) -> Any:
    f = click.option("--retries", type=click.IntRange(0, 20), default=5, show_default=True,
                     help="Retries per request on resets, 408, 429 and 5xx.")(f)
    f = click.option("--ca-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="CA bundle to verify the registry's TLS certificate with.")(f)
    f = click.option("--insecure", is_flag=True,
                     help="Allow plain HTTP and unverified TLS to a non-loopback registry.")(f)
    f = click.option("-j", "--jobs", type=click.IntRange(1, 64), default=4, show_default=True,
                     help="Blobs transferred in parallel.")(f)
    return f


class _Clients:
    """One client per registry, so tokens and connections are shared by all images."""

    def __init__(self, insecure: bool, ca_file: Path | None, retries: int, jobs: int) -> None:
        from .net.retry import RetryPolicy

        self._policy = RetryPolicy(attempts=retries + 1)
        self._opts = (insecure, str(ca_file) if ca_file else None, jobs)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, ref: Any) -> Any:
        from .registry.client import RegistryClient

        insecure, ca_file, jobs = self._opts
        with self._lock:
            if ref.registry not in self._clients:
                self._clients[ref.registry] = RegistryClient(
                    ref.registry, ref.api_host, insecure=insecure, ca_file=ca_file,
                    policy=self._policy, pool_size=max(jobs, 2))
            return self._clients[ref.registry]


@click.command()
@click.argument("names", nargs=-1)
@click.option("--to", "dest", required=True, metavar="REGISTRY/REPO[:TAG]",
              help="Where to push. TAG defaults to the image's name.")
@click.option("--all", "all_", is_flag=True, help="Every image tagged in the store.")
@click.option("-t", "--tag", "extra_tags", multiple=True,
              help="Another tag for the image (repeatable; one image only).")
@click.option("--chunk-size", default=None, callback=parse_size,
              help="Blobs larger than this go in resumable chunks of this size (default: "
                   "one streamed request per blob, 64 MiB chunks after a dropped one).")
@click.option("--no-sbom", is_flag=True,
              help="Do not attach the image's SPDX SBOM (attached by default).")
@click.option("--file-digests", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="`ociforge plan --json` output: its checkout file digests spare the "
                   "re-hash of files git finds unchanged (with --cache).")
@click.option("--plan", "plan_file", type=click.Path(exists=True, dir_okay=False,
                                                     path_type=Path),
              help="`ociforge plan --json` output: stitch the images (NAME… or --all of "
                   "the plan) from its layer keys and config inputs, without loading the "
                   "recipes; refused (exit 2) if made by another ociforge or for another project.")
@_connection_options
@output_options
@click.pass_obj
def push(app: App, names: tuple[str, ...], dest: str, all_: bool, extra_tags: tuple[str, ...],
         chunk_size: int | None, no_sbom: bool, file_digests: Path | None,
         plan_file: Path | None, jobs: int, insecure: bool, ca_file: Path | None,
         retries: int) -> None:
    """Push images from the store to an OCI registry.

    Blobs the repository has are skipped, blobs another repository of the registry has
    are mounted, the rest are uploaded (large ones in chunks that resume after a drop).
    Each image's SPDX SBOM is attached as an OCI 1.1 artifact whose subject is the
    image (referrers API, or the `sha256-<digest>` tag where the registry has none).
    A multi-platform image goes whole: every platform's blobs (shared ones once),
    manifests, then its index as the tag; one SBOM per platform manifest.
    With a layer cache (`--cache`), images the store lacks (all of the project's with
    --all) are assembled from cached layers first: nothing is built or downloaded when
    the cache holds every layer, and layers are mounted from the cache repository.
    Credentials: $REGISTRY_AUTH_FILE, then $DOCKER_CONFIG/config.json (auths,
    credHelpers, credsStore). Exit codes: 2 a --plan of another ociforge or checkout, 6
    registry or network failure, 8 auth.
    """
    app.warm_cache()
    from .errors import ImageNotInStoreError
    from .oci import Descriptor
    from .registry import reference
    from .registry.push import Pusher, PushRequest

    store = app.store()
    tags = store.tags()
    selected = sorted(tags) if all_ else list(names)
    if plan_file is not None:
        selected = _stitch_plan(app, plan_file, names, all_)
        tags = store.tags()
    elif app.cache_repo and (all_ or any(n not in tags for n in names)):
        if file_digests is not None:
            app.file_digests = _file_digests(file_digests)
        selected = _stitch(app, names, all_)
        store = app.store()
        tags = store.tags()
    if not selected:
        raise click.UsageError("name at least one image, or use --all")
    missing = [n for n in selected if n not in tags]
    if missing:
        raise ImageNotInStoreError(missing[0], tags)
    target = reference.parse(dest)
    if target.digest:
        raise click.UsageError("--to takes a tag, not a digest")
    if len(selected) > 1 and (target.tag or extra_tags):
        raise click.UsageError("with several images, --to takes REGISTRY/REPO only (each "
                               "image is tagged with its own name) and --tag is not allowed")
    requests = []
    for name in selected:
        first = target.tag or _as_tag(name)
        if not reference.is_valid_tag(first):
            raise click.UsageError(f"image name {name!r} does not make a valid tag; give "
                                   "one with --to REGISTRY/REPO:TAG")
        for t in extra_tags:
            if not reference.is_valid_tag(t):
                raise click.UsageError(f"invalid tag {t!r}")
        requests.append(PushRequest(name, Descriptor.from_json(tags[name]), target,
                                    list(dict.fromkeys([first, *extra_tags]))))
    clients = _Clients(insecure, ca_file, retries, jobs)
    documents, workers = None, 1
    if not no_sbom:
        from .sbom.doccache import Documents

        # Worker processes for the SBOMs only where there are many to make (a matrix
        # publish); starting them costs more than one or two documents take.
        manifests = sum(_manifest_count(store, tags[n]) for n in selected)
        workers = min(os.cpu_count() or 1, 4) if manifests >= SBOM_WORKERS_FROM else 1
        documents = Documents(store, "spdx", workers)
    try:
        with app.reporter() as rep:
            pusher = Pusher(store, clients, jobs=jobs, chunk_size=chunk_size,
                            progress=lambda what, done, total: rep.update(what, done, total),
                            artifact_for=None if documents is None
                            else _sbom_artifact(documents), artifact_jobs=workers)
            report = pusher.push(requests)
    finally:
        if documents is not None:
            documents.close()
    data = report.to_json()
    lines = [f"{i['name']:<28} -> {i['repository']}:{','.join(i['tags'])}  "
             f"{i['digest'][:19]}  {i['manifest']}" for i in data["images"]]
    lines += [f"{a['name']:<28} sbom " + (f"{a['platform']} " if "platform" in a else "")
              + (f"not attached: {a['skipped']}" if "skipped" in a
              else f"{a['digest'][:19]}  {a['state']} ("
                   + (f"tag {a['tag']})" if a["tag"] else "referrers API)"))
              for a in data["attached"]]
    b = data["blobs"]
    rate = report.bytes_sent / report.seconds if report.seconds > 0 else 0
    lines.append(f"blobs: {b['pushed']} pushed, {b['present']} skipped as present, "
                 f"{b['mounted']} mounted; {human_size(report.bytes_sent)} sent in "
                 f"{report.seconds:.1f} s ({human_size(rate)}/s)"
                 + (f"; {report.retries} retries" if report.retries else ""))
    app.emit(data, "\n".join(lines))


def _stitch(app: App, names: tuple[str, ...], all_: bool) -> list[str]:
    """With a layer cache: assemble the project's images NAME… (or all of them) from
    cached layer records, the manifests only; a layer's bytes stay in the cache
    repository and are mounted from it by the push."""
    with app.reporter() as rep:
        session = app.session(rep)
        tags = session.store.tags()
        selected = session.select([n for n in names if n not in tags], all_)
        with session.store.writer_lock():
            session.assemble(selected)
    if session.stats.built:
        app.warn(f"the layer cache lacked {len(session.stats.built)} layers; built here: "
                 + ", ".join(session.stats.built))
    return [*(n for n in names if n in tags), *selected]


def _stitch_plan(app: App, path: Path, names: tuple[str, ...], all_: bool) -> list[str]:
    """Stitch NAME… (or every image of the plan) from the plan's stitch inputs and
    the layer records of this store or the layer cache; no recipe is loaded."""
    from .publishplan import load, stitch

    table = load(path, app.project_root)
    selected = sorted(table) if all_ else list(names)
    store = app.store()
    cache = None
    if app.cache_repo:
        from .registry.layercache import open_cache

        cache = open_cache(app.cache_repo, app.cache_mode, store, app.warn, **app.cache_tls)
    with store.writer_lock():
        stitch(store, cache, table, selected)
    if cache is not None:
        cache.locations.save()
    return selected


def _file_digests(path: Path) -> dict[str, str]:
    """The `file_digests` table of a plan's JSON."""
    import json

    try:
        table = json.loads(path.read_bytes()).get("file_digests")
    except (OSError, ValueError, AttributeError) as e:
        raise click.BadParameter(f"{path}: not the JSON of `ociforge plan --json` ({e})",
                                 param_hint="--file-digests") from None
    if not isinstance(table, dict):
        raise click.BadParameter(f"{path}: has no file_digests table (written by "
                                 "`ociforge plan --json`)", param_hint="--file-digests")
    return table


def _manifest_count(store: Any, entry: dict[str, Any]) -> int:
    """How many platform manifests (so SBOMs) a tagged image has, without checking
    them: the push does that."""
    media_type = str(entry.get("mediaType", ""))
    if "index" not in media_type and "manifest.list" not in media_type:
        return 1
    try:
        return len(store.read_json(entry["digest"]).get("manifests", [])) or 1
    except (OciforgeError, OSError, ValueError, AttributeError):
        return 1


def _sbom_artifact(documents: Any) -> Any:
    """The SPDX document of each pushed image, or why there is none."""
    from .registry.referrers import Artifact
    from .sbom import spdx

    def artifact(req: Any) -> Artifact | str:
        try:
            # Kept in the store by its inputs: a re-push reads it back, makes nothing.
            doc = documents.document(req.name, req.platform)
        except OciforgeError as e:
            return str(e)
        if not doc.described:
            return "no layer of it was built by ociforge (no provenance to describe)"
        suffix = f"-{req.platform.replace('/', '-')}" if req.platform else ""
        return Artifact(spdx.MEDIA_TYPE, spdx.MEDIA_TYPE, doc.data,
                        f"{_as_tag(req.name)}{suffix}.spdx.json",
                        (("org.opencontainers.image.created", doc.created),))

    return artifact


@click.command()
@click.argument("ref")
@click.option("--name", help="Name in the store (default: REPO:TAG of the reference).")
@click.option("--platform", metavar="OS/ARCH",
              help="Which image of a multi-platform index to pull (default: this "
                   "machine's, e.g. linux/amd64).")
@_connection_options
@output_options
@click.pass_obj
def pull(app: App, ref: str, name: str | None, platform: str | None, jobs: int, insecure: bool,
         ca_file: Path | None, retries: int) -> None:
    """Pull an image from a registry into the store, verifying every digest."""
    with app.reporter() as rep:
        report = pull_into(app.store(), ref, name, platform, insecure=insecure,
                           ca_file=ca_file, retries=retries, jobs=jobs,
                           progress=lambda what, done, total: rep.update(what, done, total))
    name = report.name
    app.emit(report.to_json(),
             f"{name}  {report.digest[:19]}  {report.fetched} blobs fetched "
             f"({human_size(report.bytes_fetched)}), {report.present} present; "
             f"{report.seconds:.1f} s")


def pull_into(store: Any, ref: str, name: str | None = None, platform: str | None = None,
              *, insecure: bool = False, ca_file: Path | None = None, retries: int = 5,
              jobs: int = 4, progress: Any = None) -> Any:
    """Pull `ref` into the store as `name` (default: REPO:TAG, or REPO@DIGEST); blobs
    the store has are not fetched again; of an index, the image of `platform` (the
    host's by default). Returns the PullReport."""
    from .registry import reference
    from .registry.pull import Puller

    parsed = reference.parse(ref)
    if name is None:
        name = f"{parsed.repository}:{parsed.tag}" if parsed.tag else parsed.repository
        if parsed.digest and not parsed.tag:
            name = f"{parsed.repository}@{parsed.digest}"
    client = _Clients(insecure, ca_file, retries, jobs)(parsed)
    return Puller(store, client, jobs=jobs, progress=progress).pull(parsed, name, platform)


def register(group: click.Group) -> None:
    group.add_command(push)
    group.add_command(pull)
