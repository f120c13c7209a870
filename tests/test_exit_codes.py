"""The README's exit-code table, driven condition by condition: ordinary conditions end
in one line naming what is wrong and the documented code, never an "internal error",
and nothing is left half-written."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociforge import errors

from conftest import (
    big_project,
    cli_cmd,
    make_hello_project,
    run_cli,
    store_is_empty,
    wait_for_layer_write,
    write,
)

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_codes() -> dict[int, str]:
    text = README.read_text()
    table = text[text.index("| exit code |"):]
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", table, re.M)
    return {int(code): meaning.strip() for code, meaning in rows}


def test_readme_lists_every_exit_code_ociforge_uses() -> None:
    used = {cls.exit_code for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, errors.OciforgeError)}
    documented = _readme_codes()
    assert used | {0, 2, 9, 10, 130, 143} == set(documented), documented
    assert "interrupted" in documented[130] and "SIGTERM" in documented[143]


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    return make_hello_project(root)


def _fails(r: object, code: int, *fragments: str) -> None:
    rc, err = r.rc, r.err  # type: ignore[attr-defined]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("ociforge: error: "), err
    assert "internal error" not in err and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("value", ["abc", "-5", "99999999999999"])
def test_bad_source_date_epoch_is_a_usage_error(tmp_path: Path, hello: Path, value: str) -> None:
    r = run_cli("assemble", "hello", store=tmp_path / "s", project=hello,
                env={"SOURCE_DATE_EPOCH": value})
    _fails(r, 2, "SOURCE_DATE_EPOCH must be an integer from 0 to 253402300799")
    assert store_is_empty(tmp_path / "s")


def test_recipe_not_utf8_names_the_file(tmp_path: Path, hello: Path) -> None:
    bad = hello / "recipes" / "latin1.yaml"
    bad.write_bytes(b"images:\n  x: {layers: [hello], description: \"caf\xe9\"}\n")
    r = run_cli("assemble", "hello", store=tmp_path / "s", project=hello)
    _fails(r, 3, f"{bad}:2: not UTF-8 (byte 0xe9)")


def test_missing_local_archive_is_a_recipe_error(tmp_path: Path, hello: Path) -> None:
    layer = hello / "layers" / "busybox.yaml"
    layer.write_text(layer.read_text().replace("url: busybox-static.deb", "url: gone.deb"))
    r = run_cli("assemble", "hello", store=tmp_path / "s", project=hello)
    _fails(r, 3, "archive gone.deb does not exist")
    assert store_is_empty(tmp_path / "s")


def test_unknown_names_get_the_nearest_ones(tmp_path: Path, hello: Path) -> None:
    store = tmp_path / "s"
    assert run_cli("assemble", "hello", store=store, project=hello).rc == 0
    for args in (["inspect", "helo"], ["sbom", "helo"], ["push", "helo", "--to",
                                                          "127.0.0.1:9/x"]):
        _fails(run_cli(*args, store=store, project=hello), 1,
               "image 'helo' is not in the store (did you mean 'hello'?)")
    _fails(run_cli("assemble", "helo", store=store, project=hello), 3,
           "unknown image 'helo' (did you mean 'hello'?)")


def test_unreachable_registry_is_one_plain_line(tmp_path: Path, hello: Path) -> None:
    store = tmp_path / "s"
    assert run_cli("assemble", "hello", store=store, project=hello).rc == 0
    r = run_cli("push", "hello", "--to", "127.0.0.1:9/x", "--retries", "0", store=store)
    _fails(r, 6, "127.0.0.1:9", "connection refused")
    assert "HTTPConnectionPool" not in r.err and "urllib3" not in r.err


# -- the machine's conditions: full and read-only file systems (real tmpfs mounts) -------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: an archive of the hello image (about 1 MB) cannot fit."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"mounting a tmpfs needs root (the suite runs as root): {r.stderr}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_one_line_and_leaves_no_partial_archive(tmp_path: Path, hello: Path,
                                                              tiny_fs: Path) -> None:
    out = tiny_fs / "hello.tar"
    r = run_cli("assemble", "hello", "--archive", out, store=tmp_path / "s", project=hello)
    _fails(r, 1, "No space left on device")
    assert list(tiny_fs.iterdir()) == []


def test_read_only_output_is_one_line(tmp_path: Path, hello: Path, tiny_fs: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    r = run_cli("assemble", "hello", "--oci-layout", tiny_fs / "layout",
                store=tmp_path / "s", project=hello)
    _fails(r, 1, "Read-only file system")


# -- signals ------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_cleans_up_and_exits_143(tmp_path: Path) -> None:
    """Like Ctrl-C: the half-written blob and the staging directory are removed."""
    proj = big_project(tmp_path / "p", mb=300)
    store = tmp_path / "s"
    proc = subprocess.Popen(cli_cmd(store, proj, "assemble", "big"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tmp_dir = store / "ociforge" / "tmp"
    wait_for_layer_write(tmp_dir, 4 << 20)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip() == "ociforge: terminated"
    assert list(tmp_dir.iterdir()) == []
    assert store_is_empty(store)


def test_unsafe_and_bad_archives_are_integrity_errors(tmp_path: Path, hello: Path) -> None:
    """A `.deb` that is not one (right pin, wrong content) is exit 4 naming it."""
    fake = hello / "fake.deb"
    fake.write_bytes(b"!<arch>\nthis is not a debian package\n")
    write(hello / "layers" / "fake.yaml", f"""\
        source:
          kind: archive
          url: fake.deb
          sha256: {__import__('hashlib').sha256(fake.read_bytes()).hexdigest()}
        """)
    write(hello / "recipes" / "fake.yaml", "images:\n  fake: {layers: [fake]}\n")
    r = run_cli("assemble", "fake", store=tmp_path / "s", project=hello)
    _fails(r, 4, "fake.deb")
    assert store_is_empty(tmp_path / "s")


def test_outdated_exits_10_when_a_pin_has_a_newer_release(tmp_path: Path) -> None:
    """10 is not an error: the report goes to stdout, stderr stays empty, so CI can
    schedule a rebuild on it; 0 once the pin is the newest."""
    from httpserver import serve

    proj = tmp_path / "proj"
    write(proj / "recipes" / "r.yaml", f"""\
        layers:
          dist: {{source: {{kind: pypi, package: tool, version: 1.0.0,
                            filename: tool-1.0.0.tar.gz, sha256: "{'0' * 64}"}}}}
        images:
          app: {{layers: [dist]}}
        """)
    write(tmp_path / "pypi" / "simple" / "tool" / "index.html",
          '<a href="tool-1.0.0.tar.gz">tool-1.0.0.tar.gz</a>\n'
          '<a href="tool-1.0.1.tar.gz">tool-1.0.1.tar.gz</a>\n')
    with serve(tmp_path / "pypi") as url:
        env = {"OCIFORGE_INDEX_URL": f"{url}/simple"}
        r = run_cli("outdated", store=tmp_path / "s", project=proj, env=env)
        assert r.rc == 10 and r.err == "" and "tool 1.0" in r.out and "1.0.1" in r.out
        layer = proj / "recipes" / "r.yaml"
        layer.write_text(layer.read_text().replace("1.0.0", "1.0.1"))
        r = run_cli("outdated", store=tmp_path / "s", project=proj, env=env)
        assert r.rc == 0 and "0 outdated" in r.out, r.out + r.err
