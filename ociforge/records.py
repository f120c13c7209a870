"""Layer records: what the store remembers about a built layer, as one typed value.

A record is the build cache's entry (found by input key) and the only place that
says what went into a layer (provenance, for SBOMs). It is frozen: a change (another
compression added) makes a new record. On disk it is JSON under
`ociforge/layers/<key-hex>.json`; the keys are the ones written before records were
typed (other tools read them through `layers ls --json`), plus `version`.

`RECORD_VERSION` history:
  0 (no `version` key): records written before this module; same keys, and
    `encoding_params` may be missing (then the legacy rule in `compression` applies).
  1: the same keys plus `version`.
A reader accepts newer versions (it ignores keys it does not know); a record is
rewritten with this version.

This module imports only `oci`, `digests` and `compression` (never the store), so
the store can return records.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .compression import LEGACY_PARAMS, compression_params
from .digests import canonical_json
from .oci import Descriptor

RECORD_VERSION = 1


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, kw_only=True)
class LayerRecord:
    name: str                 # the layer definition's name
    input_key: str
    diff_id: str
    size: int = 0             # uncompressed tar bytes
    files: int = 0            # tar entries
    source_kind: str = ""     # e.g. "files", or "archive+files" for a multi-source layer
    blobs: Mapping[str, Descriptor] = field(default_factory=dict, hash=False)
    # Per compression, what decided its blob's bytes (see compression.compression_params).
    params: Mapping[str, str] = field(default_factory=dict, hash=False)
    provenance_json: str = field(default="{}", repr=False)  # canonical JSON
    built_by: str = ""
    built_at: int = 0
    build_seconds: float = 0.0
    version: int = RECORD_VERSION

    def __post_init__(self) -> None:
        # Read-only views: a record never changes after it is made.
        object.__setattr__(self, "blobs", _frozen(self.blobs))
        object.__setattr__(self, "params", _frozen(self.params))

    @staticmethod
    def provenance_text(provenance: Mapping[str, Any]) -> str:
        """The `provenance_json` of a provenance mapping."""
        return canonical_json(provenance).decode()

    # -- typed accessors -----------------------------------------------------------------

    @property
    def provenance(self) -> dict[str, Any]:
        """What went into the layer (a fresh copy on each call)."""
        value = json.loads(self.provenance_json)
        return value if isinstance(value, dict) else {}

    def sources(self) -> list[tuple[str, dict[str, Any]]]:
        """(source kind, its provenance) for each source of the layer, in order."""
        sources = self.provenance.get("sources") or []
        return [(kind, prov if isinstance(prov, dict) else {})
                for kind, prov in zip(self.source_kind.split("+"), sources, strict=False)]

    @property
    def compressions(self) -> tuple[str, ...]:
        return tuple(sorted(self.blobs))

    def blob(self, compression: str) -> Descriptor:
        """The blob stored in `compression`; KeyError if there is none."""
        return self.blobs[compression]

    def names_blob(self, digest: str) -> bool:
        return any(b.digest == digest for b in self.blobs.values())

    def params_for(self, compression: str) -> str | None:
        """What made the blob in `compression`; for records older than these
        parameters, what that blob was known to be made with (None: unknown)."""
        return self.params.get(compression, LEGACY_PARAMS.get(compression))

    def has_params_for(self, compression: str) -> bool:
        """A blob in `compression` exists and was made with today's parameters, so
        it is the blob a build now would write (otherwise it is recompressed)."""
        return (compression in self.blobs
                and self.params_for(compression) == compression_params(compression))

    def with_blob(self, compression: str, blob: Descriptor) -> LayerRecord:
        """This record plus a blob made now in `compression`."""
        return dataclasses.replace(
            self, blobs={**self.blobs, compression: blob},
            params={**self.params, compression: compression_params(compression)},
            version=RECORD_VERSION)

    # -- JSON ----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "name": self.name,
            "input_key": self.input_key,
            "diff_id": self.diff_id,
            "size": self.size,
            "files": self.files,
            "blobs": {c: b.to_json() for c, b in self.blobs.items()},
            "encoding_params": dict(self.params),
            "source_kind": self.source_kind,
            "provenance": self.provenance,
            "built_by": self.built_by,
            "built_at": self.built_at,
            "build_seconds": self.build_seconds,
        }

    @classmethod
    def from_json(cls, data: Any) -> LayerRecord:
        """A record as stored, of any version (ValueError if it is not one)."""
        try:
            blobs = {str(c): Descriptor.from_json(b) for c, b in data["blobs"].items()}
            provenance = data.get("provenance") or {}
            return cls(
                name=str(data["name"]), input_key=str(data["input_key"]),
                diff_id=str(data["diff_id"]), size=int(data.get("size", 0)),
                files=int(data.get("files", 0)), source_kind=str(data.get("source_kind", "")),
                blobs=blobs, params={str(c): str(p) for c, p in
                                     (data.get("encoding_params") or {}).items()},
                provenance_json=cls.provenance_text(provenance),
                built_by=str(data.get("built_by", "")), built_at=int(data.get("built_at", 0)),
                build_seconds=float(data.get("build_seconds", 0.0)),
                version=int(data.get("version", 0)))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a layer record: {e!r}") from e


def pick_record(candidates: Iterable[LayerRecord], diff_id: str,
                blob_digest: str | None = None) -> LayerRecord | None:
    """THE rule for which record describes a layer (several records can share a
    diff_id: the same content built from different inputs). Among the records of
    `diff_id`: those that name `blob_digest` (the blob the manifest uses) first,
    then the lowest input key. Independent of the order records are read in."""
    matching = [r for r in candidates if r.diff_id == diff_id]
    if not matching:
        return None
    return min(matching, key=lambda r: (not (blob_digest and r.names_blob(blob_digest)),
                                        r.input_key))
