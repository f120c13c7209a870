"""Pushing through a fault-injecting proxy: connection resets in the middle of a large
upload, 500s and 429s with Retry-After. The push completes with the right digest and
re-sends little (resume, not restart); a push killed with SIGKILL and run again does
not send the blobs that had completed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import need_tool, run_cli
from fault_proxy import FaultProxy, Faults
from registry_images import assemble, blob_sizes, manifest_digest, random_layers_project
from registry_server import Registry

pytestmark = pytest.mark.slow

MiB = 1 << 20
BIG = 96 * MiB


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`big`: one 96 MiB layer of random bytes; `multi`: four 6 MiB layers."""
    base = tmp_path_factory.mktemp("fault-images")
    project = random_layers_project(base / "proj", "big", [BIG], seed=1)
    random_layers_project(project, "multi", [6 * MiB] * 4, seed=2)
    assemble(project, base / "store", "big", "multi", compression="none")
    return base / "store"


@pytest.fixture
def proxies() -> Iterator[list[FaultProxy]]:
    started: list[FaultProxy] = []
    yield started
    for p in started:
        p.stop()


def proxy(proxies: list[FaultProxy], registry: Registry, faults: Faults) -> FaultProxy:
    p = FaultProxy(registry.port, faults).start()
    proxies.append(p)
    return p


def registry_digest(registry: Registry, ref: str) -> str:
    need_tool("skopeo")
    p = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return str(json.loads(p.stdout)["Digest"])


def test_resets_500s_and_429s_resume_not_restart(registry: Registry, store: Path,
                                                 proxies: list[FaultProxy],
                                                 tmp_path: Path) -> None:
    faults = Faults(reset_at=[30 * MiB, 70 * MiB], error_rate=0.05, throttle_rate=0.05,
                    seed=2, retry_after=1)
    p = proxy(proxies, registry, faults)
    # One job: requests come in a fixed order, so the seeded faults land the same way
    # on every run.
    r = run_cli("push", "big", "--to", f"{p.host}/faults/big:v1", "--chunk-size", "4M",
                "--jobs", "1", "--json", store=store)
    assert r.rc == 0, r.err
    report = r.json()
    sizes = blob_sizes(store, "big")
    layer = max(sizes, key=lambda d: sizes[d])
    # Every fault kind really happened.
    assert sum(1 for e in p.log if e.status == 0 and e.injected) == 2
    assert sum(1 for e in p.log if e.status == 500 and e.injected) >= 1
    assert sum(1 for e in p.log if e.status == 429 and e.injected) >= 1
    assert report["resumed"] >= 2 and report["restarted"] == 0
    # Bytes the proxy received for the layer, dropped ones included: < 1.3x its size.
    sent = p.bytes_for(layer)
    ratio = sent / sizes[layer]
    print(f"\nlayer {sizes[layer]} B, proxy received {sent} B for it: {ratio:.3f}x; "
          f"all uploads {p.upload_bytes / sum(sizes.values()):.3f}x")
    assert sent >= sizes[layer], "the proxy saw less than the whole layer"
    assert ratio < 1.3, f"{ratio:.3f}x the layer went over the wire: retries restarted"
    assert p.upload_bytes < 1.3 * sum(sizes.values())
    # The client's own count also includes what sat in socket buffers when the
    # connection dropped; it too stays under the bound.
    assert p.upload_bytes <= report["bytes_sent"] < 1.3 * sum(sizes.values())
    # Retry-After was honoured: the same URL came back no sooner than it said.
    for i, e in enumerate(p.log):
        if e.status == 429:
            path = urlsplit(e.path).path
            later = next(x for x in p.log[i + 1:] if urlsplit(x.path).path == path)
            assert later.t - e.t >= 0.9 * faults.retry_after, (e, later)
    # The registry holds the right image, and the layer reads back byte for byte.
    digest = manifest_digest(store, "big")
    assert registry_digest(registry, f"{registry.host}/faults/big:v1") == digest
    back = run_cli("pull", f"{registry.host}/faults/big:v1", "--json", store=tmp_path / "s")
    assert back.rc == 0, back.err
    assert back.json()["digest"] == digest and back.json()["blobs"]["fetched"] == 2


def test_registry_that_drops_broken_uploads_gets_a_new_session(
        registry: Registry, store: Path, proxies: list[FaultProxy]) -> None:
    """distribution 2.x discards an upload once a PATCH broke off half-way (the partial
    bytes land and no longer match its state): the client must notice and start over."""
    p = proxy(proxies, registry, Faults(reset_at=[20 * MiB], stream_uploads=True))
    r = run_cli("push", "big", "--to", f"{p.host}/faults/streamed:v1", "--chunk-size", "8M",
                "--json", store=store)
    assert r.rc == 0, r.err
    assert r.json()["restarted"] == 1
    sizes = blob_sizes(store, "big")
    # What was lost is what had been sent before the drop, no more (the attached SBOM
    # goes through the proxy too).
    sbom = sum(a.get("bytes_sent", 0) for a in r.json()["attached"])
    assert p.upload_bytes <= sum(sizes.values()) + 20 * MiB + sbom
    assert registry_digest(registry, f"{registry.host}/faults/streamed:v1") == \
        manifest_digest(store, "big")


def test_streamed_upload_that_drops_goes_on_in_chunks(
        registry: Registry, store: Path, proxies: list[FaultProxy]) -> None:
    """By default a large blob goes as one streamed request; when it breaks off, the
    push asks the registry what it holds and sends the rest in chunks, so a second drop
    costs one chunk, not the blob again."""
    p = proxy(proxies, registry, Faults(reset_at=[30 * MiB, 70 * MiB]))
    r = run_cli("push", "big", "--to", f"{p.host}/faults/whole:v1", "--no-sbom", "--json",
                store=store)
    assert r.rc == 0, r.err
    sizes = blob_sizes(store, "big")
    layer = max(sizes, key=lambda d: sizes[d])
    assert sum(1 for e in p.log if e.status == 0 and e.injected) == 2
    assert r.json()["resumed"] >= 2
    # The first drop loses the streamed part (30 MiB); the second, inside a 64 MiB chunk,
    # loses less than a chunk.
    assert p.bytes_for(layer) < sizes[layer] + 30 * MiB + 64 * MiB
    assert registry_digest(registry, f"{registry.host}/faults/whole:v1") == \
        manifest_digest(store, "big")


def test_sigkill_then_rerun_skips_completed_blobs(registry: Registry, store: Path,
                                                  proxies: list[FaultProxy]) -> None:
    p = proxy(proxies, registry, Faults(stall_after_uploads=2))
    cmd = [sys.executable, "-m", "ociforge.cli", "--store", str(store), "push", "multi",
           "--to", f"{p.host}/faults/multi:v1", "--jobs", "1", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert p.stalled.wait(60), "the push never got two blobs in"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = set(p.digest_of_upload.values())
    assert len(done) == 2
    sizes = blob_sizes(store, "multi")
    r = run_cli("push", "multi", "--to", f"{registry.host}/faults/multi:v1", "--json",
                store=store)
    assert r.rc == 0, r.err
    report = r.json()
    assert report["blobs"] == {"pushed": len(sizes) - 2, "present": 2, "mounted": 0}
    assert report["bytes_sent"] == sum(s for d, s in sizes.items() if d not in done)
    assert registry_digest(registry, f"{registry.host}/faults/multi:v1") == \
        manifest_digest(store, "multi")
