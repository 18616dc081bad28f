"""Waiting for work to become ready without hammering the database.

PostgreSQL: ``LISTEN nexus_work_ready`` on a dedicated connection; a trigger on
``work_items`` notifies when an item becomes ready. SQLite: ``PRAGMA data_version`` on a
dedicated connection changes whenever another connection commits, so the waiter re-checks the
ready view only after a commit, sleeping with a bounded back-off in between.

Both also re-check at least every ``MAX_SLICE`` seconds, because an item whose ``run_after``
passes becomes ready without any write. A PostgreSQL listener that loses its connection (a
terminated backend, a restart) reconnects with a back-off and polls in the meantime; it
never raises a driver error.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from nexus.storage.engine import connection_error, sqlite_file_uri

NOTIFY_CHANNEL = "nexus_work_ready"
MAX_SLICE = 1.0
MIN_SLEEP = 0.005
MAX_SLEEP = 0.1
MAX_BACKOFF = 5.0


class ReadyWaiter:
    def __init__(self, url: str, has_ready_work: Callable[[], bool]) -> None:
        self._url = sa.engine.make_url(url)
        self._has_ready_work = has_ready_work
        self._conn: Any = None
        self._retry_at = 0.0
        self._backoff = MIN_SLEEP

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        if self._url.get_backend_name() == "postgresql":
            return self._wait_postgres(deadline)
        return self._wait_sqlite(deadline)

    def _wait_postgres(self, deadline: float) -> bool:
        import psycopg

        while True:
            if self._conn is None and time.monotonic() >= self._retry_at:
                try:
                    conninfo = self._url.set(drivername="postgresql").render_as_string(
                        hide_password=False
                    )
                    self._conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
                    self._conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._backoff = MIN_SLEEP
                except psycopg.Error:
                    # The server is away: poll meanwhile, try again after a back-off.
                    self._drop(psycopg)
            # Listening before checking: a notification sent in between is not lost.
            if self._has_ready_work():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._conn is None:
                time.sleep(
                    min(remaining, MAX_SLICE, max(MIN_SLEEP, self._retry_at - time.monotonic()))
                )
                continue
            try:
                for _ in self._conn.notifies(timeout=min(remaining, MAX_SLICE), stop_after=1):
                    pass
            except psycopg.Error:
                # A terminated backend or a restarted server: reconnect, polling meanwhile.
                self._drop(psycopg)

    def _drop(self, psycopg: Any) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(MAX_BACKOFF, self._backoff * 2)

    def _wait_sqlite(self, deadline: float) -> bool:
        if self._conn is None:
            if self._url.database in (None, "", ":memory:"):
                self._conn = sqlite3.connect(":memory:", check_same_thread=False)
            else:
                # The store has the file open already; a file gone since is an error here,
                # not a new empty database.
                try:
                    self._conn = sqlite3.connect(
                        sqlite_file_uri(self._url), uri=True, check_same_thread=False
                    )
                except sqlite3.Error as exc:
                    raise connection_error(exc, self._url) from exc
        last_version = None
        last_check = 0.0
        sleep = MIN_SLEEP
        while True:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            now = time.monotonic()
            if version != last_version or now - last_check >= MAX_SLICE:
                last_version, last_check = version, now
                if self._has_ready_work():
                    return True
                sleep = MIN_SLEEP
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(sleep, remaining))
            sleep = min(MAX_SLEEP, sleep * 2)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
