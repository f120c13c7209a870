"""Images for the registry tests: the busybox hello image, variants sharing its
layers, and images with large random (incompressible) layers for upload faults."""

from __future__ import annotations

import json
import random
from pathlib import Path

from conftest import make_hello_project, run_cli, write


def random_file(path: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n


def hello_with_variant(root: Path) -> Path:
    """hello (busybox + hello) and hello-extra (the same two layers + one more)."""
    root.mkdir(parents=True, exist_ok=True)
    make_hello_project(root)
    write(root / "files" / "extra" / "note.txt", "an extra layer\n")
    write(root / "layers" / "extra.yaml", """\
        source:
          kind: files
          files:
            - {src: files/extra/note.txt, dest: /etc/extra-note.txt}
        """)
    write(root / "recipes" / "extra.yaml", """\
        images:
          hello-extra:
            layers: [busybox, hello, extra]
            config:
              entrypoint: ["/bin/sh", "/usr/local/bin/hello"]
              user: "185:185"
        """)
    return root


def random_layers_project(root: Path, name: str, sizes: list[int], seed: int) -> Path:
    """An image `name` whose layers are single files of random bytes."""
    root.mkdir(parents=True, exist_ok=True)
    layer_names = []
    for i, size in enumerate(sizes):
        lname = f"{name}-rand{i}"
        random_file(root / "files" / f"{lname}.bin", size, seed * 1000 + i)
        write(root / "layers" / f"{lname}.yaml", f"""\
            source:
              kind: files
              files:
                - {{src: files/{lname}.bin, dest: /data/{lname}.bin}}
            """)
        layer_names.append(lname)
    write(root / "recipes" / f"{name}.yaml", f"""\
        images:
          {name}:
            layers: {json.dumps(layer_names)}
            config:
              cmd: ["/bin/true"]
        """)
    return root


KiB = 1 << 10


def fleet_project(root: Path) -> Path:
    """Five images over nine random-bytes layers, some shared (`base-*` by all)."""
    layers = {"base-0": 300, "base-1": 200, "a-0": 150, "a-1": 100, "b-0": 250,
              "c-0": 120, "c-1": 80, "d-0": 60, "e-0": 40}
    for i, (name, kib) in enumerate(layers.items()):
        random_file(root / "files" / f"{name}.bin", kib * KiB, 7000 + i)
        write(root / "layers" / f"{name}.yaml", f"""\
            source:
              kind: files
              files:
                - {{src: files/{name}.bin, dest: /data/{name}.bin}}
            """)
    images = {"img-a": ["base-0", "base-1", "a-0", "a-1"], "img-b": ["base-0", "base-1", "b-0"],
              "img-c": ["base-0", "c-0", "c-1"], "img-d": ["base-0", "base-1", "d-0", "a-0"],
              "img-e": ["e-0"]}
    write(root / "recipes" / "fleet.yaml", "images:\n" + "".join(
        f"  {name}:\n    layers: {json.dumps(ls)}\n    config:\n      cmd: [\"/bin/true\"]\n"
        for name, ls in images.items()))
    return root


def one_layer_project(root: Path, name: str, seed: int, kib: int = 64) -> Path:
    random_file(root / "files" / f"{name}.bin", kib * KiB, seed)
    write(root / "layers" / f"{name}.yaml", f"""\
        source:
          kind: files
          files:
            - {{src: files/{name}.bin, dest: /data/{name}.bin}}
        """)
    write(root / "recipes" / f"{name}.yaml", f"""\
        images:
          {name}:
            layers: [{name}]
            config:
              cmd: ["/bin/true"]
        """)
    return root


def assemble(project: Path, store: Path, *names: str, compression: str = "gzip") -> None:
    r = run_cli("assemble", *names, "--compression", compression, store=store,
                project=project)
    assert r.rc == 0, r.err


def manifest_digest(store: Path, name: str) -> str:
    index = json.loads((store / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name:
            return str(m["digest"])
    raise AssertionError(f"{name} not in {store}")


def blob_sizes(store: Path, name: str) -> dict[str, int]:
    digest = manifest_digest(store, name)
    manifest = json.loads((store / "blobs" / "sha256" / digest[7:]).read_text())
    return {d["digest"]: d["size"] for d in [manifest["config"], *manifest["layers"]]}
