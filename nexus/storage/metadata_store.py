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
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from nexus.errors import (
    DependencyCycleError,
    InvalidArgumentError,
    NexusConfigError,
    NexusDatabaseError,
    NexusError,
    NexusFileNotFoundError,
)
from nexus.storage import migrate, security
from nexus.storage.database import RETRYABLE_SQLSTATES, WRITE_ATTEMPTS, Database
from nexus.storage.engine import create_engine, json_text, resolve_database_url
from nexus.storage.paging import (
    VIEW_ORDERS,
    Branch,
    WorkPage,
    after_branches,
    decode_cursor,
    encode_cursor,
    prefix_upper_bound,
    validate_tags_filter,
    view_order,
)
from nexus.storage.schema import (
    blocked_work_items,
    file_metadata,
    file_paths,
    in_progress_work,
    path_metadata,
    pending_work_items,
    ready_work_items,
    starts_with,
    tenant_of_path_is,
    work_by_priority,
    work_dependencies,
    work_items,
)
from nexus.storage.types import new_path_id, utcnow
from nexus.storage.validation import (
    MAX_LIMIT,
    dependency_refs,
    is_path_id,
    is_text,
    validate_batch,
    validate_key,
    validate_limit,
    validate_metadata,
    validate_optional_text,
    validate_path,
    validate_path_or_id,
    validate_positive_int,
    validate_prefix,
)

T = TypeVar("T")

__all__ = ["FileRecord", "SQLAlchemyMetadataStore", "WorkPage"]

#: SQLite allows 32766 bound parameters per statement; IN-lists stay far below that.
CHUNK = 500
#: PostgreSQL: a view filter selecting at most this many paths by its own index is read
#: through it (those rows by primary key, then sorted); a broader one, and every filter on
#: SQLite, is checked on the walk in the view's order.
FEW_FILTERED = 2000
#: Rows per multi-row INSERT (3 parameters each: within both databases' limits).
BULK_ROWS = 5000
#: Batch items walked per cycle-check statement.
CYCLE_CHUNK = 2000

#: Transaction-level advisory lock serialising writers of ``depends_on`` (cycle checks).
DEPENDENCY_WRITE_LOCK = (7_400_002, 0)

# Both walk the tenant's own graph only: a reference resolves inside its tenant.
_CYCLE_CHECK = sa.text(
    """
    WITH RECURSIVE reach(path_id) AS (
        SELECT CAST(t.path_id AS TEXT) FROM file_paths t
        WHERE t.path_id IN :refs AND t.tenant_id = :tenant
        UNION
        SELECT CAST(t.path_id AS TEXT) FROM file_paths t
        WHERE t.tenant_id = :tenant AND t.virtual_path IN :refs
        UNION
        SELECT CAST(coalesce(
            (SELECT x.path_id FROM file_paths x
             WHERE x.tenant_id = d.tenant_id AND x.virtual_path = d.depends_on_ref),
            d.depends_on_ref) AS TEXT)
        FROM reach r JOIN work_dependencies d ON d.path_id = r.path_id
        WHERE d.tenant_id = :tenant
    )
    SELECT 1 FROM reach WHERE path_id = :self LIMIT 1
    """
).bindparams(sa.bindparam("refs", expanding=True))

# The stored graph (already holding a batch's edges) walked from every batch item at once:
# an item that reaches itself closes a cycle, through stored items or not.
_CYCLE_CHECK_STORED = sa.text(
    """
    WITH RECURSIVE reach(origin, path_id) AS (
        SELECT CAST(d.path_id AS TEXT), CAST(coalesce(
            (SELECT x.path_id FROM file_paths x
             WHERE x.tenant_id = d.tenant_id AND x.virtual_path = d.depends_on_ref),
            d.depends_on_ref) AS TEXT)
        FROM work_dependencies d WHERE d.path_id IN :origins AND d.tenant_id = :tenant
        UNION
        SELECT r.origin, CAST(coalesce(
            (SELECT x.path_id FROM file_paths x
             WHERE x.tenant_id = d.tenant_id AND x.virtual_path = d.depends_on_ref),
            d.depends_on_ref) AS TEXT)
        FROM reach r JOIN work_dependencies d ON d.path_id = r.path_id
        WHERE d.tenant_id = :tenant
    )
    SELECT origin FROM reach WHERE path_id = origin LIMIT 1
    """
).bindparams(sa.bindparam("origins", expanding=True))


_STALE_TABLES = sa.text(
    """
    SELECT c.relname FROM pg_class c
    WHERE c.relname = 'file_paths'
      AND c.relnamespace = to_regnamespace(current_schema())
      AND (c.reltuples < 0 OR pg_relation_size(c.oid) / 8192 > 2 * c.relpages + 128)
    ORDER BY c.relname
    """
)


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
        if self.row_level_security:
            self._declare_tenant_per_transaction()
        self._build_statements()

    # ------------------------------------------------------------------ plumbing

    def _build_statements(self) -> None:
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        put = insert(file_paths)
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
        server_now = (
            sa.func.now()
            if self.dialect == "postgresql"
            else sa.func.strftime(sa.literal_column("'%Y-%m-%d %H:%M:%f'"), "now")
        )
        self._server_now = server_now
        upsert = insert(file_metadata).values(created_at=server_now, updated_at=server_now)
        self._upsert_metadata_stmt = upsert.on_conflict_do_update(
            index_elements=["path_id", "key"],
            set_={"value": upsert.excluded.value, "updated_at": upsert.excluded.updated_at},
        )
        if self.dialect == "postgresql":
            self._create_paths = (
                "INSERT INTO file_paths (path_id, tenant_id, virtual_path, size_bytes,"
                " created_at, updated_at)"
                " SELECT u.id, %(tenant)s, u.vp, 0, %(now)s, %(now)s"
                " FROM unnest(%(ids)s::text[], %(paths)s::text[]) AS u(id, vp)"
                " ON CONFLICT (tenant_id, virtual_path) DO NOTHING"
                " RETURNING path_id, virtual_path"
            )
            self._bulk_upsert = (
                "INSERT INTO file_metadata (path_id, key, value)"
                " SELECT * FROM unnest(%(ids)s::text[], %(keys)s::text[], %(values)s::jsonb[])"
                " ON CONFLICT (path_id, key) DO UPDATE"
                " SET value = excluded.value, updated_at = now()"
            )
        else:
            self._create_paths = (
                "INSERT INTO file_paths (path_id, tenant_id, virtual_path, size_bytes,"
                " created_at, updated_at)"
                " SELECT json_extract(j.value, '$[0]'), :tenant, json_extract(j.value, '$[1]'),"
                " 0, :now, :now FROM json_each(:rows) j WHERE true"
                " ON CONFLICT (tenant_id, virtual_path) DO NOTHING"
                " RETURNING path_id, virtual_path"
            )
            # Rows in array order, so that triggers see them in the order given.
            self._bulk_upsert = (
                "INSERT INTO file_metadata (path_id, key, value)"
                " SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'),"
                " json_extract(j.value, '$[2]') FROM json_each(:rows) j WHERE true"
                " ON CONFLICT (path_id, key) DO UPDATE"
                " SET value = excluded.value, updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')"
            )
        self._view_stmts: dict[tuple[str, bool], sa.Select[Any]] = {}
        self._views: dict[str, sa.Table] = {}
        for view in (
            ready_work_items,
            pending_work_items,
            blocked_work_items,
            work_by_priority,
            in_progress_work,
        ):
            # The views span tenants (as seen from a SQL shell); the store shows its own.
            # The tenant is compared plainly: no index leads with it, so each view's partial
            # index (which gives its order) serves the LIMIT, and PostgreSQL estimates the
            # filter from its statistics (through an expression it guessed 0.5 % of rows and
            # sorted every row instead).
            base = sa.select(view).where(view.c.tenant_id == sa.bindparam("tenant"))
            self._views[view.name] = view
            self._view_stmts[(view.name, False)] = base
            self._view_stmts[(view.name, True)] = base.limit(
                sa.bindparam("limit", type_=sa.Integer)
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
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self._write_engine.begin() as conn:
                    return work(conn)
            except sa.exc.DBAPIError as exc:
                sqlstate = getattr(exc.orig, "sqlstate", None)
                if sqlstate in RETRYABLE_SQLSTATES and attempt + 1 < WRITE_ATTEMPTS:
                    time.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
                    continue
                raise NexusDatabaseError(f"database write failed: {exc.orig}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

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
        rows = [self._new_path_row(item) for item in validate_batch("paths", paths)]
        if not rows:
            return 0
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = (
            insert(file_paths)
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
                self._refresh_statistics(conn)
            return len(created) + len(self._revive_deleted(conn, existed))

        return self._write(work)

    def _new_path_row(self, item: str | Mapping[str, Any]) -> dict[str, Any]:
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
            "tenant_id": self.tenant_id,
            "virtual_path": validate_path(spec.get("path")),
            "size_bytes": validate_positive_int("size", spec.get("size", 0), allow_zero=True),
            "content_hash": spec.get("content_hash"),
            "file_type": spec.get("file_type"),
            "created_at": now,
            "updated_at": now,
        }

    def _revive_deleted(
        self, conn: Connection, paths: builtins.list[str], now: datetime | None = None
    ) -> builtins.list[str]:
        """Bring soft-deleted paths back as new, empty files; returns their path_ids."""
        revived: builtins.list[str] = []
        for start in range(0, len(paths), CHUNK):
            # Locked (PostgreSQL): a concurrent writer reviving the same path waits, then no
            # longer finds it deleted, instead of reviving it a second time.
            revived += (
                conn.execute(
                    sa.select(file_paths.c.path_id)
                    .where(
                        file_paths.c.tenant_id == self.tenant_id,
                        file_paths.c.virtual_path.in_(paths[start : start + CHUNK]),
                        file_paths.c.deleted_at.is_not(None),
                    )
                    .order_by(file_paths.c.path_id)
                    .with_for_update()
                )
                .scalars()
                .all()
            )
        now = now or utcnow()
        for start in range(0, len(revived), CHUNK):
            chunk = revived[start : start + CHUNK]
            conn.execute(sa.delete(file_metadata).where(file_metadata.c.path_id.in_(chunk)))
            conn.execute(
                sa.update(file_paths)
                .where(file_paths.c.path_id.in_(chunk))
                .values(deleted_at=None, created_at=now, updated_at=now)
            )
        return revived

    def set_file_metadata_many(self, rows: Iterable[tuple[str, str, Any]]) -> int:
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
            if len(checked) >= CHUNK:
                self._refresh_statistics(conn)
            ids = self._resolve_many(conn, [ref for ref, _, _ in checked])
            dependencies = [(ref, value) for ref, key, value in checked if key == "depends_on"]
            if dependencies:
                self.lock_dependency_writes(conn)
            values = [
                {"path_id": ids[ref], "key": key, "value": value} for ref, key, value in checked
            ]
            # Status last, so its trigger builds each work row once, from every key.
            values.sort(key=lambda item: item["key"] == "status")
            self.write_metadata_rows(conn, values)
            for ref, value in dependencies:
                self.check_no_cycle(conn, ref, ids[ref], dependency_refs(value), value)
            return len(values)

        return self._write(work)

    def _refresh_statistics(self, conn: Connection) -> None:
        """PostgreSQL: ANALYZE ``file_paths`` when its planner statistics are missing or stale.

        A bulk call inside one transaction is invisible to autovacuum, and without statistics
        the planner believes the tables are tiny and scans them for every batched lookup. The
        ANALYZE runs in the caller's transaction (it counts the rows inserted so far) and is
        skipped while the statistics are current, as autovacuum would judge. Only
        ``file_paths``, the table looked up by virtual path: statistics of ``work_items`` or
        ``file_metadata`` taken halfway through a load (before their rows are written) would
        tell the planner they are empty or hold the wrong mix of statuses.
        """
        if self.dialect != "postgresql":
            return
        stale = conn.execute(_STALE_TABLES).scalars().all()
        for table in stale:  # names come from the fixed list in _STALE_TABLES, not from input
            conn.exec_driver_sql(f"ANALYZE {table}")

    def _resolve_many(self, conn: Connection, refs: list[str]) -> dict[str, str]:
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
                        tenant_of_path_is(self.tenant_id)
                        if column is file_paths.c.path_id
                        else file_paths.c.tenant_id == self.tenant_id,
                        file_paths.c.deleted_at.is_(None),
                    )
                ):
                    found[key] = path_id
        for ref in unique:
            if ref not in found:
                raise NexusFileNotFoundError(ref)
        return found

    # ------------------------------------------------------------------ for the layers above
    #
    # Transaction-level building blocks: each takes the connection of a transaction opened
    # with :meth:`write` (or a driver cursor of ``self.database``), so a caller can compose
    # several of them atomically. They validate nothing; their callers have.

    def ensure_paths(
        self, conn: Connection, paths: builtins.list[str], now: datetime
    ) -> tuple[dict[str, str], set[str]]:
        """Create missing paths and revive soft-deleted ones (empty).

        Returns path -> path_id, and the path_ids that are blank: created or revived here, so
        they carry no metadata yet. Only paths that already existed are looked up, and they
        stay locked until the transaction ends (PostgreSQL): a concurrent transaction creating
        the same paths waits for this one, so what it reads next (is the path a work item
        already?) includes what this one wrote.
        """
        found: dict[str, str] = {}
        stamp = self.database.timestamp(now)
        # One driver-level statement per batch: no per-row parameter processing.
        for start in range(0, len(paths), BULK_ROWS):
            chunk = paths[start : start + BULK_ROWS]
            ids = [new_path_id() for _ in chunk]
            if self.dialect == "postgresql":
                params: dict[str, Any] = {"ids": ids, "paths": chunk}
            else:
                params = {"rows": json_text([list(pair) for pair in zip(ids, chunk, strict=True)])}
            params.update(tenant=self.tenant_id, now=stamp)
            for path_id, path in conn.exec_driver_sql(self._create_paths, params):
                found[path] = path_id
        blank = set(found.values())
        existed = [path for path in paths if path not in found]
        if existed:
            self._refresh_statistics(conn)
            blank.update(self._revive_deleted(conn, existed, now))
            for start in range(0, len(existed), CHUNK):
                for path_id, path in conn.execute(
                    sa.select(file_paths.c.path_id, file_paths.c.virtual_path)
                    .where(
                        file_paths.c.tenant_id == self.tenant_id,
                        file_paths.c.virtual_path.in_(existed[start : start + CHUNK]),
                    )
                    .order_by(file_paths.c.virtual_path)
                    .with_for_update()
                ):
                    found[path] = path_id
        return found, blank

    def write_metadata_rows(self, conn: Connection, rows: builtins.list[dict[str, Any]]) -> None:
        """Upsert ``{"path_id", "key", "value"}`` rows, in order, as multi-row statements.

        One statement per batch of rows, built at driver level (a JSON array on SQLite,
        arrays on PostgreSQL): the database's rules then see each batch at once, which on
        PostgreSQL (statement triggers) is what makes bulk writes set-wise."""
        for start in range(0, len(rows), BULK_ROWS):
            conn.exec_driver_sql(
                self._bulk_upsert, self._upsert_params(rows[start : start + BULK_ROWS])
            )

    def write_metadata_driver(self, cursor: Any, rows: builtins.list[tuple[str, str, Any]]) -> None:
        """The same upsert on a driver cursor of ``self.database`` (one statement)."""
        cursor.execute(
            self._bulk_upsert,
            self._upsert_params([{"path_id": p, "key": k, "value": v} for p, k, v in rows]),
        )

    def _upsert_params(self, rows: builtins.list[dict[str, Any]]) -> dict[str, Any]:
        if self.dialect == "postgresql":
            return {
                "ids": [row["path_id"] for row in rows],
                "keys": [row["key"] for row in rows],
                "values": [json_text(row["value"]) for row in rows],
            }
        return {
            "rows": json_text(
                [[row["path_id"], row["key"], json_text(row["value"])] for row in rows]
            )
        }

    def is_referenced(
        self, conn: Connection, refs: builtins.list[str], besides: builtins.list[str]
    ) -> bool:
        """Whether a stored edge of this tenant, from a path not in ``besides``, names one of
        ``refs``."""
        for start in range(0, len(refs), CYCLE_CHUNK):
            if conn.execute(
                sa.select(work_dependencies.c.path_id)
                .where(
                    work_dependencies.c.depends_on_ref.in_(refs[start : start + CYCLE_CHUNK]),
                    work_dependencies.c.tenant_id == self.tenant_id,
                    work_dependencies.c.path_id.not_in(besides),
                )
                .limit(1)
            ).first():
                return True
        return False

    def check_acyclic_stored(
        self, conn: Connection, origins: Mapping[str, tuple[str, Any]]
    ) -> None:
        """Raise DependencyCycleError if any of ``origins`` (path_id -> (path, depends_on))
        reaches itself in the stored graph."""
        ids = builtins.list(origins)
        for start in range(0, len(ids), CYCLE_CHUNK):
            found = conn.execute(
                _CYCLE_CHECK_STORED,
                {"origins": ids[start : start + CYCLE_CHUNK], "tenant": self.tenant_id},
            ).scalar()
            if found is not None:
                path, depends_on = origins[found]
                raise DependencyCycleError(path, depends_on)

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
        order = path.collate("C") if self.dialect == "postgresql" else path
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
                self.lock_dependency_writes(conn)
                self.check_no_cycle(conn, ref, path_id, dependency_refs(value), value)
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

    def lock_dependency_writes(self, conn: Connection) -> None:
        """Serialise writers of ``depends_on`` (PostgreSQL), so cycle checks see each other."""
        if self.dialect == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(*DEPENDENCY_WRITE_LOCK)))

    def check_no_cycle(
        self,
        conn: Connection,
        ref: str,
        path_id: str,
        refs: builtins.list[str],
        value: Any = None,
    ) -> None:
        if not refs:
            return
        found = conn.execute(
            _CYCLE_CHECK, {"refs": refs, "tenant": self.tenant_id, "self": path_id}
        ).first()
        if found is not None:
            raise DependencyCycleError(ref, value if value is not None else refs)

    # ------------------------------------------------------------------ work views

    def _view(
        self,
        name: str,
        limit: int | None,
        tags: Iterable[str] | None,
        path_prefix: str | None,
        after: str | None,
    ) -> builtins.list[dict[str, Any]]:
        limit = validate_limit(limit)
        return self._read_view(name, limit, tags, path_prefix, after)

    def _page(
        self,
        name: str,
        limit: int,
        tags: Iterable[str] | None,
        path_prefix: str | None,
        after: str | None,
    ) -> WorkPage:
        checked = validate_limit(limit)
        if not checked:  # None or 0
            raise InvalidArgumentError("limit", limit, "a page holds at least one row")
        size = min(checked, MAX_LIMIT - 1)
        # One row more than the page: whether a next page exists, without another query.
        rows = self._read_view(name, size + 1, tags, path_prefix, after)
        if len(rows) <= size:
            return WorkPage(rows, None)
        del rows[size:]
        return WorkPage(rows, encode_cursor(name, rows[-1]))

    def _read_view(
        self,
        name: str,
        limit: int | None,
        tags: Iterable[str] | None,
        path_prefix: str | None,
        after: str | None,
    ) -> builtins.list[dict[str, Any]]:
        """The view's rows of this tenant, filtered, after the cursor, in the view's order.

        Everything is validated before the first statement. Without filters or cursor the
        prepared statement serves. A filter that selects few paths (at most
        ``FEW_FILTERED`` by its own index) is read through that index: those rows by primary
        key, sorted. Otherwise the view's order index is walked from the cursor, one keyset
        branch per statement, until ``limit`` rows pass the filters; all in one read
        transaction."""
        tag_list = validate_tags_filter(tags)
        prefix = None if path_prefix is None else validate_prefix(path_prefix)
        view = self._views[name]
        _tag, keys = VIEW_ORDERS[name]
        cursor_values = None if after is None else decode_cursor(name, after)
        params: dict[str, Any] = {"tenant": self.tenant_id}
        if tag_list is None and prefix is None and cursor_values is None:
            stmt = self._view_stmts[(name, limit is not None)]
            if limit is not None:
                params["limit"] = limit
            with self._reading() as conn:
                return [dict(row) for row in conn.execute(stmt, params).mappings()]
        base = self._view_stmts[(name, False)]
        if tag_list is not None:
            base = base.where(self._has_any_tag(view, tag_list))
        if prefix is not None:
            base = base.where(starts_with(view.c.virtual_path, prefix))
        if cursor_values is None:
            branches = [Branch([], view_order(view, keys, self.dialect))]
        else:
            branches = after_branches(view, keys, cursor_values, self.dialect)
        rows: builtins.list[dict[str, Any]] = []
        seen: set[str] = set()
        with self._reading() as conn, conn.begin():
            few = self._few_filtered(conn, tag_list, prefix)
            if few is not None:
                stmt = base.where(self._path_id_among(view, few))
                if cursor_values is not None:
                    stmt = stmt.where(sa.or_(*(sa.and_(*b.where) for b in branches)))
                stmt = stmt.order_by(*view_order(view, keys, self.dialect))
                if limit is not None:
                    stmt = stmt.limit(limit)
                return [dict(row) for row in conn.execute(stmt, params).mappings()]
            for branch in branches:
                stmt = base.where(*branch.where)
                if branch.order_by:
                    stmt = stmt.order_by(*branch.order_by)
                if limit is not None:
                    stmt = stmt.limit(limit - len(rows))
                for row in conn.execute(stmt, params).mappings():
                    # A row whose order key changed between two branches' statements.
                    if row["path_id"] not in seen:
                        seen.add(row["path_id"])
                        rows.append(dict(row))
                if limit is not None and len(rows) >= limit:
                    break
        return rows

    def _few_filtered(
        self, conn: Connection, tags: builtins.list[str] | None, prefix: str | None
    ) -> sa.Select[Any] | None:
        """PostgreSQL: the path_ids a filter selects through its own index (revision 0008),
        if they are few. Counting stops after FEW_FILTERED + 1, so a broad filter costs that
        many index entries here, and is then checked row by row on the walk in the view's
        order. SQLite: always None; its views name their order index (INDEXED BY), which
        rules out reading rows by primary key, so filters are checked on the walk."""
        if self.dialect != "postgresql":
            return None
        for selected in (self._under_prefix(prefix), self._tagged(tags)):
            if selected is None:
                continue
            count = conn.execute(
                sa.select(sa.func.count()).select_from(selected.limit(FEW_FILTERED + 1).subquery()),
                {"tenant": self.tenant_id},
            ).scalar_one()
            if count <= FEW_FILTERED:
                return selected
        return None

    def _path_id_among(self, view: sa.Table, selected: sa.Select[Any]) -> sa.ColumnElement[bool]:
        """``view.path_id`` is one of the ``selected`` path_ids, as ``= ANY (array)`` of a
        subquery run once: ``IN (subquery)`` is planned as a join above the view, and a hash
        join there loses the view's order."""
        listed = selected.subquery()
        ids = sa.select(sa.func.array_agg(listed.c.path_id)).scalar_subquery()
        # The cast makes it "= ANY (array)", not "= ANY (subquery)" (a join again).
        return view.c.path_id == sa.any_(sa.cast(ids, postgresql.ARRAY(sa.String)))

    def _under_prefix(self, prefix: str | None) -> sa.Select[Any] | None:
        """Live paths of this tenant starting with ``prefix``: a range of code points in
        ix_file_paths_prefix (``COLLATE "C"``)."""
        if prefix is None:
            return None
        path = file_paths.c.virtual_path.collate("C")
        stmt = sa.select(file_paths.c.path_id).where(
            file_paths.c.tenant_id == sa.bindparam("tenant"),
            file_paths.c.deleted_at.is_(None),
            path >= prefix,
        )
        upper = prefix_upper_bound(prefix)
        return stmt if upper is None else stmt.where(path < upper)

    def _tagged(self, tags: builtins.list[str] | None) -> sa.Select[Any] | None:
        """Work items of this tenant with any of ``tags``, through ix_work_items_tags (GIN)."""
        if tags is None:
            return None
        return sa.select(work_items.c.path_id).where(
            work_items.c.tenant_id == sa.bindparam("tenant"),
            work_items.c.tags.op("?|")(sa.bindparam(None, tags, type_=postgresql.ARRAY(sa.Text))),
        )

    def _has_any_tag(self, view: sa.Table, tags: builtins.list[str]) -> sa.ColumnElement[bool]:
        """The view row's work item has one of ``tags`` (looked up by primary key).

        PostgreSQL reads the view's order from the view itself (no outer ORDER BY), so the
        filter must not become a join: an EXISTS is planned as a semi-join, which may hash or
        merge the view's rows out of order. A scalar subquery stays a per-row filter."""
        item = work_items.alias("tagged")
        if self.dialect == "postgresql":
            item_tags = (
                sa.select(item.c.tags).where(item.c.path_id == view.c.path_id).scalar_subquery()
            )
            wanted = sa.bindparam(None, tags, type_=postgresql.ARRAY(sa.Text))
            return sa.func.coalesce(item_tags.op("?|")(wanted), sa.false())
        each = sa.func.json_each(item.c.tags).table_valued("value").alias("tag")
        return sa.exists(
            sa.select(sa.literal(1))
            .select_from(item.join(each, sa.true()))
            .where(item.c.path_id == view.c.path_id, each.c.value.in_(tags))
        )

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
        return self._view("ready_work_items", limit, tags, path_prefix, after)

    def get_pending_work(
        self,
        limit: int | None = None,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Status ``pending``, by priority (filters and ``after`` as for get_ready_work)."""
        return self._view("pending_work_items", limit, tags, path_prefix, after)

    def get_blocked_work(
        self,
        limit: int | None = None,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Ready/pending/blocked with unresolved dependencies; most blockers first."""
        return self._view("blocked_work_items", limit, tags, path_prefix, after)

    def get_work_by_priority(
        self,
        limit: int | None = None,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Every path with a status, by priority, with its tags."""
        return self._view("work_by_priority", limit, tags, path_prefix, after)

    def get_in_progress_work(
        self,
        limit: int | None = None,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Status ``in_progress`` with worker_id and started_at; newest start first."""
        return self._view("in_progress_work", limit, tags, path_prefix, after)

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
        return self._page("ready_work_items", limit, tags, path_prefix, after)

    def page_pending_work(
        self,
        limit: int = 100,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> WorkPage:
        """A page of get_pending_work (see page_ready_work)."""
        return self._page("pending_work_items", limit, tags, path_prefix, after)

    def page_blocked_work(
        self,
        limit: int = 100,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> WorkPage:
        """A page of get_blocked_work (see page_ready_work)."""
        return self._page("blocked_work_items", limit, tags, path_prefix, after)

    def page_work_by_priority(
        self,
        limit: int = 100,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> WorkPage:
        """A page of get_work_by_priority (see page_ready_work)."""
        return self._page("work_by_priority", limit, tags, path_prefix, after)

    def page_in_progress_work(
        self,
        limit: int = 100,
        *,
        tags: Iterable[str] | None = None,
        path_prefix: str | None = None,
        after: str | None = None,
    ) -> WorkPage:
        """A page of get_in_progress_work (see page_ready_work)."""
        return self._page("in_progress_work", limit, tags, path_prefix, after)

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
