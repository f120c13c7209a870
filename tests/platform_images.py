"""Small two-platform images for the store, output and registry tests: `demo-amd64`
(linux/amd64) and `demo-arm64` (linux/arm64) over one shared files layer and one
layer of their own each, tagged together as `demo` (an OCI image index) with
`Store.tag_platforms`. No Debian, nothing to run: what is tested is the index."""

from __future__ import annotations

from pathlib import Path

from ociforge.store import Store

from conftest import run_cli, write

NAME = "demo"
PER_PLATFORM = {"linux/amd64": "demo-amd64", "linux/arm64": "demo-arm64"}


def two_platform_project(root: Path) -> Path:
    """Recipes of demo-amd64 and demo-arm64: layers `shared` + `only-<arch>`."""
    write(root / "files" / "shared.txt", "the same bytes on every platform\n" * 64)
    layers = {"shared": "files/shared.txt"}
    for platform in PER_PLATFORM:
        arch = platform.split("/")[1]
        write(root / "files" / f"{arch}.txt", f"built for {arch}\n")
        layers[f"only-{arch}"] = f"files/{arch}.txt"
    for lname, src in layers.items():
        write(root / "layers" / f"{lname}.yaml", f"""\
            source:
              kind: files
              files:
                - {{src: {src}, dest: /data/{Path(src).name}}}
            """)
    # `demo` itself is defined (so the catalog lists it) but never assembled here: the
    # tests tag it with the index of the two others.
    write(root / "recipes" / "demo.yaml", "images:\n  demo:\n    layers: [shared]\n" + "".join(
        f"  {name}:\n    platform: {platform}\n"
        f"    layers: [shared, only-{platform.split('/')[1]}]\n"
        "    config:\n      cmd: [\"/bin/true\"]\n"
        for platform, name in PER_PLATFORM.items()))
    return root


def build_two_platform(root: Path, store: Path) -> Store:
    """The project under `root`, assembled into `store`, `demo` tagged as the index of
    both platforms (arm64 given first: the index orders them itself)."""
    project = two_platform_project(root)
    r = run_cli("assemble", *PER_PLATFORM.values(), store=store, project=project,
                env={"OCIFORGE_PLATFORMS": ",".join(PER_PLATFORM)})
    assert r.rc == 0, r.err
    s = Store(store)
    s.tag_platforms(NAME, [s.image(PER_PLATFORM["linux/arm64"]),
                           s.image(PER_PLATFORM["linux/amd64"])])
    return s
