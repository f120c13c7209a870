"""Export images from the store as a standalone OCI image layout directory.

Every blob of the layout is its own file: a copy, never a hard link into the store,
so editing the export (umoci unpack/repack, a careless `sed -i`) cannot damage the
store. The copy is a reflink where the filesystem shares extents (btrfs, XFS with
reflink, bcachefs: instant, no space), an in-kernel copy otherwise (ext4, tmpfs,
across filesystems); either way the copy is hashed before it takes its name, so the
layout holds only verified bytes. A blob already in the layout is kept only if it
hashes to its name and is not the store's own file (a hard link left by an older
ociforge): anything else is replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..digests import canonical_json, digest_hex
from ..errors import OciforgeError, StoreCorruptError
from ..image import StoredImage, StoredIndex
from ..oci import MT_INDEX
from ..store import OCI_LAYOUT, Store, atomic_write, hash_file_matches
from ..tartree import COPY_BUFSIZE
from . import index_entry

FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h: share all extents of a file


def clone_or_copy(src: Path, dst: Path) -> str:
    """Write a new file `dst` with the bytes of `src`, fsynced. Returns "reflink" if
    the filesystem shared the extents, else "copy" (copy_file_range, which some
    filesystems also turn into a reflink or a server-side copy; a plain read/write
    loop where the kernel has neither)."""
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
            how = "reflink"
        except OSError:  # EOPNOTSUPP/EINVAL/EXDEV/ENOTTY: no reflinks here
            how = "copy"
            _copy_range(fin.fileno(), fout.fileno(), os.fstat(fin.fileno()).st_size)
        os.fsync(fout.fileno())
    return how


def _copy_range(fin: int, fout: int, size: int) -> None:
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(fin, fout, size - done)
            if n == 0:
                break
            done += n
    except OSError:  # ENOSYS, EXDEV on old kernels, EINVAL on some filesystems
        os.lseek(fin, done, os.SEEK_SET)
        os.lseek(fout, done, os.SEEK_SET)
        with open(fin, "rb", closefd=False) as r, open(fout, "wb", closefd=False) as w:
            shutil.copyfileobj(r, w, COPY_BUFSIZE)


def _keep_existing(target: Path, src: Path, digest: str) -> bool:
    """Whether the layout's `target` is already a good copy of blob `digest`."""
    try:
        st = target.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        raise OciforgeError(f"{target} is a directory where blob {digest} belongs; "
                            "remove it or export to another directory")
    if not stat.S_ISREG(st.st_mode):
        return False  # a link or something stranger: replace it with the blob
    with contextlib.suppress(FileNotFoundError):
        if os.path.samefile(target, src):
            return False  # a hard link into the store: replace it with a copy
    return hash_file_matches(target, digest)[0]


def _place_blob(store: Store, digest: str, blobs_dir: Path) -> None:
    src = store.require_blob(digest)
    target = blobs_dir / digest_hex(digest)
    if _keep_existing(target, src, digest):
        return
    tmp = blobs_dir / f".{target.name}.{os.getpid()}.part"
    tmp.unlink(missing_ok=True)
    try:
        clone_or_copy(src, tmp)
        ok, got = hash_file_matches(tmp, digest)
        if not ok:
            raise StoreCorruptError(f"blob {digest} is corrupt on disk (content hashes "
                                    f"to {got}); run `ociforge store fsck`")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _read_layout_index(index_path: Path) -> dict[str, Any]:
    empty: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}
    if not index_path.exists():
        return empty
    try:
        index = json.loads(index_path.read_bytes())
    except (ValueError, IsADirectoryError):
        index = None
    if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list) \
            or not all(isinstance(m, dict) for m in index.get("manifests", [])):
        raise OciforgeError(f"{index_path} is not an OCI image index, so the images it "
                            "lists cannot be kept; repair or remove it, or export to "
                            "another directory")
    return index


def export_layout(store: Store, images: Sequence[StoredImage | StoredIndex], dest: Path, *,
                  progress: Callable[[int], None] | None = None) -> None:
    """Write (or add to) an OCI layout at `dest`: each blob copied (see the module's
    docstring) and verified; images already there under other names are kept. A
    `StoredIndex` goes in whole: its index, every platform's manifest and blobs."""
    index_path = dest / "index.json"
    index = _read_layout_index(index_path)
    blobs_dir = dest / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for img in images:
        for desc in [img.descriptor, *img.blobs()]:
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            _place_blob(store, desc.digest, blobs_dir)
            if progress:
                progress(desc.size)
    names = {index_entry(i)["annotations"]["io.containerd.image.name"] for i in images}
    kept = [m for m in index.get("manifests", [])
            if m.get("annotations", {}).get("io.containerd.image.name") not in names]
    index["manifests"] = kept + [index_entry(i) for i in images]
    atomic_write(dest / "oci-layout", canonical_json(OCI_LAYOUT))
    atomic_write(index_path, canonical_json(index))
