"""Column types that give the same Python values on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

# The plain-Python time helpers live in clock.py; importable from here as before.
from nexus.storage.clock import parse_timestamp as parse_timestamp
from nexus.storage.clock import sqlite_timestamp as sqlite_timestamp
from nexus.storage.clock import to_utc as to_utc
from nexus.storage.clock import truncate_to_ms as truncate_to_ms
from nexus.storage.clock import utcnow as utcnow


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes: ``timestamptz`` on PostgreSQL, sortable text on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True
    _last: tuple[Any, str, Any] | None = None

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        cached = self._last
        if cached is not None and cached[0] is value and cached[1] == dialect.name:
            return cached[2]  # a batch binds the same 'now' to every row
        moment = parse_timestamp(value) if isinstance(value, str) else to_utc(value)
        # Milliseconds on both databases, so values and orderings agree between them.
        bound = sqlite_timestamp(moment) if dialect.name == "sqlite" else truncate_to_ms(moment)
        self._last = (value, dialect.name, bound)
        return bound

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return parse_timestamp(value)
        return to_utc(value)


JSONValue = sa.JSON(none_as_null=False).with_variant(
    postgresql.JSONB(none_as_null=False), "postgresql"
)


_id_lock = threading.Lock()
_id_last = [0, 0]  # the millisecond of the last id made here, and its 12-bit sequence


def new_path_id() -> str:
    """A UUIDv7-shaped id: 48 bits of Unix milliseconds, a 12-bit sequence, random bits.

    Ids made close in time sort close together, so rows of items enqueued (and later
    claimed) together share index pages instead of landing on random ones; ids made by one
    process in the same millisecond sort in the order they were made (RFC 9562, method 1),
    so items of one batch with equal priority are claimed in the order given.
    """
    with _id_lock:
        millis = time.time_ns() // 1_000_000
        last, sequence = _id_last
        if millis <= last:
            millis, sequence = last, sequence + 1
            if sequence > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                millis, sequence = last + 1, 0
        else:
            sequence = int.from_bytes(os.urandom(2), "big") & 0x3FF
        _id_last[:] = [millis, sequence]
    value = millis << 80 | sequence << 64 | int.from_bytes(os.urandom(8), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))
