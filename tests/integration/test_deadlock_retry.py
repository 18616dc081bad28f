"""Real PostgreSQL deadlocks and serialisation failures are retried, through the store's write
path (``store.write``, SQLAlchemy) and through the queue's driver-level path
(``store.database.transaction``):

* two threads, each on its own connection, lock the same two rows in opposite order;
  PostgreSQL aborts one with SQLSTATE 40P01; the retry runs that transaction again, both
  commit, and every increment is there exactly once;
* under SERIALIZABLE (set for the test's connections), two transactions each read both rows
  and write one (write skew); PostgreSQL aborts one with 40001; its retry reads the other's
  commit, so the result is the serial one.
"""

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

READ_BOTH = """
    SELECT sum((value #>> '{}')::int) FROM file_metadata
    WHERE path_id IN (%(a)s, %(b)s) AND key = 'n'"""
SET_TO = """
    UPDATE file_metadata SET value = to_jsonb(%(value)s::int)
    WHERE path_id = %(path_id)s AND key = 'n'"""

Execute = Callable[[str, dict[str, Any]], Any]
PATHS = ("/deadlock/a", "/deadlock/b")


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


Run = Callable[[SQLAlchemyMetadataStore, Callable[[Execute], None]], None]
THROUGH_BOTH_WRITE_PATHS = pytest.mark.parametrize(
    "run",
    [
        pytest.param(_through_store_write, id="store.write"),
        pytest.param(_through_database_transaction, id="database.transaction"),
    ],
)


def two_rows(store: SQLAlchemyMetadataStore) -> list[str]:
    """The path_ids of PATHS, each with metadata ``n`` = 0."""
    ids = []
    for path in PATHS:
        ids.append(store.put(path).path_id)
        store.set_file_metadata(path, "n", 0)
    return ids


def run_concurrently(
    store: SQLAlchemyMetadataStore, run: Run, works: dict[str, Callable[[Execute], None]]
) -> None:
    """Run each work as one transaction on its own thread; every one must commit."""
    outcome: dict[str, BaseException | None] = {}

    def transaction(name: str) -> None:
        try:
            run(store, works[name])
            outcome[name] = None
        except BaseException as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=transaction, args=(name,)) for name in works]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=50)
        assert not thread.is_alive(), "a transaction never finished"
    assert outcome == dict.fromkeys(works)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["postgresql"])
@THROUGH_BOTH_WRITE_PATHS
def test_a_deadlocked_transaction_is_retried_and_both_commit(
    store: SQLAlchemyMetadataStore, run: Run
) -> None:
    a, b = two_rows(store)
    both_hold_their_first_row = threading.Barrier(2, timeout=20)
    attempts = {"forward": 0, "backward": 0}
    errors: dict[str, list[str | None]] = {"forward": [], "backward": []}

    def increment(name: str, first: str, second: str) -> Callable[[Execute], None]:
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

        return work

    run_concurrently(
        store, run, {"forward": increment("forward", a, b), "backward": increment("backward", b, a)}
    )

    # At least one was a deadlock's victim and ran again (under load its retry can take the
    # row first and deadlock once more); every failed attempt was a deadlock, retried.
    failures = [state for name in errors for state in errors[name]]
    assert failures and set(failures) == {"40P01"}
    assert attempts == {name: 1 + len(errors[name]) for name in errors}
    # Each transaction's two increments landed exactly once.
    assert [store.get_file_metadata(path, "n") for path in PATHS] == [2, 2]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["postgresql"])
@THROUGH_BOTH_WRITE_PATHS
def test_a_serialisation_failure_is_retried_and_the_result_is_serial(
    make_store: Callable[..., SQLAlchemyMetadataStore], run: Run
) -> None:
    serializable = {"connect_args": {"options": "-c default_transaction_isolation=serializable"}}
    store = make_store(engine_options=serializable)
    a, b = two_rows(store)
    both_have_read = threading.Barrier(2, timeout=20)
    attempts = {"a": 0, "b": 0}

    def set_mine_to_sum_plus_one(name: str, mine: str) -> Callable[[Execute], None]:
        def work(execute: Execute) -> None:
            attempts[name] += 1
            total = int(execute(READ_BOTH, {"a": a, "b": b}).fetchone()[0])
            if attempts[name] == 1:
                both_have_read.wait()  # only the first attempt: the retry runs alone
            execute(SET_TO, {"value": total + 1, "path_id": mine})

        return work

    run_concurrently(
        store, run, {"a": set_mine_to_sum_plus_one("a", a), "b": set_mine_to_sum_plus_one("b", b)}
    )

    assert max(attempts.values()) >= 2  # someone's transaction failed and ran again
    # Serially: the first sets its row to 0 + 0 + 1, the second, having read that, to 1 + 1.
    # Both on the first attempt would give 1 and 1.
    assert sorted(store.get_file_metadata(path, "n") for path in PATHS) == [1, 2]
