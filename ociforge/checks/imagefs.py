"""An image's final filesystem, from its layers' tar headers (whiteouts applied).

Only headers are kept (each layer's listing cached by `layerindex`), so checking a
1 GB image streams each of its layers at most once and holds a few MB; the contents
of the few small files a check reads are fetched from the layer that holds them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePosixPath

from ..image import StoredImage
from .layerindex import SMALL, LayerIndex, Node

__all__ = ["Node", "load", "read_small"]


def load(image: StoredImage, index: LayerIndex) -> dict[str, Node]:
    """path -> Node for the image's merged filesystem."""
    fs: dict[str, Node] = {}
    for i, layer in enumerate(image.layers):
        for e in index.entries(layer):
            name = PurePosixPath(e.path).name
            parent = str(PurePosixPath(e.path).parent)
            if name == ".wh..wh..opq":
                prefix = parent.rstrip("/") + "/"
                for p in [p for p in fs if p.startswith(prefix)]:
                    del fs[p]
                continue
            if name.startswith(".wh."):
                gone = f"{parent.rstrip('/')}/{name[4:]}"
                for p in [p for p in fs if p == gone or p.startswith(gone + "/")]:
                    del fs[p]
                continue
            fs[e.path] = replace(e, layer=i)
    return fs


def read_small(image: StoredImage, index: LayerIndex, fs: dict[str, Node],
               paths: list[str]) -> None:
    """Fill in `content` of these paths where they are small regular files (up to
    layerindex.SMALL), each read from the layer it comes from."""
    wanted: dict[int, set[str]] = {}
    for path in paths:
        node = fs.get(path)
        if node is not None and node.kind == "file" and node.size <= SMALL:
            wanted.setdefault(node.layer, set()).add(path)
    for i, names in sorted(wanted.items()):
        for path, data in index.contents(image.layers[i], names).items():
            fs[path].content = data
