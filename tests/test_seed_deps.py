"""The seeds' dependency list (shared/seeds/000_*: a deps/pom.xml with spark-connect,
the Celeborn client and hadoop-aws, resolved with `mvn dependency:copy-dependencies`),
resolved by real Maven, offline, from the test cache's repository, against the jars
ociforge's locks place for the same features. Every difference is one docs/maven.md
explains ("ociforge against `mvn dependency:copy-dependencies`")."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from maven_cache import M2, jar
from project_copy import PROJECT

from ociforge.recipes import Project
from ociforge.sources.maven import MavenSource, read_lock

SEEDS = PROJECT / "tests" / "data" / "seed-deps"
# The seeds' features for each image: what their deps/pom.xml adds to Spark.
FEATURES = {"spark-3.5.8": ["connect", "celeborn", "s3a"], "spark-4.1.1": ["s3a"]}


def maven_copy(image: str, out: Path) -> dict[str, Path]:
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.fail("Maven is not installed: run scripts/install-test-deps.sh")
    p = subprocess.run([mvn, "-o", "-q", "-B", f"-Dmaven.repo.local={M2}", "-f",
                        str(SEEDS / image / "pom.xml"), "dependency:copy-dependencies",
                        f"-DoutputDirectory={out}"], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.fail(f"mvn -o failed (scripts/prebuild-spark.sh fills {M2}): "
                    f"{p.stdout[-2000:]}")
    return {f.name: f for f in out.iterdir()}


def ociforge_jars(image: str) -> dict[str, str]:
    """file name -> sha256 of the jars the features' maven layers place (from the locks)."""
    project = Project.load(PROJECT)
    base = project.resolve(image).layers
    derived = project.with_features(image, FEATURES[image]).layers
    out = {}
    for name in derived:
        if name in base:
            continue
        for src in project.layer(name).all_sources():
            if isinstance(src, MavenSource):
                pins = read_lock(PROJECT / src.lock_file)
                out.update({c.filename: pins[str(c)].sha256 for c in src.coordinates()})
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def classes(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as zf:
        return {n for n in zf.namelist() if n.endswith(".class") and
                not n.startswith("META-INF/")}


def scope_in_pom(pom: Path, artifact: str) -> str:
    text = pom.read_text()
    m = re.search(rf"<artifactId>{re.escape(artifact)}</artifactId>\s*<scope>(\w+)</scope>",
                  text)
    return m.group(1) if m else "compile"


@pytest.mark.slow
def test_seed_deps_on_spark_3_5(tmp_path: Path) -> None:
    maven = maven_copy("spark-3.5.8", tmp_path / "mvn")
    ours = ociforge_jars("spark-3.5.8")
    both = set(maven) & set(ours)
    assert both == {"spark-connect_2.12-3.5.7.jar", "celeborn-client-spark-3-shaded_2.12-0.5.4.jar",
                    "hadoop-aws-3.3.4.jar", "aws-java-sdk-bundle-1.12.262.jar"}
    # Maven and the locks agree on the bytes of every jar both place.
    assert {n: sha(maven[n]) for n in both} == {n: ours[n] for n in both}
    # Left out: Spark's placeholder jar (one stub class, org.spark-project.spark:unused)
    # and wildfly-openssl, a runtime-scope option of hadoop-aws used only with
    # fs.s3a.ssl.channel.mode=openssl (the default falls back to the JDK's TLS).
    assert set(maven) - set(ours) == {"unused-1.0.0.jar", "wildfly-openssl-1.0.7.Final.jar"}
    assert classes(maven["unused-1.0.0.jar"]) == {"org/apache/spark/unused/UnusedStubClass.class"}
    aws_pom = jar("org.apache.hadoop:hadoop-aws:3.3.4").with_suffix(".pom")
    assert scope_in_pom(aws_pom, "wildfly-openssl") == "runtime"
    # Added: Spark's cloud committer bindings, which the seeds' list lacked.
    assert set(ours) - set(maven) == {"spark-hadoop-cloud_2.12-3.5.8.jar"}


@pytest.mark.slow
def test_seed_deps_on_spark_4_1(tmp_path: Path) -> None:
    maven = maven_copy("spark-4.1.1", tmp_path / "mvn")
    ours = ociforge_jars("spark-4.1.1")
    both = set(maven) & set(ours)
    assert both == {"hadoop-aws-3.4.2.jar", "analyticsaccelerator-s3-1.2.1.jar"}
    assert {n: sha(maven[n]) for n in both} == {n: ours[n] for n in both}
    assert set(maven) - set(ours) == {"bundle-2.29.52.jar", "wildfly-openssl-2.1.4.Final.jar"}
    added = set(ours) - set(maven)
    sdk = {n for n in added if n.endswith("-2.29.52.jar")}
    assert added - sdk == {"spark-hadoop-cloud_2.13-4.1.1.jar", "eventstream-1.0.1.jar",
                           "reactive-streams-1.0.4.jar"}
    assert {"s3-2.29.52.jar", "s3-transfer-manager-2.29.52.jar", "sts-2.29.52.jar",
            "apache-client-2.29.52.jar", "netty-nio-client-2.29.52.jar"} <= sdk
    # The SDK modules instead of the bundle: the same SDK release, every class of them
    # in the bundle hadoop-aws 3.4.2 names, at about 2 % of its size (the bundle also
    # relocates Netty and httpclient, which the modules take from Spark's own jars).
    bundle = maven["bundle-2.29.52.jar"]
    in_bundle = classes(bundle)
    module_jars = [p for p in sorted(M2.rglob("*.jar"))
                   if p.name in added - {"spark-hadoop-cloud_2.13-4.1.1.jar"}]
    assert len(module_jars) == len(added) - 1
    for path in module_jars:
        assert classes(path) <= in_bundle, path.name
    size = sum(p.stat().st_size for p in module_jars)
    assert size < bundle.stat().st_size / 40, (size, bundle.stat().st_size)
