"""Image assembly: config and manifest as pure functions of layer records + recipe.

No tool version, host name or wall-clock time leaks in: `created` comes from
SOURCE_DATE_EPOCH (default 0) and JSON is canonical, so the same inputs give the
same manifest digest on any machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .digests import canonical_json
from .image import StoredImage, StoredIndex, load_image
from .platforms import DEFAULT_PLATFORM
from .records import LayerRecord
from .store import MT_CONFIG, MT_MANIFEST, Descriptor, Store

if TYPE_CHECKING:  # `push --plan` stitches without loading the recipe models
    from .recipes import ImageDef


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_reference(name: str, image: ImageDef) -> str:
    return f"{image.repository or name}:{image.tag}"


def build_config(image: ImageDef, records: list[LayerRecord], sde: int) -> dict[str, Any]:
    return finish_config(config_settings(image), image.platform, records, sde)


def config_settings(image: ImageDef) -> dict[str, Any]:
    """The runtime settings (`config` of the image config) the recipe gives."""
    c = image.config
    cfg: dict[str, Any] = {}
    if c.user is not None:
        cfg["User"] = c.user
    if c.env:
        cfg["Env"] = [f"{k}={v}" for k, v in c.env.items()]
    if c.entrypoint is not None:
        cfg["Entrypoint"] = c.entrypoint
    if c.cmd is not None:
        cfg["Cmd"] = c.cmd
    if c.workdir:
        cfg["WorkingDir"] = c.workdir
    if c.labels:
        cfg["Labels"] = dict(c.labels)
    if c.ports:
        cfg["ExposedPorts"] = {p: {} for p in c.ports}
    if c.volumes:
        cfg["Volumes"] = {v: {} for v in c.volumes}
    if c.stop_signal:
        cfg["StopSignal"] = c.stop_signal
    return cfg


def finish_config(cfg: dict[str, Any], platform: str, records: list[LayerRecord],
                  sde: int) -> dict[str, Any]:
    """The image config: settings `cfg` over these layers, on `platform`."""
    os_, arch = platform.split("/")
    created = rfc3339(sde)
    return {
        "architecture": arch,
        "os": os_,
        "created": created,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [r.diff_id for r in records]},
        "history": [
            # Layer name and source kind only: the input key is ociforge's cache
            # bookkeeping and must not make the same content a different image.
            {"created": created, "created_by": f"ociforge layer {r.name} ({r.source_kind})"}
            for r in records
        ],
    }


def build_manifest(config_desc: Descriptor, records: list[LayerRecord], compression: str,
                   annotations: dict[str, str]) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [r.blob(compression).to_json() for r in records],
    }
    if annotations:
        manifest["annotations"] = dict(sorted(annotations.items()))
    return manifest


@dataclass
class AssembledImage:
    name: str
    reference: str
    manifest: Descriptor
    config: Descriptor
    layers: list[LayerRecord]
    compression: str
    platform: str = DEFAULT_PLATFORM

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": self.reference,
            "manifest_digest": self.manifest.digest,
            "config_digest": self.config.digest,
            "compression": self.compression,
            "platform": self.platform,
            "size": sum(r.blob(self.compression).size for r in self.layers),
            "layers": [{"name": r.name, "diff_id": r.diff_id,
                        "digest": r.blob(self.compression).digest} for r in self.layers],
        }


def assemble_image(store: Store, name: str, image: ImageDef, records: list[LayerRecord],
                   sde: int, compression: str) -> AssembledImage:
    """Write config + manifest for layers already stored, and tag `name` in the store."""
    made = write_image(store, name, image, records, sde, compression)
    tag_platforms(store, name, [made])
    return made


def write_image(store: Store, name: str, image: ImageDef, records: list[LayerRecord],
                sde: int, compression: str) -> AssembledImage:
    """Write config + manifest (of `image.platform`) for layers already stored; untagged."""
    return write_stitched(store, name, stitch_inputs(name, image), records, sde, compression)


def stitch_inputs(name: str, image: ImageDef) -> dict[str, Any]:
    """All an image's config and manifest take from the recipe (what `plan --json`
    records per platform, so `push --plan` stitches without the recipes)."""
    return {"platform": image.platform, "reference": image_reference(name, image),
            "config": config_settings(image), "annotations": dict(image.annotations)}


def write_stitched(store: Store, name: str, inputs: dict[str, Any], records: list[LayerRecord],
                   sde: int, compression: str) -> AssembledImage:
    """Write config + manifest from `stitch_inputs` and the layer records; untagged."""
    config = finish_config(inputs["config"], inputs["platform"], records, sde)
    cfg_bytes = canonical_json(config)
    cfg_desc = Descriptor(MT_CONFIG, store.put_bytes(cfg_bytes), len(cfg_bytes))
    annotations = {"org.opencontainers.image.created": rfc3339(sde), **inputs["annotations"]}
    manifest = build_manifest(cfg_desc, records, compression, annotations)
    man_bytes = canonical_json(manifest)
    man_desc = Descriptor(MT_MANIFEST, store.put_bytes(man_bytes), len(man_bytes))
    return AssembledImage(name, inputs["reference"], man_desc, cfg_desc, records, compression,
                          inputs["platform"])


def tag_platforms(store: Store, name: str, images: list[AssembledImage],
                  keep: Sequence[StoredImage] = ()) -> None:
    """Tag `name` with its platforms' manifests: one platform's manifest itself (as
    always), several as one OCI image index (`Store.tag_platforms`); `keep`: images
    of other platforms the index lists beside them."""
    annotations = {"io.ociforge.reference": images[0].reference}
    if len(images) == 1 and not keep:
        store.tag(name, images[0].manifest, annotations)
        return
    picker = store.record_picker()
    store.tag_platforms(name, [*(load_image(store, name, {**i.manifest.to_json(),
                                                          "annotations": annotations}, picker)
                                 for i in images), *keep], annotations)


def tagged_others(store: Store, name: str, platforms: Iterable[str]) -> list[StoredImage]:
    """The images of platforms other than `platforms` that `name` is tagged with now (a
    run of one platform keeps them in the tag, instead of dropping them)."""
    if name not in store.tags():
        return []
    (tagged,) = store.tagged([name])
    images = tagged.images if isinstance(tagged, StoredIndex) else (tagged,)
    mine = set(platforms)
    return [img for img in images if img.platform not in mine and img.os and img.architecture]
