"""From an image in the store to its `Inventory`: manifest → layers → layer records
→ each source's provenance, plus what only the layer tar can tell (jars inside a
distribution, checksums of repository files).

Nothing is scanned that a record already states: Debian packages, wheels, Maven
artifacts and downloaded archives come from the provenance written when the layer
was built.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..image import StoredImage, StoredLayer
from ..net.redact import redact
from ..records import LayerRecord
from ..store import Store
from ..tartree import source_date_epoch
from .layerscan import Want, scan_layer
from .model import Component, FileItem, Inventory
from .purl import deb as deb_purl
from .purl import generic as generic_purl
from .purl import maven as maven_purl
from .purl import pypi as pypi_purl

PYPI_SIMPLE = ("https://pypi.org/simple", "https://pypi.org/simple/")
# Source kinds whose layers hold whole archives: their jars are listed from the tar.
OPAQUE_KINDS = frozenset({"archive", "pypi", "builder"})
_DEB_FILE = re.compile(r"^([a-z0-9][a-z0-9+.-]+)_([^_]+)_([a-z0-9-]+)\.deb$")
# The last `-<digit>` starts the version: `log4j-1.2-api-2.24.3`, `hive-shims-0.23-2.3.10`.
_JAR_NAME = re.compile(r"^(?P<name>.+)-(?P<version>\d[^-]*(?:-.*)?)$")


def collect(store: Store, name: str, platform: str | None = None) -> Inventory:
    """The inventory of the store image `name` (of `platform`, for a multi-platform
    image: the host's by default); raises if it is not in the store."""
    return collect_image(store, store.image(name, platform))


def collect_image(store: Store, img: StoredImage, name: str | None = None) -> Inventory:
    """The inventory of `img`, wherever its blobs are (the store, an archive, a
    layout): its layers' records come from `store`, which also caches layer scans."""
    name = name or img.name
    inv = Inventory(
        name=name, reference=img.reference, manifest_digest=img.descriptor.digest,
        manifest_media_type=img.descriptor.media_type, os=img.os,
        architecture=img.architecture,
        created=str(img.config.get("created") or _default_created()))
    for layer in img.layers:
        if layer.record is None:
            inv.unknown_layers.append(layer.diff_id)
            continue
        _add_layer(store, inv, layer, layer.record)
    return inv


def _default_created() -> str:
    """The creation time of an image whose config has none (imported here, since
    `assemble` pulls in the recipe models, which a push's SBOM does not need)."""
    from ..assemble import rfc3339

    return rfc3339(source_date_epoch())


def scan_want(rec: LayerRecord) -> Want | None:
    """What an SBOM reads from this layer's tar (None: the record says it all)."""
    kinds = rec.source_kind.split("+")
    want = Want(jars=bool(OPAQUE_KINDS & set(kinds)), files="files" in kinds)
    return want if want.jars or want.files else None


def _add_layer(store: Store, inv: Inventory, stored: StoredLayer, rec: LayerRecord) -> None:
    layer = rec.name
    containers: list[str] = []
    files_prov: list[dict[str, Any]] = []
    for kind, prov in rec.sources():
        handler = _HANDLERS.get(kind)
        if kind == "files":
            files_prov += prov.get("files", [])
        if handler is None:
            continue
        found = handler(store, stored, prov, layer)
        inv.components += found
        if kind in OPAQUE_KINDS and found:
            containers.append(found[0].key)
    want = scan_want(rec)
    if want is None:
        return
    scan = scan_layer(store, stored, want)
    parent = containers[0] if len(containers) == 1 else None
    inv.components += [_jar(j, layer, parent) for j in scan["jars"]] if want.jars else []
    if want.files and scan["files"]:
        # The layer's repository files as one package (SPDX wants files in a package
        # whose files were analysed, with a verification code over them).
        group = Component("files", layer, None, None, layer, purpose="SOURCE",
                          comment="files from the ociforge project repository")
        inv.components.append(group)
        inv.files += [FileItem(f["path"], f["sha1"], f["sha256"], layer,
                               _origin(f["path"], files_prov), group.key)
                      for f in scan["files"]]


# -- one function per source kind ------------------------------------------------------


def _debian(store: Store, stored: StoredLayer, prov: dict[str, Any],
            layer: str) -> list[Component]:
    packages = prov.get("packages") or []
    if not packages or any(not p.get("architecture") or not p.get("source")
                           for p in packages):
        # An older record without these fields: the layer's own dpkg status file.
        from ..sources.debian import parse_dpkg_status

        status = scan_layer(store, stored, Want(dpkg=True))["dpkg_status"]
        packages = parse_dpkg_status(status) if status else packages
    suite = prov.get("suite")
    out = []
    for p in packages:
        name, version, arch = p["name"], p.get("version", ""), p.get("architecture", "")
        source = p.get("source") or name
        from_suite = p.get("suite") or suite  # the lock's suite (security?), else the layer's
        out.append(Component(
            "deb", name, version, deb_purl(name, version, arch, suite), layer,
            source_info=f"Debian binary package built from source package {source}",
            properties={"debian:source": source, "debian:architecture": arch,
                        **({"debian:suite": from_suite} if from_suite else {})}))
    return out


def _pip(store: Store, stored: StoredLayer, prov: dict[str, Any],
         layer: str) -> list[Component]:
    index = redact(str(prov.get("index", "")))  # records of any age: never a credential
    return [Component(
        "pypi", p["name"], p["version"], pypi_purl(p["name"], p["version"]), layer,
        sha256=p.get("sha256"), filename=p.get("filename"),
        comment=f"installed by pip from {p.get('filename')} (index {index})",
        properties={"python": str(prov.get("python", "")), "pip:lock": str(prov.get("lock",
                                                                                   ""))})
        for p in prov.get("packages", [])]


def _maven(store: Store, stored: StoredLayer, prov: dict[str, Any],
           layer: str) -> list[Component]:
    from ..sources.maven import Coordinate

    out = []
    dest = str(prov.get("dest", "")).rstrip("/")
    for a in prov.get("artifacts", []):
        c = Coordinate.parse(a["coordinates"])
        repo = redact(str(a.get("repository") or ""))
        out.append(Component(
            "maven", c.artifact, c.version,
            maven_purl(c.group, c.artifact, c.version, c.classifier, c.ext), layer,
            sha256=a.get("sha256"), filename=f"{dest}/{a.get('filename', c.filename)}",
            download=f"{repo.rstrip('/')}/{c.path}" if "://" in repo else None,
            comment=f"Maven artifact {c}" + (f" from {repo}" if repo else ""),
            properties={"maven:coordinates": str(c)}))
    return out


def _pypi(store: Store, stored: StoredLayer, prov: dict[str, Any],
          layer: str) -> list[Component]:
    package, version = str(prov["package"]), str(prov["version"])
    filename, index = str(prov.get("filename", "")), redact(str(prov.get("index", "")))
    download = None
    if index in PYPI_SIMPLE and filename.endswith((".tar.gz", ".zip")):
        # PyPI's stable address of an sdist (it redirects to the hashed path).
        download = (f"https://files.pythonhosted.org/packages/source/{package[0]}/"
                    f"{package}/{filename}")
    return [Component(
        "dist", package, version, pypi_purl(package, version), layer,
        sha256=prov.get("sha256"), filename=filename, download=download, purpose="ARCHIVE",
        comment=f"{prov.get('selected', '?')} of {prov.get('members', '?')} members of "
                f"{filename} (index {index}) unpacked into layer {layer}")]


def _archive(store: Store, stored: StoredLayer, prov: dict[str, Any],
             layer: str) -> list[Component]:
    url = redact(str(prov.get("url", "")))
    base = url.rstrip("/").rsplit("/", 1)[-1]
    sha256 = prov.get("sha256")
    is_url = "://" in url
    m = _DEB_FILE.match(base)
    if m:
        name, version, arch = m.group(1), m.group(2).replace("%3a", ":"), m.group(3)
        ref = deb_purl(name, version, arch, None)
    else:
        name, version = base, None
        ref = generic_purl(base, None, sha256, url if is_url else None)
    return [Component(
        "archive", name, version, ref, layer, sha256=sha256, filename=base,
        download=url if is_url else None, purpose="ARCHIVE",
        comment=f"{prov.get('selected', '?')} of {prov.get('members', '?')} members of "
                f"{base} unpacked into layer {layer}")]


def _builder(store: Store, stored: StoredLayer, prov: dict[str, Any],
             layer: str) -> list[Component]:
    args = " ".join(f"{k}={v}" for k, v in sorted((prov.get("build_args") or {}).items()))
    bases = ", ".join(str(b) for b in prov.get("base_images") or [])
    return [Component(
        "builder", layer, None, None, layer, purpose="APPLICATION",
        comment=f"built in a container from {prov.get('context')} ({prov.get('dockerfile')}"
                f"{', target ' + str(prov['target']) if prov.get('target') else ''})"
                + (f", build args {args}" if args else "")
                + (f", base images {bases}" if bases else ""))]


# (store, the layer, its source's provenance, the layer's name) → components
Handler = Callable[[Store, StoredLayer, dict[str, Any], str], list[Component]]
_HANDLERS: dict[str, Handler] = {"debian": _debian, "pip": _pip, "maven": _maven,
                                 "pypi": _pypi, "archive": _archive, "builder": _builder}


# -- what the tar tells ----------------------------------------------------------------


def jar_coordinates(filename: str, poms: list[list[str]]
                    ) -> tuple[str | None, str, str | None, str | None]:
    """(group, artifact, version, classifier) of a jar: from the pom.properties that
    matches its file name, else artifact and version split from the name."""
    stem = filename.removesuffix(".jar")
    for g, a, v in poms:
        if stem == f"{a}-{v}":
            return g, a, v, None
    for g, a, v in poms:
        if stem.startswith(f"{a}-{v}-"):
            return g, a, v, stem[len(a) + len(v) + 2:]
    for g, a, v in poms:
        if stem == a:  # renamed without its version (Debian's /usr/share/java/*.jar)
            return g, a, v, None
    m = _JAR_NAME.match(stem)
    if m:
        return None, m.group("name"), m.group("version"), None
    return None, stem, None, None


def _jar(j: dict[str, Any], layer: str, parent: str | None) -> Component:
    path = str(j["path"])
    group, artifact, version, classifier = jar_coordinates(path.rsplit("/", 1)[-1],
                                                           j.get("poms", []))
    if group and version:
        ref = maven_purl(group, artifact, version, classifier)
        how = "coordinates from the jar's META-INF/maven pom.properties"
    else:
        ref = generic_purl(artifact, version, j["sha256"])
        how = "name and version from the file name (the jar carries no Maven metadata)"
    return Component("jar", artifact, version, ref, layer, sha256=j["sha256"], filename=path,
                     comment=f"{path}: {how}", parent=parent,
                     properties={"path": path})


def _origin(path: str, items: list[dict[str, Any]]) -> str | None:
    """The project path a file of a `files` layer was copied from."""
    for item in items:
        dest, src = str(item.get("dest", "")).rstrip("/"), str(item.get("src", ""))
        if path == dest:
            return src
        if dest and path.startswith(dest + "/"):
            return f"{src.rstrip('/')}/{path[len(dest) + 1:]}"
    return None
