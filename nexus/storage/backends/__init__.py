"""Storage backends: what differs between SQLite and PostgreSQL below the work queue.

``backend_for(dialect)`` gives the one :class:`~.base.Backend` of a SQLAlchemy dialect
name: transaction control and error handling of driver connections
(:mod:`nexus.storage.database`), value and parameter shapes, the texts of the store's
driver-level statements (:mod:`nexus.storage.blocks`), and the store's SQLAlchemy
variants (upsert constructs, the database clock, index-driven view filters).
"""

from __future__ import annotations

from functools import cache

from nexus.storage.backends.base import Backend
from nexus.storage.backends.postgresql import PostgreSQLBackend
from nexus.storage.backends.sqlite import SQLiteBackend


@cache
def backend_for(dialect: str) -> Backend:
    backends: dict[str, type[Backend]] = {"sqlite": SQLiteBackend, "postgresql": PostgreSQLBackend}
    try:
        return backends[dialect]()
    except KeyError:
        raise LookupError(f"no storage backend for the {dialect!r} dialect") from None


__all__ = ["Backend", "PostgreSQLBackend", "SQLiteBackend", "backend_for"]
