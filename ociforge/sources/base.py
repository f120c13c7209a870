"""What every layer source shares: the build context and small spec helpers."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..archives import PathMap
from ..digestcache import DigestCache
from ..net.retry import DOWNLOAD_ATTEMPTS, RetryPolicy
from ..store import Store

if TYPE_CHECKING:
    import requests

DEFAULT_INDEX_URL = "https://pypi.org/simple"


@dataclass
class BuildContext:
    """Everything a source may consult while resolving or building."""

    store: Store
    project_root: Path
    sde: int
    staging: Path | None = None
    index_url: str = DEFAULT_INDEX_URL
    maven_repos: list[str] | None = None  # --maven-repo; the maven source's default list
    # Every request of the build retries under this one policy; tests pass one whose
    # `sleep` records instead of sleeping.
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(DOWNLOAD_ATTEMPTS))
    _session: Any = None
    _digests: Any = None

    @property
    def digests(self) -> DigestCache:
        """Digests of checkout files, remembered in the store by stat signature."""
        if self._digests is None:
            self._digests = DigestCache(self.store.meta_dir / "file-digests.json")
        return self._digests

    @property
    def session(self) -> requests.Session:
        """HTTP session, created on first use (requests is slow to import)."""
        if self._session is None:
            from ..net.http import new_session

            self._session = new_session()
        return self._session

    def scratch(self, prefix: str) -> Path:
        """A fresh directory under this build's staging area (removed after the build)."""
        assert self.staging is not None, "staging is set by the layer builder"
        self.staging.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix + "-", dir=self.staging))

    def project_path(self, rel: str) -> Path:
        """A path named in a recipe, relative to the project root."""
        p = Path(rel)
        return p if p.is_absolute() else self.project_root / p


def _parse_owner(v: Any) -> Any:
    if isinstance(v, str):
        m = re.fullmatch(r"(\d+):(\d+)", v.strip())
        if not m:
            raise ValueError("owner must be 'UID:GID' with numeric ids, e.g. '185:185'")
        return (int(m.group(1)), int(m.group(2)))
    if isinstance(v, int):
        return (v, v)
    return v


def _parse_mode(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, int):
        raise ValueError("write modes as quoted octal strings, e.g. '0755'")
    if isinstance(v, str) and re.fullmatch(r"0?[0-7]{3,4}", v.strip()):
        return int(v.strip(), 8)
    raise ValueError(f"{v!r} is not an octal mode like '0755'")


Owner = Annotated[tuple[int, int], BeforeValidator(_parse_owner)]
Mode = Annotated[int | None, BeforeValidator(_parse_mode)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Sha512 = Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathMapSpec(Spec):
    """`from` a path inside the archive (file or directory) `to` a path in the image."""

    from_: str = Field("", alias="from")
    to: str = "/"
    include: list[str] = []
    exclude: list[str] = []

    def to_map(self) -> PathMap:
        return PathMap(self.from_.strip("/"), self.to, list(self.include), list(self.exclude))

    def key(self) -> dict[str, Any]:
        return {"from": self.from_.strip("/"), "to": self.to, "include": self.include,
                "exclude": self.exclude}
