"""Per-dialect drivers of the work queue: :class:`~.base.Driver` and its two implementations.

``driver_for(dialect)`` gives the one driver instance of a SQLAlchemy dialect name.
"""

from __future__ import annotations

from functools import cache

from nexus.work.drivers.base import Completion, Driver, Lease, NewItem, Statement
from nexus.work.drivers.postgresql import PostgreSQLDriver
from nexus.work.drivers.sqlite import SQLiteDriver

_DRIVERS: dict[str, type[Driver]] = {
    SQLiteDriver.name: SQLiteDriver,
    PostgreSQLDriver.name: PostgreSQLDriver,
}


@cache
def driver_for(dialect: str) -> Driver:
    """The driver of a dialect (``sqlite`` or ``postgresql``)."""
    try:
        return _DRIVERS[dialect]()
    except KeyError:
        raise LookupError(f"no work-queue driver for the {dialect!r} dialect") from None


__all__ = [
    "Completion",
    "Driver",
    "Lease",
    "NewItem",
    "PostgreSQLDriver",
    "SQLiteDriver",
    "Statement",
    "driver_for",
]
