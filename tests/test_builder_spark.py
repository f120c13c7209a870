"""docker/spark-builder and the spark-dist-built-* layers.

Spark cannot be compiled here (Maven Central and GitHub are unreachable), so the
Dockerfile is checked statically: it parses, its stages, build args and Maven
profiles are exactly as specified, every RUN step is valid POSIX shell, the pinned
extras are pinned. Then the real Dockerfile and the real layer definition are run
with real buildah against stand-in tools (a fake javac, git, curl and
make-distribution.sh in an ociforge-made busybox base), which exercises everything
but the compiler: the args reaching the steps, the Maven mirror settings, patches,
the scratch output stage, the path mapping and the expected-paths check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ociforge.recipes import Project
from ociforge.sources import BuilderSource

from conftest import make_hello_project, need_tool, run_cli, write

REPO = Path(__file__).resolve().parent.parent
BUILDER = REPO / "docker" / "spark-builder"
VERSIONS = ["3.5.7", "3.5.8", "4.1.0", "4.1.1"]
PROFILES = ["-Pconnect", "-Pkubernetes", "-Phadoop-3", "-Phadoop-cloud", "-Phive"]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self) -> dict[str, str]:
        out = {}
        for op, rest in self.instructions:
            if op == "ARG":
                name, _, default = rest.partition("=")
                out[name] = default.strip('"')
        return out


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARGs, stages) of a Dockerfile: comments dropped, continuations joined."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + "\n"
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for entry in logical:
        op, _, rest = entry.strip().partition(" ")
        op = op.upper()
        assert op in {"FROM", "ARG", "RUN", "COPY", "WORKDIR", "USER", "ENV"}, entry
        if op == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            assert m, entry
            stages.append(Stage(m.group(1), m.group(2)))
        elif not stages:
            assert op == "ARG", f"only ARG may come before the first FROM: {entry}"
            name, _, default = rest.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((op, rest.strip()))
    return global_args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile((BUILDER / "Dockerfile").read_text())


def test_stages(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    global_args, stages = dockerfile
    assert [(s.base, s.name) for s in stages] == [("${BUILDER_IMAGE}", "builder"),
                                                  ("scratch", "dist")]
    assert "temurin" in global_args["BUILDER_IMAGE"] and "17" in global_args["BUILDER_IMAGE"]
    # The final stage holds only the distribution.
    assert stages[1].instructions == [("COPY", "--from=builder /build/spark/dist/ /")]


def test_build_args(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    args = dockerfile[1][0].args()
    assert args["SPARK_VERSION"] == "4.1.1"
    assert args["MAVEN_MIRROR"] == "https://repo.maven.apache.org/maven2"
    assert "-Xmx" in args["MAVEN_OPTS"] and "-Xss64m" in args["MAVEN_OPTS"]
    assert args["SPARK_GIT_URL"] == "https://github.com/apache/spark.git"
    assert re.fullmatch(r"3\.9\.\d+", args["MAVEN_VERSION"])
    assert args["EXTRA_JARS"] == args["EXTRA_PYTHON"] == "false"


def test_make_distribution_profiles(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    runs = [rest for op, rest in dockerfile[1][0].instructions if op == "RUN"]
    (build,) = [r for r in runs if "make-distribution.sh" in r]
    words = build.split()
    assert [w for w in words if w.startswith("-P")] == PROFILES
    assert words[words.index("--name") + 1] == "custom"
    assert words[words.index("--mvn") + 1] == "/opt/maven/bin/mvn"
    (maven,) = [r for r in runs if "settings.xml" in r]
    assert "<mirrorOf>*</mirrorOf>" in maven and '"$MAVEN_MIRROR" > /root/.m2/settings.xml' in maven
    assert "${MAVEN_MIRROR%/}/org/apache/maven/apache-maven/${MAVEN_VERSION}/" in maven
    (clone,) = [r for r in runs if "git clone" in r]
    assert '--branch "v${SPARK_VERSION}" "$SPARK_GIT_URL"' in clone
    assert "javac 17." in runs[0]  # the JDK is checked, not assumed


def test_run_steps_are_posix_shell(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    """buildah ignores SHELL in OCI-format builds: every RUN is run by /bin/sh (dash on
    Debian), so each must be valid POSIX shell."""
    sh = shutil.which("dash") or "/bin/sh"
    for op, rest in dockerfile[1][0].instructions:
        if op == "RUN":
            p = subprocess.run([sh, "-n", "-c", rest], capture_output=True, text=True)
            assert p.returncode == 0, f"{p.stderr}\n{rest}"


def test_pinned_extras() -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.parse(BUILDER / "deps" / "pom.xml").getroot()
    profiles = {p.findtext("m:id", namespaces=ns): p for p in pom.iterfind(".//m:profile", ns)}
    assert sorted(profiles) == ["spark-3.5", "spark-4.1"]
    for line, profile in profiles.items():
        deps = profile.findall(".//m:dependency", ns)
        assert deps, line
        for dep in deps:
            version = dep.findtext("m:version", namespaces=ns) or ""
            assert re.fullmatch(r"\d+(\.\d+)+", version), (line, version)
        scala = "2.12" if line == "spark-3.5" else "2.13"
        ids = [d.findtext("m:artifactId", namespaces=ns) or "" for d in deps]
        assert all(i.endswith(scala) for i in ids if "_2.1" in i)
    # The Python extras are the very pins (and hashes) of the image's python-deps lock.
    for line in ("3.5", "4.1"):
        lock = (REPO / "layers" / "locks" / f"python-deps-{line}.lock").read_text()
        want = [ln.split("  #")[0] for ln in lock.splitlines() if ln and not ln.startswith("#")]
        req = (BUILDER / "deps" / f"requirements-{line}.txt").read_text()
        got = [ln for ln in req.splitlines() if ln and not ln.startswith("#")]
        assert got == want and all("==" in g and "--hash=sha256:" in g for g in got)


def test_layer_definitions_for_every_version() -> None:
    project = Project.load(REPO)
    assert "spark-builder-base" in project.images
    for v in VERSIONS:
        src = project.layer(f"spark-dist-built-{v}").source
        assert isinstance(src, BuilderSource)
        assert src.context == "docker/spark-builder" and src.build_args == {"SPARK_VERSION": v}
        assert src.base_images == {"BUILDER_IMAGE": "spark-builder-base"}
        assert src.expect == ["jars/", "bin/spark-submit"]
        assert {"MAVEN_MIRROR", "MAVEN_OPTS"} <= set(src.pass_env)
        assert [p.to for p in src.paths] == ["/opt/spark"]
        project.swap_layer(f"spark-dist-{v}", f"spark-dist-built-{v}")
        assert f"spark-dist-built-{v}" in project.resolve(f"spark-{v}").layers


# -- the real Dockerfile, real buildah, stand-in tools ----------------------------------

JAVAC = '#!/bin/sh\necho "javac 17.0.99-stand-in" >&2\n'
CURL = """\
#!/bin/sh
# stand-in curl: `-o FILE URL` writes a fake Maven tarball, `URL.sha1` prints its sha1
out=""; url=""
while [ $# -gt 0 ]; do
  case "$1" in -o) out="$2"; shift ;; -*) ;; *) url="$1" ;; esac; shift
done
case "$url" in
  *.sha1) sha1sum /tmp/maven.tgz | cut -d' ' -f1 ;;
  *) mkdir -p /tmp/fm/apache-maven/bin
     printf '#!/bin/sh\\necho "stand-in mvn $*"\\n' > /tmp/fm/apache-maven/bin/mvn
     chmod 755 /tmp/fm/apache-maven/bin/mvn
     echo "$url" > /tmp/fm/apache-maven/FETCHED-FROM
     tar -czf "$out" -C /tmp/fm apache-maven ;;
esac
"""
GIT = """\
#!/bin/sh
# stand-in git: clone lays out a tiny "Spark source tree", rev-parse answers, apply records
if [ "$1" = clone ]; then
  for a in "$@"; do dest="$a"; done
  mkdir -p "$dest/dev"
  echo "$*" > "$dest/CLONED"
  cp /usr/local/share/stand-in/make-distribution.sh "$dest/dev/"
elif [ "$3" = rev-parse ]; then
  echo 0123456789abcdef0123456789abcdef01234567
elif [ "$3" = apply ]; then
  basename "$4" >> "$2/APPLIED"
fi
"""
MAKE_DISTRIBUTION = """\
#!/bin/sh
# stand-in for dev/make-distribution.sh: the layout of a distribution, and a record of
# how it was called
set -eu
cd "$(dirname "$0")/.."
while [ $# -gt 0 ]; do
  case "$1" in --name) shift ;; --mvn) MVN="$2"; shift ;; *) break ;; esac; shift
done
mkdir -p dist/jars dist/bin dist/examples/jars dist/conf
echo "Build flags: $*" > dist/RELEASE
"$MVN" package -DskipTests "$@" > dist/MVN
echo "$MAVEN_OPTS" > dist/conf/maven-opts
echo "$JAVA_HOME" > dist/conf/java-home
cp /root/.m2/settings.xml dist/conf/maven-settings.xml
cp /opt/maven/FETCHED-FROM CLONED dist/
cp APPLIED dist/ 2>/dev/null || true
echo jar > dist/jars/spark-core_2.13-stand-in.jar
echo jar > dist/examples/jars/spark-examples.jar
printf '#!/bin/sh\\necho spark-submit\\n' > dist/bin/spark-submit
chmod 755 dist/bin/spark-submit
"""
APPLETS = ["sh", "mkdir", "cat", "echo", "tar", "gzip", "sha1sum", "sha512sum", "cut", "rm",
           "printf", "dirname", "basename", "readlink", "chmod", "cp", "ls", "seq", "id"]


def _stand_in_project(root: Path) -> Path:
    """The real docker/spark-builder and layers/spark-dist-built-4.1.1.yaml, with a
    `spark-builder-base` made of busybox and the stand-in tools."""
    root.mkdir(parents=True)
    make_hello_project(root)
    shutil.copytree(BUILDER, root / "docker" / "spark-builder")
    shutil.copy(REPO / "layers" / "spark-dist-built-4.1.1.yaml", root / "layers")
    write(root / "docker" / "spark-builder" / "patches" / "0001-fix.patch", "stand-in\n")
    write(root / "tools" / "javac", JAVAC, 0o755)
    write(root / "tools" / "curl", CURL, 0o755)
    write(root / "tools" / "git", GIT, 0o755)
    write(root / "tools" / "make-distribution.sh", MAKE_DISTRIBUTION, 0o755)
    links = "\n".join(f"    - {{path: /bin/{a}, target: busybox}}" for a in APPLETS)
    write(root / "layers" / "stand-in-tools.yaml", f"""\
source:
  kind: files
  files:
    - {{src: tools/javac, dest: /usr/local/bin/javac}}
    - {{src: tools/curl, dest: /usr/local/bin/curl}}
    - {{src: tools/git, dest: /usr/local/bin/git}}
    - {{src: tools/make-distribution.sh, dest: /usr/local/share/stand-in/make-distribution.sh}}
  dirs:
    - {{path: /tmp, mode: "1777"}}
  symlinks:
{links}
""")
    write(root / "recipes" / "tools.yaml", """\
        images:
          spark-builder-base:
            layers: [busybox, stand-in-tools]
            config: {env: {PATH: "/usr/local/bin:/bin"}}
          spark-built:
            layers: [spark-dist-built-4.1.1]
        """)
    return root


@pytest.mark.slow
def test_spark_builder_flow_with_stand_in_tools(tmp_path: Path) -> None:
    need_tool("buildah")
    if os.geteuid() != 0:
        pytest.fail("the buildah tests run as root (buildah --isolation chroot)")
    proj = _stand_in_project(tmp_path / "proj")
    env = {"OCIFORGE_CACHE": str(tmp_path / "cache"),
           "MAVEN_MIRROR": "https://maven.example/central", "MAVEN_OPTS": "-Xmx3g"}
    r = run_cli("assemble", "spark-built", "--json", store=tmp_path / "s", project=proj,
                env=env)
    assert r.rc == 0, r.err
    layer = r.json()["images"][0]["layers"][0]
    files = {}
    with tarfile.open(tmp_path / "s" / "blobs" / "sha256" / layer["digest"][7:]) as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isfile() else None
            files[m.name] = (m.mode, f.read().decode() if f else "")
    assert files["opt/spark/jars/spark-core_2.13-stand-in.jar"][1] == "jar\n"
    assert files["opt/spark/bin/spark-submit"][0] == 0o755
    assert not [n for n in files if n.startswith("opt/spark/examples")]  # mapped out
    assert files["opt/spark/RELEASE"][1] == f"Build flags: {' '.join(PROFILES)}\n"
    assert files["opt/spark/MVN"][1] == f"stand-in mvn package -DskipTests {' '.join(PROFILES)}\n"
    assert files["opt/spark/CLONED"][1] == (
        "clone --depth 1 --branch v4.1.1 https://github.com/apache/spark.git spark\n")
    assert files["opt/spark/APPLIED"][1] == "0001-fix.patch\n"
    # pass_env args reach the build: Maven itself and every artifact via the mirror.
    assert files["opt/spark/FETCHED-FROM"][1] == ("https://maven.example/central/org/apache/"
                                                  "maven/apache-maven/3.9.11/"
                                                  "apache-maven-3.9.11-bin.tar.gz\n")
    assert "<url>https://maven.example/central</url>" in files[
        "opt/spark/conf/maven-settings.xml"][1]
    assert files["opt/spark/conf/maven-opts"][1] == "-Xmx3g\n"
    assert files["opt/spark/conf/java-home"][1] == "/usr/local\n"
    # A different mirror is the same layer: no rebuild.
    r = run_cli("assemble", "spark-built", "--json", store=tmp_path / "s", project=proj,
                env={**env, "MAVEN_MIRROR": "https://other.example/maven2", "PATH": "/nowhere"})
    assert r.rc == 0, r.err
    assert r.json()["layers"]["built"] == []
