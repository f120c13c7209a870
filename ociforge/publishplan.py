"""`push --plan`: publish from what `plan --json` computed, without the recipes.

Loading the recipe models and every source module costs a publish job more than the
stitching itself. `plan --json` already resolves the selection, so it also records
what a stitch takes (`stitch` below): per image and platform, the layers' input keys
in order and the config and manifest inputs the recipe gives. `push --plan` looks the
keys up (this store's records, else the layer cache), writes the same configs and
manifests the normal path writes (assemble.write_stitched) and tags the images.

The plan file is an artifact of an earlier job of the same workflow, trusted as the
`file_digests` table is (docs/security.md). It names the ociforge version and a digest
of the project's recipes, layer files and locks: a plan from another version or a
changed project is refused before anything is written or pushed. Images whose layers
build on other images (`builder` layers) get no stitch inputs: their keys need the
base images assembled, which a plan job does not do.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import __version__
from .assemble import AssembledImage, tag_platforms, write_stitched
from .errors import OciforgeError, StoreCorruptError, UsageError
from .records import LayerRecord
from .store import Store
from .tartree import source_date_epoch

FORMAT = 1


class PlanMismatchError(UsageError):
    """A plan that does not describe this ociforge and this project (exit 2)."""


def project_digest(root: Path) -> str:
    """sha256 over the project's recipe files, layer files and lock files (names and
    bytes): what makes a layer's input key and an image's stitch inputs."""
    h = hashlib.sha256()
    for sub, pattern in (("layers", "*.yaml"), ("recipes", "*.yaml"), ("layers/locks", "**/*")):
        folder = root / sub
        for path in sorted(folder.glob(pattern)) if folder.is_dir() else []:
            if path.is_file():
                data = path.read_bytes()
                h.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode())
                h.update(data)
    return f"sha256:{h.hexdigest()}"


def stamp(root: Path, sde: int) -> dict[str, Any]:
    """What a plan must match to be published from."""
    return {"format": FORMAT, "ociforge": __version__, "project": project_digest(root),
            "sde": sde}


def load(path: Path, root: Path) -> dict[str, dict[str, Any]]:
    """The `stitch` table of plan `path`, refused unless it was made by this ociforge
    version for this project (as it is now) and this SOURCE_DATE_EPOCH."""
    try:
        data = json.loads(path.read_bytes())
        made, table = data.get("made_by"), data.get("stitch")
    except (OSError, ValueError, AttributeError) as e:
        raise PlanMismatchError(f"{path}: not the JSON of `ociforge plan --json` ({e})") \
            from None
    if not isinstance(made, dict) or not isinstance(table, dict):
        raise PlanMismatchError(f"{path}: no stitch inputs (written by `ociforge plan "
                                "--json` of an older version, or images with builder layers)")
    want = stamp(root, source_date_epoch())
    for field in ("format", "ociforge", "project", "sde"):
        if made.get(field) != want[field]:
            what = {"ociforge": "ociforge version", "project": "project (recipes, layers, "
                    "locks)", "sde": "SOURCE_DATE_EPOCH"}.get(field, field)
            raise PlanMismatchError(f"{path}: made_by.{field}: made for another {what} "
                                    f"({made.get(field)!r}, here {want[field]!r}); run "
                                    "`ociforge plan --json` again")
    for name, entry in table.items():
        _check_entry(path, name, entry)
    return table


def _check_entry(path: Path, name: str, entry: Any) -> None:
    """One image's stitch inputs have the shape `plan --json` writes."""
    where = f"{path}: stitch.{name}"
    if not isinstance(entry, dict) or entry.get("compression") not in ("gzip", "zstd", "none"):
        raise PlanMismatchError(f"{where}.compression: not gzip, zstd or none")
    platforms = entry.get("platforms")
    if not isinstance(platforms, list) or not platforms:
        raise PlanMismatchError(f"{where}.platforms: not a list of platforms")
    for p in platforms:
        ok = (isinstance(p, dict) and isinstance(p.get("platform"), str)
              and p["platform"].count("/") == 1 and isinstance(p.get("reference"), str)
              and isinstance(p.get("config"), dict) and isinstance(p.get("annotations"), dict)
              and isinstance(p.get("layers"), list)
              and all(isinstance(x, list) and len(x) == 2
                      and all(isinstance(y, str) for y in x) for x in p["layers"]))
        if not ok:
            raise PlanMismatchError(f"{where}.platforms: an entry lacks platform, reference, "
                                    "config, annotations or layers ([name, key] pairs)")


def _record(store: Store, cache: Any, key: str, compression: str) -> LayerRecord | None:
    rec = store.read_record(key)
    if rec is not None and rec.has_params_for(compression):
        blob = rec.blob(compression)
        try:
            store.check_available(blob.digest, blob.size)  # held, or noted remote
            return rec
        except StoreCorruptError:
            pass
    if cache is None:
        return None
    rec = cache.lookup(key)
    if rec is None or not rec.has_params_for(compression):
        return None
    store.write_record(rec)
    return rec


def stitch(store: Store, cache: Any, table: dict[str, dict[str, Any]],
           names: list[str]) -> list[AssembledImage]:
    """Write and tag images `names` of the plan's table from their layer records (this
    store's, else the cache's: looked up at once); a layer in neither fails, naming it,
    before any image is tagged."""
    unknown = [n for n in names if n not in table]
    if unknown:
        raise UsageError(f"image {unknown[0]!r} is not in the plan (it has: "
                         f"{', '.join(sorted(table))})")
    wanted = {(key, table[n]["compression"]): ln for n in names
              for p in table[n]["platforms"] for ln, key in p["layers"]}
    with ThreadPoolExecutor(max_workers=max(1, min(32, len(wanted))),
                            thread_name_prefix="cache") as pool:
        found = dict(zip(wanted, pool.map(lambda kc: _record(store, cache, *kc), wanted),
                         strict=True))
    missing = [f"{ln} ({kc[0]})" for kc, ln in wanted.items() if found[kc] is None]
    if missing:
        raise OciforgeError(f"layers neither in the store nor in the layer cache: "
                            f"{', '.join(missing)}; build them (`ociforge layers build`)")
    sde = source_date_epoch()
    records = {kc: rec for kc, rec in found.items() if rec is not None}
    out = []
    for name in names:
        entry = table[name]
        made = [write_stitched(store, name, p,
                               [records[(key, entry["compression"])] for _, key in p["layers"]],
                               sde, entry["compression"]) for p in entry["platforms"]]
        tag_platforms(store, name, made)
        out += made
    return out

