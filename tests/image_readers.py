"""What `inspect --json`, `catalog` and `sbom` say each layer of an image is, read
from their real output, for any store and project (the hello project's twins in
test_image_model.py, the whole matrix in test_matrix.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ociforge.store import Store

from conftest import run_cli

_LAYER_COMMENT = re.compile(r"^layer ([^;\s]+)")


def catalog_names(store: Path, project: Path, out: Path) -> dict[str, str]:
    """Blob digest prefix (19 characters, as the page prints it) → layer name, from the
    "## Layers" table of the catalog page."""
    r = run_cli("catalog", "-o", out, store=store, project=project)
    assert r.rc == 0, r.err
    text = out.read_text().split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    names = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 2 and cells[1].startswith("`sha256:"):
            names[cells[1].strip("`").rstrip("…")] = cells[0].split("`")[1]
    return names


def sbom_names(store: Path, name: str) -> set[str]:
    """The layers the image's SPDX document describes packages and files of."""
    r = run_cli("sbom", name, store=store)
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    comments = [p.get("comment", "") for p in doc["packages"]]
    comments += [f.get("comment", "") for f in doc.get("files", [])]
    return {m.group(1) for c in comments if (m := _LAYER_COMMENT.match(c))}


def assert_readers_agree(store: Path, project: Path, names: list[str], workdir: Path
                         ) -> dict[str, list[str | None]]:
    """For every layer of every image in `names`: inspect, the catalog and the SBOM
    name the record `Store.record_for` picks. Returns image → its layers' names."""
    s = Store(store)
    catalog = catalog_names(store, project, workdir / "images.md")
    out: dict[str, list[str | None]] = {}
    for name in names:
        r = run_cli("inspect", name, "--json", store=store)
        assert r.rc == 0, r.err
        layers = r.json()["layers"]
        picked = [s.record_for(layer["diff_id"], layer["digest"]) for layer in layers]
        expected = [rec.name if rec else None for rec in picked]
        assert [layer["name"] for layer in layers] == expected, name
        assert [catalog[layer["digest"][:19]] for layer in layers] == \
            [n or "?" for n in expected], name
        assert sbom_names(store, name) == {n for n in expected if n}, name
        out[name] = expected
    return out


def linked_copy(src: Path, dest: Path) -> Path:
    """A store of its own that shares `src`'s blobs by hard link (blobs are never
    changed in place, only replaced by rename) and copies its records and index."""
    (dest / "blobs" / "sha256").mkdir(parents=True)
    for blob in (src / "blobs" / "sha256").iterdir():
        if not blob.name.startswith("."):
            os.link(blob, dest / "blobs" / "sha256" / blob.name)
    for name in ("oci-layout", "index.json"):
        shutil.copy(src / name, dest / name)
    shutil.copytree(src / "ociforge" / "layers", dest / "ociforge" / "layers")
    return dest
