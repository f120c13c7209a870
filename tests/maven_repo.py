"""A Maven-layout repository of stand-in jars, for tests that need an artifact Maven
Central would never serve: a wrong checksum file, none at all, a republished version,
a repository behind credentials, a busy or unreachable one. The real add-on jars are
in the test cache's Maven repository (tests/maven_cache.py). Stand-ins carry the real
coordinates and loadable class files under the class names the checks look for (an
empty public class: enough for `Class.forName`, nothing more)."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
from pathlib import Path

from ociforge.sources.maven import Coordinate

# Classes that a check loads or that show a clash, per artifact (group:artifact).
CLASSES = {
    "org.apache.hadoop:hadoop-aws": ["org/apache/hadoop/fs/s3a/S3AFileSystem"],
    "software.amazon.awssdk:bundle": ["software/amazon/awssdk/core/SdkBytes",
                                      "software/amazon/awssdk/services/s3/S3Client"],
    "com.amazonaws:aws-java-sdk-bundle": ["com/amazonaws/services/s3/AmazonS3Client"],
    "software.amazon.s3.analyticsaccelerator:analyticsaccelerator-s3":
        ["software/amazon/s3/analyticsaccelerator/S3SeekableInputStream"],
    "org.apache.celeborn:celeborn-client-spark-3-shaded_2.12":
        ["org/apache/spark/shuffle/celeborn/SparkShuffleManager"],
    "org.apache.celeborn:celeborn-client-spark-4-shaded_2.13":
        ["org/apache/spark/shuffle/celeborn/SparkShuffleManager"],
    "org.apache.spark:spark-connect_2.12":
        ["org/apache/spark/sql/connect/service/SparkConnectServer"],
    "org.apache.iceberg:iceberg-spark-runtime-3.5_2.12": ["org/apache/iceberg/spark/SparkCatalog"],
    "org.apache.iceberg:iceberg-spark-runtime-4.1_2.13": ["org/apache/iceberg/spark/SparkCatalog"],
    # Like the real one: unrelocated AWS SDK v2 classes.
    "org.apache.iceberg:iceberg-aws-bundle": ["software/amazon/awssdk/core/SdkBytes"],
    "com.nvidia:rapids-4-spark_2.12": ["com/nvidia/spark/SQLPlugin"],
    "com.nvidia:rapids-4-spark_2.13": ["com/nvidia/spark/SQLPlugin"],
}
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def class_file(name: str) -> bytes:
    """A minimal valid Java 8 class file: `public class NAME extends Object {}`."""
    def utf8(s: str) -> bytes:
        data = s.encode()
        return b"\x01" + struct.pack(">H", len(data)) + data

    pool = utf8(name) + b"\x07\x00\x01" + utf8("java/lang/Object") + b"\x07\x00\x03"
    return (b"\xca\xfe\xba\xbe" + struct.pack(">HHH", 0, 52, 5) + pool
            + struct.pack(">HHHHHHH", 0x21, 2, 4, 0, 0, 0, 0))


def make_jar(coord: str, salt: str = "", classes: list[str] | None = None) -> bytes:
    """A small deterministic jar whose bytes depend on the coordinate (and `salt`)."""
    c = Coordinate.parse(coord)
    names = classes if classes is not None else CLASSES.get(f"{c.group}:{c.artifact}", [])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        def add(path: str, data: bytes) -> None:
            zf.writestr(zipfile.ZipInfo(path, ZIP_DATE), data)
        add("META-INF/MANIFEST.MF", f"Manifest-Version: 1.0\nX-Stand-In-For: {coord}{salt}\n"
            .encode())
        for name in names or ["ociforge/test/Stub"]:
            add(f"{name}.class", class_file(name))
    return buf.getvalue()


def publish(repo: Path, coord: str, data: bytes | None = None,
            checksums: tuple[str, ...] = ("sha1",), style: str = "bare",
            wrong: str | None = None) -> bytes:
    """Put a jar and its checksum files where a Maven repository keeps them."""
    c = Coordinate.parse(coord)
    data = make_jar(coord) if data is None else data
    path = repo / c.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    for algo in checksums:
        digest = hashlib.new(algo, data if algo != wrong else data + b"!").hexdigest()
        text = {"bare": digest, "named": f"{digest}  {c.filename}\n",
                "upper": digest.upper() + "\n"}[style]
        (repo / f"{c.path}.{algo}").write_text(text)
    return data


ACCEL = "org.example:accel:1.0"  # a stand-in with a linux/arm64 classifier
ACCEL_ARM64 = "org.example:accel:1.0:native-arm64"


def classified_layer(repo: Path, project: Path) -> dict[str, bytes]:
    """Layer `accel` of `project`: a Maven layer with `classifiers: {linux/arm64: …}`
    (its bytes differ per platform), its plain and arm64 jars published in `repo`.
    Returns each coordinate's jar."""
    jars = {c: publish(repo, c) for c in (ACCEL, ACCEL_ARM64)}
    path = project / "layers" / "accel.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("source:\n  kind: maven\n  lock: layers/locks/accel.lock\n"
                    f"  artifacts: [{ACCEL}]\n  classifiers: {{linux/arm64: native-arm64}}\n")
    return jars
