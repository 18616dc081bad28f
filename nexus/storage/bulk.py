"""The store's bulk writes: many paths, or many metadata rows, in one transaction.

:meth:`SQLAlchemyMetadataStore.put_many` and
:meth:`SQLAlchemyMetadataStore.set_file_metadata_many` delegate here; everything is validated
before the first statement, and the write runs as one store transaction composed of the
shared blocks (:mod:`nexus.storage.blocks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from nexus.errors import InvalidArgumentError, NexusFileNotFoundError
from nexus.storage.calls import drive_connection
from nexus.storage.schema import file_paths, tenant_of_path_is
from nexus.storage.types import new_path_id, utcnow
from nexus.storage.validation import (
    dependency_refs,
    is_path_id,
    validate_batch,
    validate_metadata,
    validate_optional_text,
    validate_path,
    validate_path_or_id,
    validate_positive_int,
)

if TYPE_CHECKING:
    from nexus.storage.metadata_store import SQLAlchemyMetadataStore

#: Rows per multi-row path INSERT; SQLite's IN-lists stay within its parameter limit.
CHUNK = 500


def put_many(store: SQLAlchemyMetadataStore, paths: Iterable[str | Mapping[str, Any]]) -> int:
    """Create many paths in one transaction; returns how many were created.

    Items are paths, or mappings with ``path`` and optional ``size``, ``content_hash``,
    ``file_type``. Existing live paths are left as they are; soft-deleted ones come back
    as new, empty files (as with :meth:`put`). Everything is validated first.
    """
    rows = [_new_path_row(store, item) for item in validate_batch("paths", paths)]
    if not rows:
        return 0
    stmt = (
        store.backend.insert(file_paths)
        .on_conflict_do_nothing(index_elements=["tenant_id", "virtual_path"])
        .returning(file_paths.c.virtual_path)
    )

    def work(conn: Connection) -> int:
        created: set[str] = set()
        for start in range(0, len(rows), CHUNK * 10):
            created.update(conn.execute(stmt, rows[start : start + CHUNK * 10]).scalars().all())
        # Only paths that already existed can be soft-deleted ones to bring back.
        existed = [row["virtual_path"] for row in rows if row["virtual_path"] not in created]
        if existed:
            drive_connection(store.blocks.refresh_statistics(), conn)
        revived = drive_connection(store.blocks.revive_deleted(existed, utcnow()), conn)
        return len(created) + len(revived)

    return store._write(work)


def _new_path_row(store: SQLAlchemyMetadataStore, item: str | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(item, (str, Mapping)):
        raise InvalidArgumentError("item", item, "must be a path or a mapping with a 'path'")
    spec = {"path": item} if isinstance(item, str) else dict(item)
    unknown = set(spec) - {"path", "size", "content_hash", "file_type"}
    if unknown:
        raise InvalidArgumentError("item", item, f"unknown keys {sorted(unknown)}")
    for name in ("content_hash", "file_type"):
        validate_optional_text(name, spec.get(name))
    now = utcnow()
    return {
        "path_id": new_path_id(),
        "tenant_id": store.tenant_id,
        "virtual_path": validate_path(spec.get("path")),
        "size_bytes": validate_positive_int("size", spec.get("size", 0), allow_zero=True),
        "content_hash": spec.get("content_hash"),
        "file_type": spec.get("file_type"),
        "created_at": now,
        "updated_at": now,
    }


def set_file_metadata_many(
    store: SQLAlchemyMetadataStore, rows: Iterable[tuple[str, str, Any]]
) -> int:
    """Set many ``(path, key, value)`` in one transaction, validated like the single call.

    Every path must exist (else NexusFileNotFoundError and nothing is written); returns
    the number of rows written. ``depends_on`` values are checked for cycles.
    """
    checked = []
    for row in validate_batch("rows", rows):
        if not isinstance(row, (tuple, list)) or len(row) != 3:
            raise InvalidArgumentError("row", row, "must be a (path, key, value) tuple")
        path, key, value = row
        checked.append((validate_path_or_id(path), key, validate_metadata(key, value)))
    if not checked:
        return 0

    def work(conn: Connection) -> int:
        blocks = store.blocks
        if len(checked) >= CHUNK:
            drive_connection(blocks.refresh_statistics(), conn)
        ids = _resolve_many(store, conn, [ref for ref, _, _ in checked])
        dependencies = [(ref, value) for ref, key, value in checked if key == "depends_on"]
        if dependencies:
            drive_connection(blocks.lock_dependency_writes(), conn)
        values = [{"path_id": ids[ref], "key": key, "value": value} for ref, key, value in checked]
        # Status last, so its trigger builds each work row once, from every key.
        values.sort(key=lambda item: item["key"] == "status")
        drive_connection(blocks.write_metadata(values), conn)
        for ref, value in dependencies:
            cycle = blocks.check_no_cycle(ref, ids[ref], dependency_refs(value), value)
            drive_connection(cycle, conn)
        return len(values)

    return store._write(work)


def _resolve_many(
    store: SQLAlchemyMetadataStore, conn: Connection, refs: list[str]
) -> dict[str, str]:
    """ref (virtual path or path_id) -> path_id for live paths; raises on the first missing."""
    found: dict[str, str] = {}
    unique = list(dict.fromkeys(refs))
    paths = [r for r in unique if not is_path_id(r)]
    ids = [r for r in unique if is_path_id(r)]
    for column, wanted in ((file_paths.c.virtual_path, paths), (file_paths.c.path_id, ids)):
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            for path_id, key in conn.execute(
                sa.select(file_paths.c.path_id, column).where(
                    column.in_(chunk),
                    tenant_of_path_is(store.tenant_id)
                    if column is file_paths.c.path_id
                    else file_paths.c.tenant_id == store.tenant_id,
                    file_paths.c.deleted_at.is_(None),
                )
            ):
                found[key] = path_id
    for ref in unique:
        if ref not in found:
            raise NexusFileNotFoundError(ref)
    return found
