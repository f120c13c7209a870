"""The real add-on jars for the tests: a Maven repository under the test cache.

scripts/prebuild-spark.sh (the one networked step) fills `TEST_CACHE/m2` with Maven
itself from Maven Central: every jar the project's maven locks pin, the extra jars
tests below name, and what the seeds' deps/pom.xml files resolve to. It is a Maven
local repository, so it has Maven's layout and `.sha1` files: tests serve it on
127.0.0.1 as the repository for `ociforge lock`/`assemble` (`serve(M2)`) and run
`mvn -o` against it.

    python3 tests/maven_cache.py layers   # the project's maven layers (for layers build)
    python3 tests/maven_cache.py pom      # a POM whose dependency:copy fetches them
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ociforge.recipes import Project
from ociforge.sources.maven import Coordinate, MavenSource

from conftest import TEST_CACHE

PROJECT = Path(__file__).resolve().parent.parent

M2 = TEST_CACHE / "m2"
# Real artifacts no layer pins that tests need: iceberg-aws-bundle, added beside the
# AWS SDK v2 modules of s3a-4.1, is the duplicate-class clash the check must catch.
EXTRA = ["org.apache.iceberg:iceberg-aws-bundle:1.11.0"]


def maven_layers(project: Path = PROJECT) -> list[str]:
    p = Project.load(project)
    return [n for n in p.layers if any(isinstance(s, MavenSource)
                                       for s in p.layer(n).all_sources())]


def pinned(project: Path = PROJECT) -> list[str]:
    """Every coordinate the project's maven layers list, each once."""
    p = Project.load(project)
    out: list[str] = []
    for name in maven_layers(project):
        for src in p.layer(name).all_sources():
            if isinstance(src, MavenSource):
                out += [str(c) for c in src.coordinates() if str(c) not in out]
    return out


def pom(coords: list[str]) -> str:
    """A POM whose `mvn dependency:copy` fetches exactly `coords` into the local
    repository: artifact items, with maven-dependency-plugin 2.8, which does not read
    their POMs (3.x does), so a jar whose parent POM Central lacks, like
    rapids-4-spark_2.12:25.04.0's, is still fetched."""
    items = []
    for text in coords:
        c = Coordinate.parse(text)
        extra = f"<classifier>{c.classifier}</classifier>" if c.classifier else ""
        items.append(f"          <artifactItem><groupId>{c.group}</groupId><artifactId>"
                     f"{c.artifact}</artifactId><version>{c.version}</version>"
                     f"<type>{c.ext}</type>{extra}</artifactItem>")
    return ("<project xmlns=\"http://maven.apache.org/POM/4.0.0\">\n"
            "  <modelVersion>4.0.0</modelVersion>\n"
            "  <groupId>ociforge.test</groupId><artifactId>maven-cache</artifactId>"
            "<version>1</version>\n"
            "  <build><plugins><plugin>\n"
            "    <groupId>org.apache.maven.plugins</groupId>"
            "<artifactId>maven-dependency-plugin</artifactId><version>2.8</version>\n"
            "    <executions><execution><id>default-cli</id><configuration>\n"
            "      <outputDirectory>${project.build.directory}/jars</outputDirectory>\n"
            "      <artifactItems>\n" + "\n".join(items) + "\n      </artifactItems>\n"
            "    </configuration></execution></executions>\n"
            "  </plugin></plugins></build>\n</project>\n")


def jar(coord: str) -> Path:
    """A real jar from the test cache's Maven repository (prebuild-spark.sh fills it)."""
    path = M2 / Coordinate.parse(coord).path
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/prebuild-spark.sh first (it fills "
                    f"{M2} from Maven Central)")
    return path


def need_m2() -> Path:
    for coord in pinned():
        jar(coord)
    return M2


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "layers":
        print(" ".join(maven_layers()))
    elif what == "pom":
        print(pom(pinned() + EXTRA), end="")
    else:
        sys.exit("usage: maven_cache.py layers|pom")
