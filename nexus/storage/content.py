"""Content-addressed blob storage under a data directory.

Blobs are stored by SHA-256 at ``<root>/<aa>/<bb>/<hash>``. A write goes to a temporary file
in the same directory, is fsync'ed and renamed into place, so a reader never sees a partial
blob and a crash leaves either the old state or the whole new blob.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from nexus.errors import NexusError


class ContentStore:
    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        self.root = Path(root)
        if create:
            # Without it the directories are made by the first put.
            self.root.mkdir(parents=True, exist_ok=True)

    def _blob_path(self, content_hash: str) -> Path:
        return self.root / content_hash[:2] / content_hash[2:4] / content_hash

    def put(self, data: bytes) -> str:
        """Store ``data``; returns its SHA-256 hex digest. Storing twice is free."""
        content_hash = hashlib.sha256(data).hexdigest()
        target = self._blob_path(content_hash)
        if target.exists():
            return content_hash
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return content_hash

    def get(self, content_hash: str) -> bytes:
        try:
            return self._blob_path(content_hash).read_bytes()
        except FileNotFoundError as exc:
            raise NexusError(f"content {content_hash} is missing from {self.root}") from exc
