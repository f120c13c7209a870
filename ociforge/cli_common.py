"""What every `ociforge` command shares: `App` (the global options), `--json`, sizes,
and the one way an error reaches the user.

A module of its own so that cli.py (which may run as `__main__`, making a second
import of it a different module), cli_registry.py and cli_sbom.py all use the same
objects.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .errors import OciforgeError

if TYPE_CHECKING:
    from .progress import Reporter
    from .recipes import Project
    from .session import BuildSession
    from .store import Store


class App:
    """Global options, and the store, project and session they select."""

    def __init__(self, store: Path | None = None, project: Path = Path("."),
                 as_json: bool = False, quiet: bool = False, index_url: str | None = None,
                 maven_repos: tuple[str, ...] = (), cache_repo: str | None = None,
                 cache_mode: str = "readwrite", cache_insecure: bool = False,
                 cache_ca_file: Path | None = None) -> None:
        self.store_path = store
        self.project_root = project
        self.json = as_json
        self.quiet = quiet
        self.index_url = index_url
        self.maven_repos = maven_repos
        self.cache_repo = cache_repo
        self.cache_mode = cache_mode
        # TLS to the cache registry, as push/pull's --insecure/--ca-file to theirs.
        self.cache_tls: dict[str, Any] = {
            "insecure": cache_insecure, "ca_file": str(cache_ca_file) if cache_ca_file else None}
        self._remote: Any = None
        self.file_digests: dict[str, str] = {}  # git blob id -> sha256 (push --file-digests)

    def store(self) -> Store:
        """The store; blobs it holds only as notes of a layer cache are fetched from
        that cache when read."""
        from .store import Store, default_store_path

        store = Store(self.store_path or default_store_path())
        if self.cache_repo or store.remote_dir.is_dir():
            from functools import partial

            from .registry.layercache import CacheBlobs, client_for

            store.remote = CacheBlobs(partial(client_for, **self.cache_tls), self.warn)
        return store

    def warm_cache(self) -> None:
        """Ping the cache's registry on a thread of its own while the recipes load (a
        ping tries HTTPS first: a CA bundle read, a handshake), so that the lookups
        start at once. What goes wrong is left to the lookups to report."""
        if not self.cache_repo:
            return
        import threading

        spec, tls = self.cache_repo, self.cache_tls

        def ping() -> None:
            from .registry.layercache import client_for
            from .registry.reference import parse

            try:
                ref = parse(spec)
                client_for(ref.registry, ref.repository, **tls).ping()
            except OciforgeError:
                pass

        threading.Thread(target=ping, name="cache-ping", daemon=True).start()

    def project(self) -> Project:
        from .recipes import Project

        return Project.load(self.project_root)

    def session(self, rep: Reporter | None = None, *, swaps: tuple[str, ...] = (),
                with_: str | None = None, platforms: tuple[str, ...] = ()) -> BuildSession:
        """A build session over this store and project, with the run's options."""
        from .errors import RecipeError
        from .platforms import parse_platforms
        from .session import BuildSession, SessionOptions

        try:
            chosen = tuple(parse_platforms(platforms))
        except RecipeError as e:
            raise click.UsageError(f"--platform: {e}") from None

        pairs = []
        for swap in swaps:
            old, sep, new = swap.partition("=")
            if not sep:
                raise click.UsageError(f"--swap-layer takes OLD=NEW, got {swap!r}")
            pairs.append((old, new))
        features = tuple(f.strip() for f in (with_ or "").split(",") if f.strip())
        options = SessionOptions(index_url=self.index_url, maven_repos=self.maven_repos,
                                 swaps=tuple(pairs), features=features,
                                 platforms=chosen)
        progress = (lambda name, done, total: rep.update(f"layer {name}", done, total)) \
            if rep is not None else None
        store = self.store()
        remote = None
        if self.cache_repo:
            from .registry.layercache import open_cache

            remote = open_cache(self.cache_repo, self.cache_mode, store, self.warn,
                                **self.cache_tls)
        session = BuildSession(store, self.project(), options, progress, remote)
        session.ctx.digests.seed(self.file_digests)
        if store.remote is not None:
            store.remote.rebuild = session.rebuild_blob  # type: ignore[attr-defined]
        return session

    def warn(self, message: str) -> None:
        """A warning on stderr (also with --json: stdout stays machine-readable)."""
        click.echo(f"ociforge: warning: {message}", err=True)

    def emit(self, data: Any, human: str | None = None) -> None:
        if self.json:
            click.echo(json.dumps(data, indent=2, sort_keys=True))
        elif human is not None and not self.quiet:
            click.echo(human)

    def reporter(self) -> Reporter:
        from .progress import Reporter

        return Reporter(enabled=None if not (self.json or self.quiet) else False)


pass_app = click.make_pass_decorator(App)


def _set_json(click_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        click_ctx.ensure_object(App).json = True


def output_options(f: Any) -> Any:
    """`--json` accepted after the subcommand too (`ociforge assemble X --json`)."""
    return click.option("--json", "_json", is_flag=True, expose_value=False,
                        callback=_set_json, is_eager=False,
                        help="Machine-readable output on stdout.")(f)


def human_size(n: float) -> str:
    """`1.2 MB`: decimal units, as registries and `docker images` show sizes."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def fail(app: App | None, err: OciforgeError) -> NoReturn:
    """One line on stderr (and a JSON object with `--json`), the error's exit code."""
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    if app is not None and app.json:
        click.echo(json.dumps({"error": msg, "exit_code": err.exit_code}))
    click.echo(f"ociforge: error: {msg}", err=True)
    sys.exit(err.exit_code)
