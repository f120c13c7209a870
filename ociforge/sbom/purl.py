"""Package URLs (purl, github.com/package-url/purl-spec) for what an image holds.

Built here rather than with a library: the rules needed are few (percent-encoding,
lower-case sorted qualifiers, per-type name normalisation) and the output has to be
byte-stable for the SBOM to be reproducible.
"""

from __future__ import annotations

import re
from urllib.parse import quote


def _enc(text: str) -> str:
    # ':' stays readable (Debian epochs, digests), as the reference implementations do.
    return quote(text, safe="").replace("%3A", ":")


def purl(type_: str, name: str, version: str | None = None, namespace: str | None = None,
         qualifiers: dict[str, str | None] | None = None) -> str:
    out = f"pkg:{type_}/"
    if namespace:
        out += "/".join(_enc(seg) for seg in namespace.split("/") if seg) + "/"
    out += _enc(name)
    if version:
        out += "@" + _enc(version)
    quals = {k.lower(): v for k, v in (qualifiers or {}).items() if v}
    if quals:
        out += "?" + "&".join(f"{k}={_enc(quals[k])}" for k in sorted(quals))
    return out


def pypi_name(name: str) -> str:
    """PyPI names in purls are lower case with `-` for runs of `-`, `_` and `.`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def deb(name: str, version: str, arch: str, distro: str | None,
        vendor: str = "debian") -> str:
    return purl("deb", name, version, vendor, {"arch": arch, "distro": distro})


def pypi(name: str, version: str) -> str:
    return purl("pypi", pypi_name(name), version)


def maven(group: str, artifact: str, version: str, classifier: str | None = None,
          ext: str = "jar") -> str:
    return purl("maven", artifact, version, group,
                {"classifier": classifier, "type": None if ext == "jar" else ext})


def generic(name: str, version: str | None = None, sha256: str | None = None,
            download_url: str | None = None) -> str:
    return purl("generic", name, version, None,
                {"checksum": f"sha256:{sha256}" if sha256 else None,
                 "download_url": download_url})


def oci(digest: str, arch: str | None = None, tag: str | None = None,
        name: str = "image") -> str:
    return purl("oci", name, digest, None, {"arch": arch, "tag": tag})
