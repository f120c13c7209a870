"""The build session: one run of ociforge, from image names to stored images and outputs.

    resolve names → check locks → compute keys → ensure layers → assemble → export

The CLI parses arguments and calls a session; everything a run decides (swapped
layers, `--with` features, the index and Maven repositories, SOURCE_DATE_EPOCH)
lives here once and applies to every image the run touches, base images of
`builder` layers included. Sources never call back into the session: a `builder`
source reaches its base images through the context's image port (`_Images`), and
the session assembles those images before it computes any key that names them, so
`key_material` stays a pure function of the recipe, the checkout and the locks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .assemble import AssembledImage, tag_platforms, tagged_others, write_image
from .digestcache import DigestCache
from .errors import LockError, RecipeError
from .layers import BuildStats, LayerBuilder, Progress, RemoteCache, input_key
from .platforms import DEFAULT_PLATFORM, PLATFORMS_ENV, ordered, selected
from .recipes import ImageDef, LayerDef, Project
from .records import LayerRecord
from .sources.base import DEFAULT_INDEX_URL, BuildContext, LockResult
from .sources.maven import MavenSource, prune, unclaimed
from .store import Store
from .tartree import source_date_epoch

ByteProgress = Callable[[str, int, int | None], None]  # (output, bytes, total)


@dataclass(frozen=True)
class SessionOptions:
    """What a run decides once, for every image it touches."""

    index_url: str | None = None          # --index-url: `pypi`/`pip` sources
    maven_repos: tuple[str, ...] = ()      # --maven-repo: `maven` sources without a list
    swaps: tuple[tuple[str, str], ...] = ()  # --swap-layer OLD=NEW
    features: tuple[str, ...] = ()         # --with
    sde: int | None = None                 # SOURCE_DATE_EPOCH (default: the environment's)
    platforms: tuple[str, ...] = ()        # --platform (default: each image's, see platforms.py)


@dataclass(frozen=True)
class LockReport:
    layer: str
    lock: LockResult


class BuildSession:
    """Owns one run's project view, build context, keys and layer builder."""

    def __init__(self, store: Store, project: Project,
                 options: SessionOptions | None = None,
                 progress: Progress | None = None, remote: RemoteCache | None = None
                 ) -> None:
        store.read_index()  # a damaged index stops the run before any layer is built
        self.store = store
        self.project = project
        self.options = options or SessionOptions()
        for old, new in self.options.swaps:
            project.swap_layer(old, new)
        self.ctx = BuildContext(
            project_root=project.root,
            sde=self.options.sde if self.options.sde is not None else source_date_epoch(),
            scratch_root=store.tmp_dir,
            digests=DigestCache(store.meta_dir / "file-digests.json", project.root),
            index_url=self.options.index_url or DEFAULT_INDEX_URL,
            maven_repos=self.options.maven_repos,
            images=_Images(self))
        self.builder = LayerBuilder(store, self.ctx, progress, remote)
        self._locked: set[tuple[str, str]] = set()  # (layer, platform)
        # (layer, platform its bytes depend on, '' when none) → input key
        self._keys: dict[tuple[str, str], str] = {}
        self._bases: dict[str, tuple[str, str]] = {}  # base → (tagged name, digest)
        self._chain: tuple[str, ...] = ()     # base images being prepared (cycle check)

    @property
    def stats(self) -> BuildStats:
        return self.builder.stats

    # -- names ------------------------------------------------------------------------

    def select(self, names: Iterable[str], all_: bool = False) -> list[str]:
        """Image names from arguments: aliases resolved, the run's features added;
        an unknown name fails here, before any work."""
        project = self.project
        selected = list(project.images) if all_ else [project.resolve(n).name for n in names]
        if self.options.features:
            selected = [self._with_features(n) for n in selected]
        return list(dict.fromkeys(selected))

    def _with_features(self, name: str) -> str:
        return self.project.with_features(name, list(self.options.features)).name

    def layers_of(self, images: Iterable[str]) -> list[str]:
        """The layers of these images, each once, in order of first use."""
        return list(dict.fromkeys(ln for n in images for ln in self.project.resolve(n).layers))

    # -- locks and keys -----------------------------------------------------------------

    def lock(self, layers: Iterable[str], update: bool = False, move: bool = False
             ) -> list[LockReport]:
        """`ociforge lock`: resolve the lock files of these layers (all of their pins
        again with `update`; the pins of `moving` sources, a Debian lock, only with
        `move`: `lock --update`), then drop the maven pins no layer of the project asks for
        from the lock files they touched. The only phase that resolves."""
        names = list(layers)
        out = []
        for name in names:
            for src in self._sources(name, self.layer_platforms(name)):
                out += [LockReport(name, r)
                        for r in src.lock(self.ctx, move if src.moving else update)]
            self._locked.update((name, p) for p in self.layer_platforms(name))
        touched = {s.lock_file for n in names for s in self._maven_sources([n])}
        prune(self.ctx, [s for s in self._maven_sources(self.project.layers)
                         if s.lock_file in touched])
        return out

    def check_locks(self, layers: Iterable[str], *, unclaimed_pins: bool = False,
                    platforms: Iterable[str] | None = None) -> list[LockReport]:
        """Verify, without the network, that every lock of these layers exists and
        holds what the recipes ask for (for `platforms`, by default every platform an
        image using the layer is built for); with `unclaimed_pins` (`ociforge lock --check`)
        also that their maven lock files hold nothing no layer asks for. One LockError
        names every layer, lock file and problem, and the `ociforge lock` to run."""
        names = list(dict.fromkeys(layers))
        out: list[LockReport] = []
        problems: list[tuple[str, str]] = []
        wanted = list(platforms) if platforms is not None else None
        for name in names:
            for src in self._sources(name, wanted or self.layer_platforms(name)):
                try:
                    out += [LockReport(name, r) for r in src.check_lock(self.ctx)]
                except LockError as e:
                    problems.append((name, str(e)))
        if unclaimed_pins:
            mine = {s.lock_file: n for n in names for s in self._maven_sources([n])}
            extra = unclaimed(self.ctx, [s for s in self._maven_sources(self.project.layers)
                                         if s.lock_file in mine])
            problems += [(mine[f], f"{f} pins {', '.join(coords)}, which no layer asks for")
                         for f, coords in extra.items()]
        if problems:
            todo = " ".join(dict.fromkeys(n for n, _ in problems))
            raise LockError("; ".join(f"layer {n}: {p}" for n, p in problems)
                            + f": run `ociforge lock {todo}`")
        self._locked.update((n, p) for n in names
                            for p in wanted or self.layer_platforms(n))
        return out

    def layer_platforms(self, name: str) -> list[str]:
        """The platforms layer `name` is built for: those of the images using it, or
        taking it with a feature (`--with connect` on a matrix image)."""
        if not hasattr(self, "_layer_platforms"):
            found: dict[str, set[str]] = {}
            features = self.project.features
            for image in self.project.images.values():
                for p in image.declared_platforms():
                    extra = features.possible_layers(image.vars, platform=p) \
                        if image.vars else []
                    for ln in [*image.layers, *extra]:
                        found.setdefault(ln, set()).add(p)
            self._layer_platforms = {n: ordered(ps) for n, ps in found.items()}
        return self._layer_platforms.get(name, [DEFAULT_PLATFORM])

    def _layer(self, name: str, platform: str) -> tuple[LayerDef, str]:
        """Layer `name` as built for `platform`, and the platform its bytes depend on
        ('' when none: the same layer, key and blob on every platform)."""
        layer = self.project.layer(name)
        mine = layer.for_platform(platform)
        return mine, ("" if mine is layer else platform)

    def _sources(self, name: str, platforms: Iterable[str]) -> list[Any]:
        """The sources of layer `name` on these platforms, each once."""
        out: list[Any] = []
        for platform in platforms:
            out += [s for s in self._layer(name, platform)[0].all_sources()
                    if not any(s is o for o in out)]
        return out

    def _maven_sources(self, layers: Iterable[str]) -> list[MavenSource]:
        """Their maven sources on every platform they are built for (a per-platform
        classifier pins into that platform's own lock file)."""
        return [s for n in layers for s in self._sources(n, self.layer_platforms(n))
                if isinstance(s, MavenSource)]

    def keys(self, layers: Iterable[str], platform: str = DEFAULT_PLATFORM) -> dict[str, str]:
        """Input keys of these layers: every lock checked first (never resolved: a
        missing pin is an error naming `ociforge lock`), then every key (base images
        of `builder` layers assembled before the keys that name them), so a bad pin or
        a missing lock fails before any layer is built."""
        names = list(dict.fromkeys(layers))
        self.check_locks([n for n in names if (n, platform) not in self._locked],
                         platforms=[platform])
        out = {n: self._key(n, platform) for n in names}
        self.ctx.digests.save()
        return out

    def checkout_digests(self, layers: Iterable[str]) -> dict[str, str]:
        """git blob id -> sha256 of every clean tracked checkout file these layers
        take (see digestcache): what `plan --json` hands to fresh runners."""
        self.ctx.digests.collect = True
        for name in dict.fromkeys(layers):
            for src in self.project.layer(name).all_sources():
                src.hash_checkout(self.ctx)
        self.ctx.digests.save()
        return dict(sorted(self.ctx.digests.by_blob.items()))

    def _key(self, name: str, platform: str) -> str:
        layer, slot = self._layer(name, platform)
        if (name, slot) not in self._keys:
            for src in layer.all_sources():
                for base in src.needs_images():
                    self._prepare_base(base)
            try:
                self._keys[(name, slot)] = input_key(layer, self.ctx)
            except LockError as e:
                raise LockError(f"layer {name}: {e}") from None
        return self._keys[(name, slot)]

    # -- layers and images --------------------------------------------------------------

    def build_layers(self, layers: Iterable[str], compression: str,
                     platform: str = DEFAULT_PLATFORM) -> list[LayerRecord]:
        """Store these layers (building what is not cached) without assembling."""
        keys = self.keys(layers, platform)
        self.builder.prefetch(keys.values(), compression)
        return [self.builder.ensure(n, self._layer(n, platform)[0], key, compression)
                for n, key in keys.items()]

    def platforms_of(self, image: ImageDef, asked: Iterable[str] | None = None
                     ) -> list[ImageDef]:
        """`image` as assembled for each platform of this run: those asked for
        (`--platform`), else its declared ones that `$OCIFORGE_PLATFORMS` keeps."""
        asked = ordered(asked if asked is not None else self.options.platforms)
        if asked:
            return [image.for_platform(p) for p in asked]
        chosen = selected(image.declared_platforms())
        if not chosen:
            raise RecipeError(f"image {image.name}: none of its platforms "
                              f"({', '.join(image.declared_platforms())}) is in "
                              f"${PLATFORMS_ENV}")
        return [image.for_platform(p) for p in chosen]

    def assemble(self, names: Iterable[str], compression: str | None = None,
                 platforms: Iterable[str] | None = None, keep_tagged: bool = False
                 ) -> list[AssembledImage]:
        """Build missing layers, write config + manifest per platform, tag each image
        in the store (an index of its platforms when there are several); one
        AssembledImage per image and platform. `keep_tagged`: the tag keeps the other
        platforms' images it lists now (`ociforge test` of one platform)."""
        plan = [(image, self.platforms_of(image, platforms))
                for image in (self.project.resolve(n) for n in names)]
        keys = {(ln, p.platform): key for _, ps in plan for p in ps
                for ln, key in self.keys(p.layers, p.platform).items()}
        for chosen in dict.fromkeys(compression or image.compression for image, _ in plan):
            self.builder.prefetch((keys[(ln, p.platform)] for image, ps in plan for p in ps
                                   for ln in p.layers
                                   if (compression or image.compression) == chosen), chosen)
        out = []
        for image, ps in plan:
            chosen = compression or image.compression
            made = []
            for p in ps:
                records = [self.builder.ensure(ln, self._layer(ln, p.platform)[0],
                                               keys[(ln, p.platform)], chosen)
                           for ln in p.layers]
                made.append(write_image(self.store, image.name, p, records, self.ctx.sde,
                                        chosen))
            keep = tagged_others(self.store, image.name, [m.platform for m in made]) \
                if keep_tagged else []
            tag_platforms(self.store, image.name, made, keep)
            out += made
        return out

    def export(self, names: list[str], *, archive: Path | None = None,
               oci_layout: Path | None = None, progress: ByteProgress | None = None,
               platform: str | None = None) -> dict[str, dict[str, Any]]:
        """Write assembled images as an archive and/or an OCI layout directory. The
        archive holds each image's `platform` (the host's by default: what `minikube
        image load` takes); the layout every platform a name is tagged with."""
        refs = self.store.images(names, platform) if archive else []
        whole = self.store.tagged(names) if oci_layout else []
        total = sum(d.size for r in [*refs, *whole] for d in [r.descriptor, *r.blobs()])

        def tick(what: str) -> Callable[[int], None]:
            return lambda n: progress(what, n, total) if progress else None

        outputs: dict[str, dict[str, Any]] = {}
        if archive:
            from .outputs.archive import write_archive

            size = write_archive(self.store, refs, archive, progress=tick("archive"))
            outputs["archive"] = {"path": str(archive), "size": size}
        if oci_layout:
            from .outputs.layout import export_layout

            export_layout(self.store, whole, oci_layout, progress=tick("oci-layout"))
            outputs["oci_layout"] = {"path": str(oci_layout)}
        return outputs

    def rebuild_blob(self, key: str, digest: str) -> bool:
        """Build the layer of `key` again to make blob `digest` (the layer cache's copy
        was bad); False if this run did not compute that key."""
        slot = next((s for s, k in self._keys.items() if k == key), None)
        rec = self.store.read_record(key)
        if slot is None or rec is None:
            return False
        name, layer = slot[0], self._layer(slot[0], slot[1] or DEFAULT_PLATFORM)[0]
        compression = next((c for c, b in rec.blobs.items() if b.digest == digest), None)
        if compression is None:
            return False
        self.builder.rebuild_blob(name, layer, key, compression)
        return self.store.has_blob(digest)

    # -- base images (the context's image port) -------------------------------------------

    def _prepare_base(self, name: str) -> None:
        """Assemble base image `name` if the recipes define it (with this run's
        swaps and features), else take it as tagged in the store."""
        if name in self._bases:
            return
        if name in self._chain:
            raise RecipeError(f"builder base image {name!r} depends on itself "
                              f"({' -> '.join([*self._chain, name])})")
        if name in self.project.images or name in self.project.aliases:
            tagged = self._with_features(name) if self.options.features else \
                self.project.resolve(name).name
            self._chain = (*self._chain, name)
            try:
                first = self.project.resolve(tagged).declared_platforms()[:1]
                (image,) = self.assemble([tagged], platforms=first)
            finally:
                self._chain = self._chain[:-1]
            self._bases[name] = (tagged, image.manifest.digest)
        else:
            entry = self.store.tags().get(name)
            if entry is None:
                raise RecipeError(f"builder base image {name!r} is neither defined by the "
                                  f"recipes in {self.project.root} nor assembled in the store")
            self._bases[name] = (name, str(entry["digest"]))

    def prepared_base(self, name: str) -> tuple[str, str]:
        """(name tagged in the store, manifest digest) of a base image this run prepared."""
        if name not in self._bases:  # a source asked for an image it did not declare
            raise RecipeError(f"base image {name!r} was not declared by the layer's source "
                              "(needs_images)")
        return self._bases[name]


class _Images:
    """The session's side of `ImagePort`: base images prepared by `BuildSession.keys`."""

    def __init__(self, session: BuildSession) -> None:
        self._session = session

    def digest(self, name: str) -> str:
        return self._session.prepared_base(name)[1]

    def export(self, name: str, dest: Path) -> str:
        from .outputs.archive import write_archive

        tagged, digest = self._session.prepared_base(name)
        store = self._session.store
        ref = store.image(tagged)
        if ref.descriptor.digest != digest:
            raise RecipeError(f"builder base image {name!r} changed in the store during "
                              "the build")
        write_archive(store, [ref], dest)
        return digest
