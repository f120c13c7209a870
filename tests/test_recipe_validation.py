"""Recipe values a runtime or registry would choke on, and YAML that says one thing
twice or a billion times, are refused at load: exit 3, one line naming the file and
the field (and for YAML, the line), nothing built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli, store_is_empty, write

LAYER = "source:\n  kind: files\n  files: [{src: a.txt, dest: /a.txt}]\n"


def _project(root: Path, recipe: str, layer: str = LAYER) -> tuple[Path, Path]:
    write(root / "a.txt", "a\n")
    write(root / "layers" / "base.yaml", layer)
    return root, write(root / "recipes" / "r.yaml", recipe)


def _refused(tmp_path: Path, root: Path, *args: str, timeout: int = 600) -> str:
    """`assemble` (or `args`) ends with exit 3, one line, and an empty store."""
    store = tmp_path / "s"
    r = run_cli(*(args or ("assemble", "img")), store=store, project=root, timeout=timeout)
    assert r.rc == 3, (r.rc, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert store_is_empty(store)
    return lines[0]


# -- owners: uid and gid are 32-bit, never negative -------------------------------------

OUT_OF_RANGE = "is out of range (0 to 4294967295)"


@pytest.mark.parametrize("layer,field,message", [
    ("owner: -1\n" + LAYER, "owner", "uid -1"),
    ("owner: '0:4294967296'\n" + LAYER, "owner", "gid 4294967296"),
    ("source:\n  kind: files\n  files: [{src: a.txt, dest: /a, owner: [4294967296, 0]}]\n",
     "source.files.files[0].owner", "uid 4294967296"),
    ("source:\n  kind: files\n  dirs: [{path: /d, owner: -7}]\n",
     "source.files.dirs[0].owner", "uid -7"),
])
def test_owner_out_of_range(tmp_path: Path, layer: str, field: str, message: str) -> None:
    root, _ = _project(tmp_path / "p", "images:\n  img: {layers: [base]}\n", layer)
    line = _refused(tmp_path, root)
    assert line.endswith(f"{root}/layers/base.yaml: field '{field}': {message} {OUT_OF_RANGE}")


@pytest.mark.parametrize("user,message", [("4294967296", "uid 4294967296"),
                                          ("spark:-1", "gid -1")])
def test_numeric_config_user_out_of_range(tmp_path: Path, user: str, message: str) -> None:
    root, recipe = _project(tmp_path / "p", f"images:\n  img:\n    layers: [base]\n"
                                            f"    config: {{user: '{user}'}}\n")
    line = _refused(tmp_path, root)
    assert line.endswith(f"{recipe}: field 'images.img.config.user': {message} {OUT_OF_RANGE}")


def test_largest_ids_are_accepted(tmp_path: Path) -> None:
    root, _ = _project(tmp_path / "p", "images:\n  img:\n    layers: [base]\n"
                                       "    config: {user: '4294967295:0'}\n",
                       "owner: '4294967295:4294967295'\n" + LAYER)
    assert run_cli("images", "ls", store=tmp_path / "s", project=root).rc == 0


# -- tags: what a registry accepts, after templates are filled --------------------------

BAD_TAG = ("is not a valid tag (letters, digits, '_', '.' and '-', not starting with "
           "'.' or '-', at most 128)")


@pytest.mark.parametrize("tag", ["v 1", ".hidden", "a" * 129, "x:y"])
def test_invalid_image_tag(tmp_path: Path, tag: str) -> None:
    root, recipe = _project(tmp_path / "p", f"images:\n  img: {{layers: [base], tag: '{tag}'}}\n")
    line = _refused(tmp_path, root)
    assert line.endswith(f"{recipe}: field 'images.img.tag': {tag!r} {BAD_TAG}")


def test_tag_from_a_matrix_template_is_checked_once_filled(tmp_path: Path) -> None:
    root, recipe = _project(tmp_path / "p", """\
        matrix:
          m:
            name: "img-{v}"
            axes: {v: {"1": {suffix: "/latest"}}}
            image: {layers: [base], tag: "{v}{suffix}"}
        """)
    line = _refused(tmp_path, root, "assemble", "img-1")
    assert line.endswith(f"{recipe}: field 'matrix.m.image (img-1).tag': '1/latest' {BAD_TAG}")


def test_tag_derived_by_with_is_checked(tmp_path: Path) -> None:
    tag = "t" * 120
    root, recipe = _project(tmp_path / "p", f"""\
        features:
          longfeature: {{env: {{A: "1"}}}}
        images:
          img: {{layers: [base], tag: {tag}}}
        """)
    line = _refused(tmp_path, root, "assemble", "img", "--with", "longfeature")
    assert line.endswith(f"{recipe}: field 'images.img --with longfeature.tag': "
                         f"'{tag}-longfeature' {BAD_TAG}")


# -- ports: 1 to 65535, tcp by default ---------------------------------------------------

NOT_A_PORT = "is not a port: give 1 to 65535, optionally with /tcp, /udp or /sctp"


@pytest.mark.parametrize("port", ["0", "65536", "8080/tcpx", "-1", "http", "080"])
def test_image_port_out_of_range(tmp_path: Path, port: str) -> None:
    root, recipe = _project(tmp_path / "p", "images:\n  img:\n    layers: [base]\n"
                                            f"    config: {{ports: ['53/udp', '{port}']}}\n")
    line = _refused(tmp_path, root)
    assert line.endswith(f"{recipe}: field 'images.img.config.ports[1]': {port!r} {NOT_A_PORT}")


def test_feature_port_out_of_range(tmp_path: Path) -> None:
    root, recipe = _project(tmp_path / "p", """\
        features:
          web: {ports: ["8080/tcp", "70000"]}
        images:
          img: {layers: [base], features: [web]}
        """)
    line = _refused(tmp_path, root)
    assert line.endswith(f"{recipe}: field 'features.web.ports[1]': '70000' {NOT_A_PORT}")


def test_check_ready_port_out_of_range(tmp_path: Path) -> None:
    root, recipe = _project(tmp_path / "p", """\
        images:
          img: {layers: [base]}
        checks:
          web:
            images: [img]
            servers: [{name: s, args: [sh], ready_port: 70000, probe: {http: "http://x/"}}]
        """)
    line = _refused(tmp_path, root)
    assert line.endswith(f"{recipe}: field 'checks.web.servers[0].ready_port': 70000 is not "
                         "a port (1 to 65535, or '{port}')")


def test_valid_ports_are_normalised(tmp_path: Path) -> None:
    root, _ = _project(tmp_path / "p", "images:\n  img:\n    layers: [base]\n"
                                       "    config: {ports: ['8080', '8443/tcp', '53/udp']}\n")
    store = tmp_path / "s"
    r = run_cli("assemble", "img", "--json", store=store, project=root)
    assert r.rc == 0, r.err
    digest = r.json()["images"][0]["config_digest"].split(":")[1]
    config = json.loads((store / "blobs" / "sha256" / digest).read_text())["config"]
    assert sorted(config["ExposedPorts"]) == ["53/udp", "8080/tcp", "8443/tcp"]


# -- duplicate keys: YAML would keep the last one, silently -----------------------------

def test_duplicate_key_in_a_recipe(tmp_path: Path) -> None:
    root, recipe = _project(tmp_path / "p", """\
        images:
          img:
            layers: [base]
            tag: stable
            tag: latest
        """)
    line = _refused(tmp_path, root)
    assert line.endswith(f"{recipe}:5:5: field 'images.img.tag': key 'tag' given twice "
                         "(first on line 4; YAML keeps only the last)")


def test_duplicate_key_in_a_layer_file(tmp_path: Path) -> None:
    layer = LAYER + "source:\n  kind: files\n  files: [{src: b.txt, dest: /b.txt}]\n"
    root, _ = _project(tmp_path / "p", "images:\n  img: {layers: [base]}\n", layer)
    line = _refused(tmp_path, root)
    assert line.endswith(f"{root}/layers/base.yaml:4:1: field 'source': key 'source' given "
                         "twice (first on line 1; YAML keeps only the last)")


def test_keys_overriding_a_merge_are_not_duplicates(tmp_path: Path) -> None:
    root, _ = _project(tmp_path / "p", """\
        x-common: &common {layers: [base], tag: one}
        images:
          img:
            <<: *common
            tag: two
        """)
    r = run_cli("assemble", "img", "--json", store=tmp_path / "s", project=root)
    assert r.rc == 0, r.err
    assert r.json()["images"][0]["reference"] == "img:two"


# -- alias bombs: a few lines that expand to billions of nodes ---------------------------

def _laughs(levels: int, item: str = '"lol"', merge: bool = False) -> str:
    """x-l0 … x-lN, each nine of the one before (9^(N+1) leaves)."""
    if merge:
        lines = ["x-l0: &l0 {" + ", ".join(f"k{i}: {item}" for i in range(9)) + "}"]
        lines += [f"x-l{n}: &l{n} {{<<: [{', '.join([f'*l{n - 1}'] * 9)}], own{n}: x}}"
                  for n in range(1, levels + 1)]
    else:
        lines = ["x-l0: &l0 [" + ", ".join([item] * 9) + "]"]
        lines += [f"x-l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]"
                  for n in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_billion_laughs_in_a_matrix_template(tmp_path: Path) -> None:
    root, recipe = _project(tmp_path / "p", _laughs(8) + """\
matrix:
  m:
    name: "img-{v}"
    axes: {v: {"1": {}}}
    image: {layers: [base], config: {cmd: *l8}}
""")
    # Bounded by the refusal itself (an expanding loader never returns; the run's
    # timeout would fail the test), not by a timing assertion.
    line = _refused(tmp_path, root, "images", "ls", timeout=120)
    assert line.endswith(f"{recipe}:7:7: field 'x-l6': aliases expand this to more than "
                         "1,000,000 nodes")


def test_merge_key_bomb(tmp_path: Path) -> None:
    root, recipe = _project(tmp_path / "p", _laughs(8, merge=True) +
                            "images:\n  img: {<<: *l8, layers: [base]}\n")
    line = _refused(tmp_path, root, "images", "ls", timeout=60)
    assert line.endswith(f"{recipe}:6:16: field 'x-l5': aliases expand this to more than "
                         "1,000,000 nodes")


def test_matrix_axes_aliasing_one_mapping(tmp_path: Path) -> None:
    """Eight axes that alias one ten-value mapping: 10^8 images from eleven lines."""
    axes = "\n".join(f"      {a}: *v" for a in "bcdefgh")
    values = ", ".join(f'"{i}": {{}}' for i in range(10))
    root, recipe = _project(tmp_path / "p", f"""\
matrix:
  m:
    name: "img-{{a}}{{b}}{{c}}{{d}}{{e}}{{f}}{{g}}{{h}}"
    axes:
      a: &v {{{values}}}
{axes}
    image: {{layers: [base]}}
""")
    line = _refused(tmp_path, root, "images", "ls", timeout=60)
    assert line.endswith(f"{recipe}: field 'matrix.m.axes': 100,000,000 combinations of 11 "
                         "template values each: more than the 1,000,000 a matrix may expand "
                         "to (split it, or use fewer values)")


def test_recursive_alias(tmp_path: Path) -> None:
    root, recipe = _project(tmp_path / "p", """\
        images:
          img:
            layers: [base]
            config: {cmd: &c [sh, *c]}
        """)
    line = _refused(tmp_path, root, "images", "ls", timeout=60)
    assert line.endswith(f"{recipe}:4:19: field 'images.img.config.cmd': a recursive alias "
                         "(this node contains itself)")


def test_anchors_reused_within_bounds_still_load(tmp_path: Path) -> None:
    """What the repository's spark.yaml does: axis values and config shared by alias."""
    root, _ = _project(tmp_path / "p", _laughs(2) + """\
x-config: &config {env: {A: "1"}, ports: ["4040"]}
matrix:
  m:
    name: "img-{v}"
    axes: {v: {"1": &one {w: "x"}, "2": *one}}
    image: {layers: [base], config: {<<: *config, cmd: [sh]}}
""")
    r = run_cli("images", "ls", "--json", store=tmp_path / "s", project=root)
    assert r.rc == 0, r.err
    assert [i["name"] for i in r.json()] == ["img-1", "img-2"]
