"""The metadata store: file paths, key/value metadata and the five work views.

``file_metadata`` holds every key a user sees; the work views read ``work_items``, which the
database derives from the work keys (revision 0005) and the work queue (``nexus.work``, a layer
above this one) advances. Everything here is plain reads and upserts, plus the few
transaction-level helpers the queue composes (``write``, ``ensure_paths``,
``write_metadata_rows``, ``check_no_cycle``...). Nothing here imports ``nexus.work``.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from nexus.errors import (
    NexusConfigError,
    NexusDatabaseError,
    NexusError,
    NexusFileNotFoundError,
)
from nexus.storage import bulk, migrate, security
from nexus.storage.blocks import Blocks
from nexus.storage.calls import drive_connection
from nexus.storage.database import Database, retrying
from nexus.storage.engine import create_engine, resolve_database_url
from nexus.storage.paging import WorkPage
from nexus.storage.schema import (
    file_metadata,
    file_paths,
    path_metadata,
    starts_with,
)
from nexus.storage.types import new_path_id, utcnow
from nexus.storage.validation import (
    dependency_refs,
    is_path_id,
    is_text,
    validate_key,
    validate_metadata,
    validate_optional_text,
    validate_path,
    validate_path_or_id,
    validate_positive_int,
    validate_prefix,
)
from nexus.storage.views import ViewReader

T = TypeVar("T")

__all__ = ["FileRecord", "SQLAlchemyMetadataStore", "WorkPage"]

#: SQLite allows 32766 bound parameters per statement; IN-lists stay far below that.
CHUNK = 500
#: PostgreSQL: a view filter selecting at most this many paths by its own index is read
#: through it (those rows by primary key, then sorted); a broader one, and every filter on
#: SQLite, is checked on the walk in the view's order.
FEW_FILTERED = 2000


@dataclass(frozen=True)
class FileRecord:
    """One live path."""

    path_id: str
    virtual_path: str
    tenant_id: str
    size_bytes: int
    content_hash: str | None
    file_type: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> FileRecord:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


class SQLAlchemyMetadataStore:
    """File paths with key/value metadata and the work views over them.

    ``SQLAlchemyMetadataStore("metadata.db")`` opens (and migrates) a SQLite file;
    a URL such as ``"postgresql+psycopg://user@host/db"`` selects PostgreSQL. Without an
    argument the ``NEXUS_DATABASE_URL`` environment variable is used; an explicit argument
    always beats the environment.

    ``create=False`` opens only a nexus database that exists: nothing is created (no
    SQLite file, no directory, no schema in an empty database), and a missing one raises
    :class:`~nexus.errors.DatabaseNotFoundError`. An existing schema below head is still
    migrated.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        *,
        db_url: str | None = None,
        run_migrations: bool = True,
        tenant_id: str = "default",
        engine_options: Mapping[str, Any] | None = None,
        create: bool = True,
    ) -> None:
        if db_path is not None and db_url is not None:
            raise NexusConfigError("give either db_path or db_url, not both", value=db_url)
        target = db_url if db_url is not None else db_path
        if target is not None and not isinstance(target, (str, os.PathLike)):
            raise NexusConfigError(f"not a database path or URL: {target!r}", value=target)
        if target is None:
            target = os.environ.get("NEXUS_DATABASE_URL")
        if target is None:
            raise NexusConfigError(
                "no database: pass a SQLite path or a URL, or set NEXUS_DATABASE_URL"
            )
        if (
            not isinstance(tenant_id, str)
            or not tenant_id
            or len(tenant_id) > 255
            or "\x00" in tenant_id
            or not is_text(tenant_id)
        ):
            raise NexusConfigError(
                "tenant_id must be a non-empty string of at most 255 characters",
                value=tenant_id,
            )
        self.url = resolve_database_url(target, create=create)
        self.tenant_id = tenant_id
        self.engine: Engine = create_engine(self.url, **dict(engine_options or {}))
        self._write_engine = self.engine.execution_options(nexus_write=True)
        self.dialect = self.engine.dialect.name
        self._closed = False
        try:
            if run_migrations:
                migrate.upgrade(self.engine, create=create)
            #: Whether the database had row-level security on when the store was opened.
            self.row_level_security = security.row_level_security_enabled(self.engine)
        except BaseException:
            self.engine.dispose()
            raise
        self.database = Database(self.engine)
        #: What differs between SQLite and PostgreSQL here (nexus.storage.backends).
        self.backend = self.database.backend
        #: The transaction-level write blocks this store and the work queue compose.
        self.blocks = Blocks(self.backend, tenant_id)
        if self.row_level_security:
            self._declare_tenant_per_transaction()
        self._build_statements()
        self._view_reader = ViewReader(self.backend, self.tenant_id, self._reading)

    # ------------------------------------------------------------------ plumbing

    def _build_statements(self) -> None:
        put = self.backend.insert(file_paths)
        self._put_stmt = put.on_conflict_do_update(
            index_elements=["tenant_id", "virtual_path"],
            set_={
                "size_bytes": put.excluded.size_bytes,
                "content_hash": put.excluded.content_hash,
                "file_type": put.excluded.file_type,
                "updated_at": put.excluded.updated_at,
                "deleted_at": None,
                # A soft-deleted path comes back as a new file.
                "created_at": sa.case(
                    (file_paths.c.deleted_at.is_(None), file_paths.c.created_at),
                    else_=put.excluded.created_at,
                ),
            },
        ).returning(*file_paths.c)
        # Metadata timestamps come from the database clock: nothing to format per row.
        server_now = self.backend.server_now()
        upsert = self.backend.insert(file_metadata).values(
            created_at=server_now, updated_at=server_now
        )
        self._upsert_metadata_stmt = upsert.on_conflict_do_update(
            index_elements=["path_id", "key"],
            set_={"value": upsert.excluded.value, "updated_at": upsert.excluded.updated_at},
        )

    def _declare_tenant_per_transaction(self) -> None:
        """Row-level security is on: every transaction, on both paths, first names this
        store's tenant (transaction-local, so a pooled connection keeps nothing of it)."""
        self.database.tenant_setting = self.tenant_id
        parameters = (self.tenant_id,)

        def declare(conn: Connection) -> None:
            conn.exec_driver_sql(security.SET_TENANT_SQL, parameters)

        sa.event.listen(self.engine, "begin", declare)

    def _path_filter(self, ref: str) -> sa.ColumnElement[bool]:
        """Live path of this tenant by virtual path, or by path_id."""
        column = file_paths.c.path_id if is_path_id(ref) else file_paths.c.virtual_path
        return sa.and_(
            column == sa.bindparam("ref"),
            file_paths.c.tenant_id == sa.bindparam("tenant"),
            file_paths.c.deleted_at.is_(None),
        )

    def _params(self, ref: str, **extra: Any) -> dict[str, Any]:
        return {"ref": ref, "tenant": self.tenant_id, **extra}

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        self._check_open()
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            raise NexusDatabaseError(f"database read failed: {exc.orig}") from exc

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(connection)`` in one write transaction (SQLite ``BEGIN IMMEDIATE``);
        retried on PostgreSQL deadlocks; driver errors become NexusDatabaseError."""
        return self._write(work)

    def _write(self, work: Callable[[Connection], T]) -> T:
        self._check_open()

        def attempt() -> T:
            with self._write_engine.begin() as conn:
                return work(conn)

        def error(exc: BaseException) -> NexusDatabaseError:
            return NexusDatabaseError(f"database write failed: {getattr(exc, 'orig', exc)}")

        return retrying(attempt, error)

    def _check_open(self) -> None:
        if self._closed:
            raise NexusError("the store is closed")

    def _require_path_id(self, conn: Connection, ref: str) -> str:
        path_id = conn.execute(
            sa.select(file_paths.c.path_id).where(self._path_filter(ref)), self._params(ref)
        ).scalar()
        if path_id is None:
            raise NexusFileNotFoundError(ref)
        return str(path_id)

    # ------------------------------------------------------------------ files

    def put(
        self,
        path: str,
        *,
        size: int = 0,
        content_hash: str | None = None,
        file_type: str | None = None,
    ) -> FileRecord:
        """Create the path, or update its size/hash/type if it exists (idempotent)."""
        path = validate_path(path)
        validate_positive_int("size", size, allow_zero=True)
        validate_optional_text("content_hash", content_hash)
        validate_optional_text("file_type", file_type)
        now = utcnow()
        row = {
            "path_id": new_path_id(),
            "tenant_id": self.tenant_id,
            "virtual_path": path,
            "size_bytes": size,
            "content_hash": content_hash,
            "file_type": file_type,
            "created_at": now,
            "updated_at": now,
        }

        def work(conn: Connection) -> FileRecord:
            # A soft-deleted path keeps its row; bringing it back starts with no metadata.
            conn.execute(
                sa.delete(file_metadata).where(
                    file_metadata.c.path_id.in_(
                        sa.select(file_paths.c.path_id).where(
                            file_paths.c.tenant_id == self.tenant_id,
                            file_paths.c.virtual_path == path,
                            file_paths.c.deleted_at.is_not(None),
                        )
                    )
                )
            )
            return FileRecord.from_row(conn.execute(self._put_stmt, row).mappings().one())

        return self._write(work)

    def put_many(self, paths: Iterable[str | Mapping[str, Any]]) -> int:
        """Create many paths in one transaction; returns how many were created.

        Items are paths, or mappings with ``path`` and optional ``size``, ``content_hash``,
        ``file_type``. Existing live paths are left as they are; soft-deleted ones come back
        as new, empty files (as with :meth:`put`). Everything is validated first.
        """
        return bulk.put_many(self, paths)

    def set_file_metadata_many(self, rows: Iterable[tuple[str, str, Any]]) -> int:
        """Set many ``(path, key, value)`` in one transaction, validated like the single call.

        Every path must exist (else NexusFileNotFoundError and nothing is written); returns
        the number of rows written. ``depends_on`` values are checked for cycles.
        """
        return bulk.set_file_metadata_many(self, rows)

    def read_views(self, views: Mapping[str, sa.Table]) -> dict[str, builtins.list[dict[str, Any]]]:
        """Every row of each named view, as dicts."""
        with self._reading() as conn:
            return {
                name: [dict(row) for row in conn.execute(sa.select(view)).mappings()]
                for name, view in views.items()
            }

    def get(self, path: str) -> FileRecord | None:
        """The live path's record, or None."""
        ref = validate_path_or_id(path)
        with self._reading() as conn:
            row = (
                conn.execute(sa.select(file_paths).where(self._path_filter(ref)), self._params(ref))
                .mappings()
                .first()
            )
        return None if row is None else FileRecord.from_row(row)

    def exists(self, path: str) -> bool:
        return self.get_path_id(path) is not None

    def get_path_id(self, path: str) -> str | None:
        ref = validate_path_or_id(path)
        with self._reading() as conn:
            return conn.execute(
                sa.select(file_paths.c.path_id).where(self._path_filter(ref)), self._params(ref)
            ).scalar()

    def delete(self, path: str) -> None:
        """Soft-delete the path: it leaves every listing and view; its row stays for history."""
        ref = validate_path_or_id(path)
        now = utcnow()

        def work(conn: Connection) -> None:
            result = conn.execute(
                sa.update(file_paths)
                .where(self._path_filter(ref))
                .values(deleted_at=now, updated_at=now),
                self._params(ref),
            )
            if result.rowcount == 0:
                raise NexusFileNotFoundError(ref)

        self._write(work)

    def list(self, prefix: str = "/") -> builtins.list[FileRecord]:
        """Live paths under ``prefix`` (a plain string prefix), ordered by path."""
        prefix = validate_prefix(prefix)
        path = file_paths.c.virtual_path
        order = self.backend.path_order(path)
        stmt = (
            sa.select(file_paths)
            .where(
                file_paths.c.tenant_id == self.tenant_id,
                file_paths.c.deleted_at.is_(None),
                starts_with(path, prefix),
            )
            .order_by(order)
        )
        with self._reading() as conn:
            return [FileRecord.from_row(row) for row in conn.execute(stmt).mappings()]

    # ------------------------------------------------------------------ metadata

    def set_file_metadata(self, path: str, key: str, value: Any) -> None:
        """Set one key (an upsert). Work keys are validated; values are any JSON."""
        ref = validate_path_or_id(path)
        value = validate_metadata(key, value)

        def work(conn: Connection) -> None:
            path_id = self._require_path_id(conn, ref)
            if key == "depends_on":
                drive_connection(self.blocks.lock_dependency_writes(), conn)
                cycle = self.blocks.check_no_cycle(ref, path_id, dependency_refs(value), value)
                drive_connection(cycle, conn)
            conn.execute(
                self._upsert_metadata_stmt, {"path_id": path_id, "key": key, "value": value}
            )

        self._write(work)

    def get_file_metadata(self, path: str, key: str) -> Any:
        """The value of ``key``, or None if it is unset. Raises if the path does not exist.

        Work keys the queue advances (status, worker_id, started_at) are read from the work
        row, so this always agrees with the views and the queue (``path_metadata``)."""
        ref = validate_path_or_id(path)
        key = validate_key(key)
        with self._reading() as conn:
            path_id = self._require_path_id(conn, ref)
            return conn.execute(
                sa.select(path_metadata.c.value).where(
                    path_metadata.c.path_id == path_id, path_metadata.c.key == key
                )
            ).scalar()

    def get_all_file_metadata(self, path: str) -> dict[str, Any]:
        """Every key of the path (as ``path_metadata`` shows them), by key."""
        ref = validate_path_or_id(path)
        with self._reading() as conn:
            path_id = self._require_path_id(conn, ref)
            rows = conn.execute(
                sa.select(path_metadata.c.key, path_metadata.c.value)
                .where(path_metadata.c.path_id == path_id)
                .order_by(path_metadata.c.key)
            ).all()
        return {row.key: row.value for row in rows}

    def delete_file_metadata(self, path: str, key: str) -> bool:
        """Remove ``key`` wherever it lives (removing ``status`` ends the work item); returns
        whether it was set."""
        ref = validate_path_or_id(path)
        key = validate_key(key)

        def work(conn: Connection) -> bool:
            path_id = self._require_path_id(conn, ref)
            where = sa.and_(path_metadata.c.path_id == path_id, path_metadata.c.key == key)
            if conn.execute(sa.select(sa.literal(1)).where(where)).first() is None:
                return False
            conn.execute(sa.delete(path_metadata).where(where))
            return True

        return self._write(work)

    # ------------------------------------------------------------------ work views

    def get_ready_work(
        self,
        limit: int | None = None,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Status ``ready``, every dependency completed, ``run_after`` reached; by priority.

        ``tags``: keep items having any of them; ``path_prefix``: a literal prefix of
        ``virtual_path``; ``after``: a cursor from :meth:`page_ready_work`."""
        return self._view_reader.rows("ready_work_items", limit, tags, path_prefix, after)

    def get_pending_work(
        self,
        limit: int | None = None,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Status ``pending``, by priority (filters and ``after`` as for get_ready_work)."""
        return self._view_reader.rows("pending_work_items", limit, tags, path_prefix, after)

    def get_blocked_work(
        self,
        limit: int | None = None,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Ready/pending/blocked with unresolved dependencies; most blockers first."""
        return self._view_reader.rows("blocked_work_items", limit, tags, path_prefix, after)

    def get_work_by_priority(
        self,
        limit: int | None = None,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Every path with a status, by priority, with its tags."""
        return self._view_reader.rows("work_by_priority", limit, tags, path_prefix, after)

    def get_in_progress_work(
        self,
        limit: int | None = None,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Status ``in_progress`` with worker_id and started_at; newest start first."""
        return self._view_reader.rows("in_progress_work", limit, tags, path_prefix, after)

    def page_ready_work(
        self,
        limit: int = 100,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> WorkPage:
        """At most ``limit`` rows of get_ready_work and the cursor of the next page (None
        when no row follows)."""
        return self._view_reader.page("ready_work_items", limit, tags, path_prefix, after)

    def page_pending_work(
        self,
        limit: int = 100,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> WorkPage:
        """A page of get_pending_work (see page_ready_work)."""
        return self._view_reader.page("pending_work_items", limit, tags, path_prefix, after)

    def page_blocked_work(
        self,
        limit: int = 100,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> WorkPage:
        """A page of get_blocked_work (see page_ready_work)."""
        return self._view_reader.page("blocked_work_items", limit, tags, path_prefix, after)

    def page_work_by_priority(
        self,
        limit: int = 100,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> WorkPage:
        """A page of get_work_by_priority (see page_ready_work)."""
        return self._view_reader.page("work_by_priority", limit, tags, path_prefix, after)

    def page_in_progress_work(
        self,
        limit: int = 100,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> WorkPage:
        """A page of get_in_progress_work (see page_ready_work)."""
        return self._view_reader.page("in_progress_work", limit, tags, path_prefix, after)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.database.close()
            self.engine.dispose()

    def __enter__(self) -> SQLAlchemyMetadataStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        url = sa.engine.make_url(self.url).render_as_string(hide_password=True)
        return f"SQLAlchemyMetadataStore({url!r}, tenant_id={self.tenant_id!r})"
