"""``nexus.connect``: files with content plus the metadata store, in one object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from nexus.errors import InvalidArgumentError, NexusConfigError, NexusFileNotFoundError
from nexus.storage.content import ContentStore

if TYPE_CHECKING:
    from nexus.storage.metadata_store import FileRecord

DEFAULT_DATA_DIR = "./nexus-data"
_CONFIG_KEYS = {"data_dir", "database_url", "tenant_id", "run_migrations", "create"}


class NexusFS:
    """A small file system: content under ``data_dir``, paths and metadata in the store
    (``metadata``), and the work queue over it (``queue``)."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        if config is not None and not isinstance(config, Mapping):
            raise NexusConfigError(
                f"config must be a mapping, not {type(config).__name__}", value=config
            )
        config = dict(config or {})
        unknown = set(config) - _CONFIG_KEYS
        if unknown:
            raise NexusConfigError(f"unknown config keys: {sorted(unknown)}", value=config)
        create = config.get("create", True)
        if not isinstance(create, bool):
            raise NexusConfigError(f"create must be True or False, not {create!r}", value=create)
        self.data_dir = Path(config.get("data_dir") or DEFAULT_DATA_DIR).expanduser()
        database = (
            config.get("database_url")
            or os.environ.get("NEXUS_DATABASE_URL")
            or str(self.data_dir / "metadata.db")
        )
        # The store first: with create=False a missing database fails before anything else.
        # Imported here, not above: `import nexus` (and `nexus --help`) need no SQLAlchemy.
        from nexus.storage.metadata_store import SQLAlchemyMetadataStore
        from nexus.work.queue import WorkQueue

        self.metadata = SQLAlchemyMetadataStore(
            database,
            tenant_id=config.get("tenant_id", "default"),
            run_migrations=config.get("run_migrations", True),
            create=create,
        )
        try:
            if create:
                self.data_dir.mkdir(parents=True, exist_ok=True)
            self.content = ContentStore(self.data_dir / "content", create=create)
        except BaseException:
            self.metadata.close()
            raise
        self.queue = WorkQueue(self.metadata)

    def write(self, path: str, data: bytes, *, file_type: str | None = None) -> FileRecord:
        """Store ``data`` at ``path`` (content first, then the path row pointing at it)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError("data", type(data).__name__, "must be bytes")
        payload = bytes(data)
        content_hash = self.content.put(payload)
        return self.metadata.put(
            path, size=len(payload), content_hash=content_hash, file_type=file_type
        )

    def read(self, path: str) -> bytes:
        record = self.metadata.get(path)
        if record is None:
            raise NexusFileNotFoundError(path)
        if record.content_hash is None:
            return b""
        return self.content.get(record.content_hash)

    def exists(self, path: str) -> bool:
        return self.metadata.exists(path)

    def delete(self, path: str) -> None:
        """Delete the path (soft). Blobs are shared by hash and are left in place."""
        self.metadata.delete(path)

    def list(self, prefix: str = "/") -> list[str]:
        """Virtual paths under ``prefix``, sorted."""
        return [record.virtual_path for record in self.metadata.list(prefix)]

    def close(self) -> None:
        self.queue.close()
        self.metadata.close()

    def __enter__(self) -> NexusFS:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(config: Mapping[str, Any] | None = None) -> NexusFS:
    """Open nexus.

    ``config`` keys: ``data_dir`` (default ``./nexus-data``; content lives there, and so does
    ``metadata.db`` unless a database is named), ``database_url`` (e.g. PostgreSQL; beats
    ``NEXUS_DATABASE_URL``), ``tenant_id``, ``run_migrations`` and ``create`` (default True;
    False opens only an existing database and creates no directory).
    """
    return NexusFS(config)
