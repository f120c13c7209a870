"""An S3-compatible object store on 127.0.0.1 for the workload tests: versitygw
(Apache-2.0, an S3 gateway over a directory), built at a pinned release from the Go
module proxy by scripts/build-go-tools.sh into the test cache. Path-style, access
keys as S3A reads them (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).

The small client here (SigV4 over urllib) creates buckets and reads back what the
jobs in the images wrote, independently of Spark's S3A.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import TEST_CACHE
from registry_server import stop_process

VERSITYGW = TEST_CACHE / "go" / "bin" / "versitygw"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


@dataclass
class S3Server:
    endpoint: str                      # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    root: Path                         # the directory versitygw serves
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        """What `ociforge test` needs for the S3 workload check sets."""
        return {"OCIFORGE_S3_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": REGION}

    def request(self, method: str, path: str, query: dict[str, str] | None = None,
                body: bytes = b"") -> tuple[int, bytes]:
        """One SigV4-signed request, path-style (`/bucket/key`)."""
        host = urllib.parse.urlsplit(self.endpoint).netloc
        now = datetime.datetime.now(datetime.UTC)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        quoted = urllib.parse.quote(path, safe="/-_.~")
        qs = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                      for k, v in sorted((query or {}).items()))
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, quoted, qs,
                               "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                               signed, payload])
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = _sign(_sign(_sign(_sign(f"AWS4{self.secret_key}".encode(), day), REGION),
                          "s3"), "aws4_request")
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        req = urllib.request.Request(f"{self.endpoint}{quoted}" + (f"?{qs}" if qs else ""),
                                     data=body if method in ("PUT", "POST") else None,
                                     method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def create_bucket(self, bucket: str) -> None:
        status, body = self.request("PUT", f"/{bucket}")
        assert status == 200 or b"BucketAlreadyOwnedByYou" in body, (status, body)

    def put(self, bucket: str, key: str, data: bytes = b"") -> None:
        status, body = self.request("PUT", f"/{bucket}/{key}", body=data)
        assert status == 200, (status, body)

    def get(self, bucket: str, key: str) -> bytes:
        status, body = self.request("GET", f"/{bucket}/{key}")
        assert status == 200, (status, body)
        return body

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under the prefix (ListObjectsV2, all pages)."""
        out: list[str] = []
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, body = self.request("GET", f"/{bucket}", query)
            assert status == 200, (status, body)
            text = body.decode()
            out += re.findall(r"<Key>([^<]*)</Key>", text)
            m = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", text)
            if not m:
                return out
            token = m.group(1)

    def pending_uploads(self, bucket: str) -> list[str]:
        """Keys of multipart uploads begun and never completed or aborted."""
        status, body = self.request("GET", f"/{bucket}", {"uploads": ""})
        assert status == 200, (status, body)
        return re.findall(r"<Key>([^<]*)</Key>", body.decode())

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


def start_s3_server(root: Path, timeout: float = 30) -> S3Server:
    """versitygw's posix backend on a free 127.0.0.1 port, random access keys."""
    if not VERSITYGW.exists():
        pytest.fail(f"{VERSITYGW} is missing: run scripts/install-test-deps.sh (it builds "
                    "versitygw from the Go module proxy)")
    data = root / "data"
    data.mkdir(parents=True)
    port = _free_port()
    server = S3Server(f"http://127.0.0.1:{port}", f"ocf{secrets.token_hex(6)}",
                      secrets.token_urlsafe(24), data)
    log = open(root / "versitygw.log", "wb")  # noqa: SIM115 (the server's lifetime)
    server.proc = subprocess.Popen(
        [str(VERSITYGW), "--port", f"127.0.0.1:{port}", "--region", REGION, "--quiet",
         "posix", str(data)], stdout=log, stderr=subprocess.STDOUT,
        env={"ROOT_ACCESS_KEY_ID": server.access_key,
             "ROOT_SECRET_ACCESS_KEY": server.secret_key, "PATH": "/usr/bin:/bin"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        try:
            status, _ = server.request("GET", "/")
            if status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"versitygw did not start: {(root / 'versitygw.log').read_text()[-1500:]}")
