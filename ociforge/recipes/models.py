"""The typed recipe data: layers, image declarations, and resolved images.

An image is declared (`ImageSpec`, what a recipe or a matrix template says, perhaps
on top of a `base:` image) and resolved (`ImageDef`: base merged in, features
applied, under its canonical name). `merge_image` is the one rule for stacking a
declaration on its base.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, model_validator

from ..errors import RecipeError
from ..platforms import ordered
from ..sources import SourceSpec
from ..sources.base import MAX_ID, Owner
from ..spec import Spec, invalid


class LayerDef(Spec):
    """One layer: a source, or several whose files are merged (later ones win)."""

    description: str = ""
    owner: Owner = (0, 0)
    source: SourceSpec | None = None
    sources: list[SourceSpec] = []

    @model_validator(mode="after")
    def _one_form(self) -> LayerDef:
        if (self.source is None) == (not self.sources):
            raise ValueError("give either 'source' or a non-empty 'sources' list")
        return self

    def all_sources(self) -> list[Any]:
        return [self.source] if self.source is not None else list(self.sources)

    @property
    def kind(self) -> str:
        return "+".join(s.kind for s in self.all_sources())

    def for_platform(self, platform: str) -> LayerDef:
        """This layer as built for `platform`: itself (one key, one blob on every
        platform) unless a source's bytes depend on the architecture."""
        sources = self.all_sources()
        mine = [s.for_platform(platform) for s in sources]
        if all(a is b for a, b in zip(mine, sources, strict=True)):
            return self
        if self.source is not None:
            return self.model_copy(update={"source": mine[0]})
        return self.model_copy(update={"sources": mine})


def tcp_port(port: str) -> str:
    """`8080` -> `8080/tcp`; a port with a protocol stays as it is."""
    port = str(port)
    return port if "/" in port else f"{port}/tcp"


def _port(value: Any) -> str:
    """`8080`, `8080/tcp`, `53/udp` (or sctp), numbered 1 to 65535, as `N/proto`."""
    port = tcp_port(value)
    m = re.fullmatch(r"([1-9]\d{0,4})/(tcp|udp|sctp)", port)
    if not m or not 1 <= int(m.group(1)) <= 65535:
        raise invalid(f"{value!r} is not a port: give 1 to 65535, optionally with "
                      "/tcp, /udp or /sctp")
    return port


def _tag(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", value):
        raise invalid(f"{value!r} is not a valid tag (letters, digits, '_', '.' and '-', "
                      "not starting with '.' or '-', at most 128)")
    return value


def _user(value: str) -> str:
    """`NAME`, `UID`, `NAME:GROUP` or `UID:GID`; numeric ids are 32-bit."""
    for what, part in zip(("uid", "gid"), value.split(":", 1), strict=False):
        if re.fullmatch(r"[+-]?\d+", part) and not 0 <= int(part) <= MAX_ID:
            raise invalid(f"{what} {part} is out of range (0 to {MAX_ID})")
    return value


Port = Annotated[str, BeforeValidator(_port)]
Platform = Literal["linux/amd64", "linux/arm64"]
Tag = Annotated[str, AfterValidator(_tag)]


class ImageConfig(Spec):
    """The runtime config of an image (OCI image config `config` object)."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: dict[str, str] = {}
    user: Annotated[str, AfterValidator(_user)] | None = None
    workdir: str | None = None
    labels: dict[str, str] = {}
    ports: list[Port] = []
    volumes: list[str] = []
    stop_signal: str | None = None


class _Image(Spec):
    """What a declared and a resolved image have in common."""

    description: str = ""
    layers: list[str] = []
    features: list[str] = []           # add-ons (see `features:`), with what they require
    vars: dict[str, str] = {}          # for feature templates: {line}, {version}, …
    aliases: list[str] = []
    config: ImageConfig = ImageConfig()
    annotations: dict[str, str] = {}
    repository: str | None = None
    tag: Tag = "latest"
    compression: Literal["gzip", "zstd", "none"] = "gzip"
    platform: Platform = "linux/amd64"
    # The platforms the image is built for, tagged as one OCI index (empty: `platform`).
    platforms: list[Platform] = []
    # Environment of one platform only (JAVA_HOME names the Debian architecture).
    platform_env: dict[Platform, dict[str, str]] = {}
    # Platforms it cannot have, and why (a feature's `unavailable_on`).
    unavailable_platforms: dict[Platform, str] = {}

    def declared_platforms(self) -> list[str]:
        """The platforms built when none is asked for, linux/amd64 first."""
        return [p for p in ordered(self.platforms or [self.platform])
                if p not in self.unavailable_platforms]


class ImageSpec(_Image):
    """An image as declared under `images:` or expanded from a matrix template."""

    base: str | None = None            # start from this image (its layers, config, features)

    @model_validator(mode="after")
    def _has_layers(self) -> ImageSpec:
        if not self.layers and self.base is None:
            raise ValueError("give 'layers' (or a 'base' image to start from)")
        return self


class ImageDef(_Image):
    """A resolved image: its base merged in and its features applied, under its
    canonical name (an image's aliases resolve to it). Only `Project` makes these."""

    name: str

    def for_platform(self, platform: str) -> ImageDef:
        """This image as assembled for `platform` (its config's architecture and that
        platform's environment); a RecipeError names the image, the platform, and the
        feature that rules it out."""
        if platform in self.unavailable_platforms:
            raise RecipeError(f"image {self.name}: {self.unavailable_platforms[platform]}")
        declared = self.declared_platforms()
        if platform not in declared:
            raise RecipeError(f"image {self.name} is not built for {platform} (its "
                              f"platforms: {', '.join(declared)})")
        env = {**self.config.env, **next((e for p, e in self.platform_env.items()
                                          if p == platform), {})}
        return self.model_copy(update={"platform": platform,
                                       "config": self.config.model_copy(update={"env": env})})


def _merge_config(base: ImageConfig, own: ImageConfig) -> ImageConfig:
    update = {key: {**getattr(base, key), **getattr(own, key)} if key in ("env", "labels")
              else getattr(own, key) for key in own.model_fields_set}
    return base.model_copy(update=update)


def merge_image(base: ImageSpec, own: ImageSpec) -> ImageSpec:
    """`own` on top of `base` (itself already merged with its bases): features and
    layers are appended, config, env, labels, annotations and vars merged key by key,
    other fields that `own` sets replaced. Aliases are not inherited."""
    fields: dict[str, Any] = {key: getattr(base, key)
                              for key in base.model_fields_set - {"aliases", "base"}}
    for key in own.model_fields_set:
        value = getattr(own, key)
        if key in ("layers", "features"):
            have = fields.get(key, [])
            fields[key] = [*have, *[v for v in value if v not in have]]
        elif key == "config":
            fields[key] = _merge_config(base.config, own.config)
        elif key in ("annotations", "vars"):
            fields[key] = {**fields.get(key, {}), **value}
        else:
            fields[key] = value
    return ImageSpec.model_validate(fields)
