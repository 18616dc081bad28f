"""A real PostgreSQL deadlock is retried: two threads, each on its own connection, lock the
same two rows in opposite order through the store's write path (``store.write``, SQLAlchemy)
and through the queue's driver-level path (``store.database.transaction``). PostgreSQL aborts
one of them with SQLSTATE 40P01; the retry runs that transaction again, both commit, and every
increment is there exactly once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from nexus.storage.metadata_store import SQLAlchemyMetadataStore

INCREMENT = """
    UPDATE file_metadata SET value = to_jsonb((value #>> '{}')::int + 1)
    WHERE path_id = %(path_id)s AND key = 'n'"""

Execute = Callable[[str, dict[str, Any]], Any]


def _through_store_write(store: SQLAlchemyMetadataStore, work: Callable[[Execute], None]) -> None:
    store.write(lambda conn: work(conn.exec_driver_sql))


def _through_database_transaction(
    store: SQLAlchemyMetadataStore, work: Callable[[Execute], None]
) -> None:
    store.database.transaction(lambda cur: work(cur.execute))


def _sqlstate(exc: BaseException) -> str | None:
    if isinstance(exc, psycopg.Error):
        return exc.sqlstate
    if isinstance(exc, sa.exc.DBAPIError):
        return getattr(exc.orig, "sqlstate", None)
    return None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize(
    "run",
    [
        pytest.param(_through_store_write, id="store.write"),
        pytest.param(_through_database_transaction, id="database.transaction"),
    ],
)
def test_a_deadlocked_transaction_is_retried_and_both_commit(
    store: SQLAlchemyMetadataStore,
    run: Callable[[SQLAlchemyMetadataStore, Callable[[Execute], None]], None],
) -> None:
    ids = []
    for path in ("/deadlock/a", "/deadlock/b"):
        ids.append(store.put(path).path_id)
        store.set_file_metadata(path, "n", 0)
    both_hold_their_first_row = threading.Barrier(2, timeout=20)
    attempts = {"forward": 0, "backward": 0}
    errors: dict[str, list[str | None]] = {"forward": [], "backward": []}
    outcome: dict[str, BaseException | None] = {}

    def transaction(name: str, first: str, second: str) -> None:
        def work(execute: Execute) -> None:
            attempts[name] += 1
            try:
                execute(INCREMENT, {"path_id": first})
                if attempts[name] == 1:
                    # Only the first attempt waits: the retry must be able to finish alone.
                    both_hold_their_first_row.wait()
                execute(INCREMENT, {"path_id": second})
            except BaseException as exc:
                errors[name].append(_sqlstate(exc))
                raise

        try:
            run(store, work)
            outcome[name] = None
        except BaseException as exc:
            outcome[name] = exc

    threads = [
        threading.Thread(target=transaction, args=("forward", ids[0], ids[1])),
        threading.Thread(target=transaction, args=("backward", ids[1], ids[0])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=50)
        assert not thread.is_alive(), "a transaction never finished"

    assert outcome == {"forward": None, "backward": None}
    # One of the two was the deadlock's victim and ran again; the other ran once.
    assert sorted(errors.values()) == [[], ["40P01"]]
    assert sorted(attempts.values()) == [1, 2]
    # Each transaction's two increments landed exactly once.
    assert [store.get_file_metadata(path, "n") for path in ("/deadlock/a", "/deadlock/b")] == [
        2,
        2,
    ]
