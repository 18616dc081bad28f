"""Losing the PostgreSQL connection is survived (real backends terminated with
``pg_terminate_backend``): the ready-work listener reconnects and never raises a driver error,
a queue call on a dead connection gets one typed NexusDatabaseError and the next call works,
and a Worker whose backend dies while it writes its result retries the write (the handler is
not run again, no attempt is used up)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from nexus.errors import NexusConnectionError, NexusDatabaseError
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import RetryPolicy, Worker, WorkQueue


@pytest.fixture
def pg_store(pg_migrated_url: str) -> Iterator[SQLAlchemyMetadataStore]:
    from tests.conftest import _truncate_postgres

    _truncate_postgres(pg_migrated_url)
    with SQLAlchemyMetadataStore(pg_migrated_url) as store:
        yield store


@pytest.fixture
def terminate(pg_migrated_url: str) -> Iterator[Any]:
    admin = sa.create_engine(pg_migrated_url, isolation_level="AUTOCOMMIT")

    def kill(pid: int) -> None:
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()

    yield kill
    admin.dispose()


def test_the_listener_reconnects_after_its_backend_is_terminated(
    pg_store: SQLAlchemyMetadataStore, terminate: Any
) -> None:
    queue = WorkQueue(pg_store)
    other = WorkQueue(SQLAlchemyMetadataStore(pg_store.url))
    try:
        assert queue.wait_for_ready_work(0.05) is False  # the listener is open now
        waiter = queue._waiter
        assert waiter is not None and waiter._conn is not None
        terminate(waiter._conn.info.backend_pid)
        threading.Timer(0.3, lambda: other.enqueue("/after/kill")).start()
        assert queue.wait_for_ready_work(10) is True
    finally:
        queue.close()
        other.close()
        other.store.close()


def test_a_dead_driver_connection_is_one_typed_error_then_replaced(
    pg_store: SQLAlchemyMetadataStore, terminate: Any
) -> None:
    queue = WorkQueue(pg_store)
    queue.enqueue("/a")
    terminate(pg_store.database._connection().info.backend_pid)
    with pytest.raises(NexusDatabaseError):
        queue.claim_ready_work("w")
    (item,) = queue.claim_ready_work("w")
    assert item["virtual_path"] == "/a"


def test_the_worker_retries_its_write_when_its_backend_dies(
    pg_store: SQLAlchemyMetadataStore, terminate: Any
) -> None:
    queue = WorkQueue(pg_store)
    queue.enqueue("/w/once", max_attempts=1)
    runs: list[str] = []

    def handler(item: Any) -> str:
        runs.append(item["virtual_path"])
        # The worker's own connection dies between the handler and the write of its result.
        terminate(queue.db._connection().info.backend_pid)
        return "done"

    stats = Worker(queue, handler, poll_interval=0.05).run(stop_when_idle=True)
    assert runs == ["/w/once"]
    assert (stats.completed, stats.failed, stats.lost) == (1, 0, 0)
    done = queue.get_work_item("/w/once")
    assert done is not None
    assert (done["status"], done["attempts"]) == ("completed", 1)
    assert pg_store.get_file_metadata("/w/once", "result") == "done"


def test_the_worker_retries_recording_a_handler_failure_when_its_backend_dies(
    pg_store: SQLAlchemyMetadataStore, terminate: Any
) -> None:
    # Found by benchmarks/soak.py: the failure's write raised out of Worker.run().
    queue = WorkQueue(pg_store, retry_policy=RetryPolicy(base_seconds=0, jitter=0))
    queue.enqueue("/w/flaky", max_attempts=2)
    runs: list[int] = []

    def handler(item: Any) -> str:
        runs.append(item["attempts"])
        if item["attempts"] == 1:
            # The worker's own connection dies between the handler and the write of its failure.
            terminate(queue.db._connection().info.backend_pid)
            raise RuntimeError("first try fails")
        return "done"

    stats = Worker(queue, handler, poll_interval=0.05).run(stop_when_idle=True)
    assert runs == [1, 2]
    assert (stats.completed, stats.failed, stats.lost) == (1, 1, 0)
    assert [event["event"] for event in queue.get_work_history("/w/flaky")] == [
        "enqueued",
        "claimed",
        "retried",
        "claimed",
        "completed",
    ]


def test_a_server_that_cannot_be_reached_is_a_typed_error_for_driver_level_calls() -> None:
    # Found by benchmarks/soak.py: opening the driver connection (while the server restarts,
    # or when a backend dies during the driver's first-connect type lookups) raised the
    # driver's own exception, which Worker's write retries do not catch. Every queue call
    # runs through Database.transaction.
    from nexus.storage.database import Database
    from nexus.storage.engine import create_engine

    database = Database(
        create_engine("postgresql+psycopg://postgres@127.0.0.1:9/nowhere?connect_timeout=2")
    )
    try:
        with pytest.raises(NexusConnectionError) as caught:
            database.transaction(lambda cursor: cursor.execute("SELECT 1"))
        assert isinstance(caught.value, NexusDatabaseError)  # what Worker's retries catch
        assert str(caught.value) == (
            "cannot connect to postgresql+psycopg://postgres@127.0.0.1:9/nowhere?connect_timeout=2:"
            " connection refused: no server is accepting connections on 127.0.0.1:9"
        )
        assert caught.value.__cause__ is not None
    finally:
        database.close()
        database.engine.dispose()
