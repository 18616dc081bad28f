"""Retention, ``WorkQueue.prune``, on SQLite and PostgreSQL.

Finished items whose ``finished_at`` is older than the cutoff are gone with everything of their
path (work row, metadata, history, dependency edges, idempotency key, counters); newer ones,
other statuses and other tenants are kept. Only finished statuses can be pruned: anything else,
and every other bad argument, is rejected before anything is deleted. An item that something
not completed depends on is kept, so its dependents stay resolved (a missing reference would
block them); once they complete, or are pruned themselves, it goes too. Deletes run in
transactions of at most ``batch_size`` items.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from nexus import InvalidArgumentError
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.types import utcnow
from nexus.work import WorkQueue


def complete(queue: WorkQueue, count: int | None = None) -> list[str]:
    """Claim and complete ready items (all of them, or ``count``); their paths."""
    done: list[str] = []
    while count is None or len(done) < count:
        items = queue.claim_ready_work("w", limit=1 if count is not None else 100)
        if not items:
            break
        queue.complete_work_many([(i["path_id"], i["lease_token"] or "") for i in items])
        done += [i["virtual_path"] for i in items]
    return done


def fail(queue: WorkQueue, path: str) -> None:
    (item,) = queue.claim_ready_work("w", path_prefix=path)
    queue.fail_work(path, item["lease_token"] or "", "boom", retry=False)


def moment_between() -> datetime:
    """A cutoff strictly after everything finished so far and before anything finished
    later (timestamps have millisecond precision)."""
    time.sleep(0.01)
    cutoff = utcnow()
    time.sleep(0.01)
    return cutoff


def live_paths(store: SQLAlchemyMetadataStore) -> list[str]:
    return [r.virtual_path for r in store.list()]


@pytest.fixture
def rows_of(raw_engine: sa.Engine) -> Callable[[str], dict[str, int]]:
    """Rows left anywhere for a path_id (plain SQL, every table)."""

    def count(path_id: str) -> dict[str, int]:
        with raw_engine.connect() as conn:
            return {
                table: conn.execute(
                    sa.text(f"SELECT count(*) FROM {table} WHERE path_id = :id"), {"id": path_id}
                ).scalar_one()
                for table in (
                    "file_paths",
                    "file_metadata",
                    "work_items",
                    "work_dependencies",
                    "work_history",
                    "work_idempotency",
                )
            }

    return count


def test_old_completed_items_go_and_everything_else_stays(
    store: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    queue.enqueue_many([{"path": f"/old/{i}"} for i in range(3)])
    assert len(complete(queue)) == 3
    cutoff = moment_between()
    queue.enqueue_many([{"path": f"/new/{i}"} for i in range(2)])
    complete(queue)
    queue.enqueue("/other/failed")
    queue.enqueue("/other/cancelled")
    queue.enqueue("/other/running")
    fail(queue, "/other/failed")
    queue.cancel_work("/other/cancelled")
    queue.claim_ready_work("w", path_prefix="/other/running")
    queue.enqueue("/other/ready")
    store.put("/plain/file")
    time.sleep(0.01)

    assert queue.prune(cutoff) == 3

    assert live_paths(store) == [
        "/new/0",
        "/new/1",
        "/other/cancelled",
        "/other/failed",
        "/other/ready",
        "/other/running",
        "/plain/file",
    ]
    assert queue.work_stats()["by_status"]["completed"] == 2
    assert queue.prune(cutoff) == 0


def test_an_age_counts_back_from_now(store: SQLAlchemyMetadataStore, queue: WorkQueue) -> None:
    queue.enqueue_many([{"path": "/a"}, {"path": "/b"}])
    complete(queue)
    assert queue.prune(timedelta(hours=1)) == 0
    time.sleep(0.01)
    assert queue.prune(timedelta(0)) == 2
    assert live_paths(store) == []


def test_failed_and_cancelled_items_go_when_asked_for(
    store: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    queue.enqueue_many([{"path": "/done"}, {"path": "/failed"}, {"path": "/cancelled"}])
    queue.cancel_work("/cancelled")
    fail(queue, "/failed")
    complete(queue)
    time.sleep(0.01)
    assert queue.prune(timedelta(0), ("failed",)) == 2
    assert live_paths(store) == ["/done"]
    assert queue.prune(timedelta(0), "completed") == 1
    assert live_paths(store) == []


def test_a_pruned_item_leaves_no_row_anywhere(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
    rows_of: Callable[[str], dict[str, int]],
) -> None:
    item = queue.enqueue("/jobs/x", idempotency_key="key-x", tags=["t"], depends_on="/jobs/y")
    store.set_file_metadata("/jobs/x", "owner", "ada")
    queue.enqueue("/jobs/y")
    complete(queue)
    assert rows_of(item["path_id"])["work_history"] > 0
    time.sleep(0.01)
    assert queue.prune(timedelta(0)) == 2
    assert rows_of(item["path_id"]) == dict.fromkeys(rows_of(item["path_id"]), 0)
    assert queue.get_work_item("/jobs/x") is None
    assert queue.work_stats()["by_status"]["completed"] == 0
    # The idempotency key went with the item: it makes a new one.
    again = queue.enqueue("/jobs/x2", idempotency_key="key-x")
    assert again["virtual_path"] == "/jobs/x2"


def test_other_tenants_are_untouched(
    make_queue: Callable[..., WorkQueue], queue: WorkQueue
) -> None:
    other = make_queue(tenant_id="other")
    for q in (queue, other):
        q.enqueue_many([{"path": "/same/a"}, {"path": "/same/b"}])
        complete(q)
    time.sleep(0.01)
    assert queue.prune(timedelta(0)) == 2
    assert live_paths(queue.store) == []
    assert live_paths(other.store) == ["/same/a", "/same/b"]
    assert other.work_stats()["by_status"]["completed"] == 2


@pytest.mark.parametrize("by", ["path", "path_id"])
def test_a_completed_dependency_stays_while_a_dependent_is_unfinished(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, by: str
) -> None:
    dependency = queue.enqueue("/dag/dependency")
    complete(queue)
    ref = dependency["virtual_path"] if by == "path" else dependency["path_id"]
    queue.enqueue("/dag/dependent", depends_on=ref)
    queue.enqueue("/dag/failing", depends_on=ref)
    fail(queue, "/dag/failing")
    time.sleep(0.01)

    assert queue.prune(timedelta(0)) == 0
    # The dependents are still resolved: one is ready (and claimable), one can be retried.
    assert [r["virtual_path"] for r in store.get_ready_work()] == ["/dag/dependent"]
    assert store.get_blocked_work() == []
    queue.retry_work("/dag/failing")
    assert [r["virtual_path"] for r in store.get_ready_work()] == [
        "/dag/dependent",
        "/dag/failing",
    ]
    assert sorted(complete(queue)) == ["/dag/dependent", "/dag/failing"]
    time.sleep(0.01)

    # All three completed: nothing holds the dependency any more.
    assert queue.prune(timedelta(0)) == 3
    assert live_paths(store) == []


def test_a_dependency_goes_once_its_failed_dependent_is_pruned_in_the_same_call(
    store: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    queue.enqueue("/dag/dependency")
    complete(queue)
    queue.enqueue("/dag/dependent", depends_on="/dag/dependency")
    fail(queue, "/dag/dependent")
    time.sleep(0.01)
    assert queue.prune(timedelta(0), ("completed", "failed"), batch_size=10) == 2
    assert live_paths(store) == []


def test_batches_are_bounded_and_all_of_them_run(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue.enqueue_many([{"path": f"/many/{i:02}"} for i in range(35)])
    complete(queue)
    queue.enqueue("/many/kept")
    time.sleep(0.01)
    per_transaction: list[Any] = []
    transaction = queue.db.transaction

    def recording(work: Callable[[Any], Any], **kwargs: Any) -> Any:
        result = transaction(work, **kwargs)
        per_transaction.append(result)
        return result

    monkeypatch.setattr(queue.db, "transaction", recording)
    assert queue.prune(timedelta(0), batch_size=10) == 35
    assert per_transaction == [10, 10, 10, 5, 0]
    assert live_paths(store) == ["/many/kept"]


@pytest.fixture
def finished(queue: WorkQueue) -> Iterator[WorkQueue]:
    queue.enqueue_many([{"path": "/x"}, {"path": "/y"}])
    complete(queue)
    time.sleep(0.01)
    yield queue
    # Whatever was rejected, nothing was deleted.
    assert queue.work_stats()["by_status"]["completed"] == 2


@pytest.mark.parametrize(
    "statuses",
    [
        ("ready",),
        ("in_progress",),
        ("pending",),
        ("blocked",),
        ("completed", "ready"),
        ("cancelled",),
        ("bogus",),
        (),
        [],
        None,
        5,
        {"completed"},
        ("completed", 1),
    ],
)
def test_only_finished_statuses_can_be_pruned(finished: WorkQueue, statuses: Any) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        finished.prune(timedelta(0), statuses)
    assert caught.value.name == "statuses"
    assert caught.value.value == statuses


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("older_than", timedelta(seconds=-1)),
        ("older_than", "yesterday"),
        ("older_than", 3600),
        ("older_than", None),
        ("batch_size", 0),
        ("batch_size", -5),
        ("batch_size", True),
        ("batch_size", 2.5),
    ],
)
def test_bad_arguments_are_rejected_before_anything_is_deleted(
    finished: WorkQueue, argument: str, value: Any
) -> None:
    kwargs: dict[str, Any] = {"older_than": timedelta(0), "batch_size": 10, argument: value}
    with pytest.raises(InvalidArgumentError) as caught:
        finished.prune(**kwargs)
    assert caught.value.name == argument


def test_a_naive_datetime_is_utc(queue: WorkQueue) -> None:
    queue.enqueue("/n")
    complete(queue)
    time.sleep(0.01)
    naive_now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert queue.prune(naive_now - timedelta(hours=1)) == 0
    assert queue.prune(naive_now) == 1


def test_a_huge_batch_size_is_fine(queue: WorkQueue) -> None:
    queue.enqueue("/h")
    complete(queue)
    time.sleep(0.01)
    assert queue.prune(timedelta(0), batch_size=2**62) == 1


def test_a_completed_dependent_stays_completed_when_its_dependency_is_pruned(
    store: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    queue.enqueue("/dag/first")
    complete(queue)
    cutoff = moment_between()
    queue.enqueue("/dag/second", depends_on="/dag/first")
    complete(queue)
    assert queue.prune(cutoff) == 1
    item = queue.get_work_item("/dag/second")
    assert item is not None and item["status"] == "completed"
    assert item["blocker_count"] == 1  # the missing reference
    assert [b["why"] for b in queue.explain_blocked("/dag/second")] == ["missing"]


def test_an_item_finished_by_a_metadata_write_has_no_finished_at_and_stays(
    store: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    store.put("/by/hand")
    store.set_file_metadata("/by/hand", "status", "completed")
    item = queue.get_work_item("/by/hand")
    assert item is not None and item["finished_at"] is None
    time.sleep(0.01)
    assert queue.prune(timedelta(0)) == 0
    assert live_paths(store) == ["/by/hand"]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgresql_claims_go_on_while_a_batch_is_open(
    queue: WorkQueue, make_queue: Callable[..., WorkQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prune batch held open (its transaction waits before the commit): a claim from another
    session goes through meanwhile. Lock behaviour, not timing: the batch is released only
    after the claim has returned."""
    queue.enqueue_many([{"path": f"/old/{i:02}"} for i in range(50)])
    complete(queue)
    queue.enqueue("/now/ready")
    time.sleep(0.01)

    pruner = make_queue()
    inside, release = threading.Event(), threading.Event()
    transaction = pruner.db.transaction

    def holding(work: Callable[[Any], Any], **kwargs: Any) -> Any:
        def held(cur: Any) -> Any:
            result = work(cur)
            if result:
                inside.set()
                release.wait(60)
            return result

        return transaction(held, **kwargs)

    monkeypatch.setattr(pruner.db, "transaction", holding)
    pruned: list[int] = []
    prune_thread = threading.Thread(
        target=lambda: pruned.append(pruner.prune(timedelta(seconds=0.005)))
    )
    prune_thread.start()
    try:
        assert inside.wait(30)
        claimed = make_queue().claim_ready_work("w2")
        assert [i["virtual_path"] for i in claimed] == ["/now/ready"]
    finally:
        release.set()
        prune_thread.join(timeout=60)
    assert pruned == [50]
