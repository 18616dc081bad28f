"""Two dependencies of one item completed at the same time by two transactions (PostgreSQL,
READ COMMITTED): the item ends with no unresolved dependency and is promoted. Found by
benchmarks/soak.py: the second transaction recounted the item from a snapshot taken before
the first committed, and the item kept one unresolved dependency forever. The first
transaction is held open until the second is waiting on the item's row, so the interleaving
is the bad one every time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue

pytestmark = pytest.mark.postgresql


@pytest.fixture
def pg_queue(pg_migrated_url: str) -> Iterator[WorkQueue]:
    from tests.conftest import _truncate_postgres

    _truncate_postgres(pg_migrated_url)
    with SQLAlchemyMetadataStore(pg_migrated_url) as store:
        queue = WorkQueue(store)
        yield queue
        queue.close()


COMPLETE = sa.text(
    "UPDATE work_items SET status = 'completed', finished_at = now()"
    " WHERE path_id = (SELECT path_id FROM file_paths WHERE virtual_path = :path)"
)


def test_two_dependencies_completed_concurrently_release_their_dependent(
    pg_queue: WorkQueue, pg_migrated_url: str
) -> None:
    pg_queue.enqueue_many(
        [
            {"path": "/dep/one"},
            {"path": "/dep/two"},
            {"path": "/after/both", "depends_on": ["/dep/one", "/dep/two"], "status": "blocked"},
        ]
    )
    engine = sa.create_engine(pg_migrated_url)
    try:
        first = engine.connect()
        first_tx = first.begin()
        first.execute(COMPLETE, {"path": "/dep/one"})  # holds /after/both's row now
        pid = first.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        failures: list[BaseException] = []

        def complete_second() -> None:
            try:
                with engine.begin() as second:
                    second.execute(COMPLETE, {"path": "/dep/two"})
            except BaseException as exc:  # reported below
                failures.append(exc)

        thread = threading.Thread(target=complete_second)
        thread.start()
        with engine.connect() as watcher:
            deadline = time.monotonic() + 20
            while not watcher.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND :pid = ANY (pg_blocking_pids(pid))"
                ),
                {"pid": pid},
            ).scalar():
                if not thread.is_alive():
                    break  # it failed (reported below) or did not need the row
                assert time.monotonic() < deadline, "the second completion never waited"
                # pg_stat_activity is a snapshot held for the whole transaction: end it, or
                # a second completion that starts waiting after the first look is never seen.
                watcher.rollback()
                time.sleep(0.02)
        first_tx.commit()
        first.close()
        thread.join(20)
        assert not thread.is_alive() and not failures, failures
    finally:
        engine.dispose()
    item = pg_queue.get_work_item("/after/both")
    assert item is not None
    assert (item["status"], item["blocker_count"]) == ("ready", 0)
    assert [e["event"] for e in pg_queue.get_work_history("/after/both")] == [
        "enqueued",
        "promoted",
    ]
