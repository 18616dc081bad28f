"""A completion reports exactly the dependents its own transaction promoted (issue 12, item 1).

The list was read back as "ready dependents whose latest history event is ``promoted``", so a
dependent promoted by an earlier completion was reported again by every later completion of
the same dependency, and a promotion committed by another transaction could be counted as
ours. Each test goes through every API that reports promotions: ``complete_work``,
``complete_work_many``, ``complete_and_claim`` and the Worker's stats, on both databases.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import Worker, WorkQueue

Complete = Callable[[WorkQueue, str], list[str]]


def _claim(queue: WorkQueue, path: str) -> dict[str, Any]:
    [item] = queue.claim_ready_work("w", path_prefix=path)
    assert item["virtual_path"] == path
    return dict(item)


def _by_complete_work(queue: WorkQueue, path: str) -> list[str]:
    item = _claim(queue, path)
    return queue.complete_work(path, item["lease_token"])


def _by_complete_work_many(queue: WorkQueue, path: str) -> list[str]:
    item = _claim(queue, path)
    return queue.complete_work_many([(item["path_id"], item["lease_token"])])


def _by_complete_and_claim(queue: WorkQueue, path: str) -> list[str]:
    item = _claim(queue, path)
    promoted, _claimed = queue.complete_and_claim(
        [(path, item["lease_token"])], "w", path_prefix="/nothing-to-claim"
    )
    return promoted


def _by_worker(queue: WorkQueue, path: str) -> list[str]:
    """The worker runs only ``path`` (the others are not ready or outside its prefix), so its
    stats count the promotions of that one completion; the names come from the history."""
    worker = Worker(queue, lambda item: None, path_prefix=path, poll_interval=0.01)
    stats = worker.run(stop_when_idle=True)
    assert stats.completed == 1
    return ["?"] * stats.promoted


COMPLETIONS = {
    "complete_work": _by_complete_work,
    "complete_work_many": _by_complete_work_many,
    "complete_and_claim": _by_complete_and_claim,
    "worker": _by_worker,
}


def _expect(complete: Complete, promoted: list[str]) -> list[str]:
    return ["?"] * len(promoted) if complete is _by_worker else promoted


@pytest.fixture(params=list(COMPLETIONS))
def complete(request: pytest.FixtureRequest) -> Complete:
    return COMPLETIONS[request.param]


def test_a_dependent_promoted_before_is_not_reported_again(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, complete: Complete
) -> None:
    """The issue's scenario: /b is promoted once; /a set back to ready and completed again
    finds /b ready (waiting again, not blocked), so nothing is promoted the second time."""
    queue.enqueue("/a")
    queue.enqueue("/b", depends_on="/a", status="blocked")
    assert complete(queue, "/a") == _expect(complete, ["/b"])
    store.set_file_metadata("/a", "status", "ready")
    assert queue.get_work_item("/b")["status"] == "ready"  # type: ignore[index]
    assert queue.get_work_item("/b")["blocker_count"] == 1  # type: ignore[index]
    assert complete(queue, "/a") == []
    assert [e["event"] for e in queue.get_work_history("/b")] == ["enqueued", "promoted"]


def test_only_the_dependents_whose_last_blocker_this_completion_resolved(
    queue: WorkQueue, complete: Complete
) -> None:
    queue.enqueue_many(
        [
            {"path": "/x"},
            {"path": "/y"},
            {"path": "/c/both", "depends_on": ["/x", "/y"], "status": "blocked"},
            {"path": "/c/x-only", "depends_on": "/x", "status": "blocked"},
            {"path": "/c/y-only", "depends_on": "/y", "status": "blocked"},
            {"path": "/c/x-ready", "depends_on": "/x"},  # ready: waits, is never promoted
        ]
    )
    assert complete(queue, "/x") == _expect(complete, ["/c/x-only"])
    assert complete(queue, "/y") == _expect(complete, ["/c/both", "/c/y-only"])


def test_a_promotion_again_after_a_dependent_was_blocked_again(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, complete: Complete
) -> None:
    """Repeated promotion is reported each time it happens, and only then."""
    queue.enqueue("/r/a")
    queue.enqueue("/r/b", depends_on="/r/a", status="blocked")
    assert complete(queue, "/r/a") == _expect(complete, ["/r/b"])
    store.set_file_metadata("/r/a", "status", "ready")
    store.set_file_metadata("/r/b", "status", "blocked")
    assert complete(queue, "/r/a") == _expect(complete, ["/r/b"])
    store.set_file_metadata("/r/a", "status", "ready")
    assert complete(queue, "/r/a") == []


def test_a_promotion_committed_meanwhile_by_another_transaction_is_not_ours(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, db_url: str, backend: str
) -> None:
    """Another transaction completes /other (promoting /other/next) and commits while ours
    is between its completion and the read of its promotions; it is left out. (On SQLite the
    other writer waits for ours to commit: it cannot come in between.)"""
    queue.enqueue_many(
        [
            {"path": "/mine"},
            {"path": "/mine/next", "depends_on": "/mine", "status": "blocked"},
            {"path": "/other"},
            {"path": "/other/next", "depends_on": "/other", "status": "blocked"},
        ]
    )
    mine = _claim(queue, "/mine")
    engine = sa.create_engine(db_url)
    other_done = threading.Event()
    failures: list[BaseException] = []

    def complete_other() -> None:
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "UPDATE work_items SET status = 'completed' WHERE path_id ="
                        " (SELECT path_id FROM file_paths WHERE virtual_path = '/other')"
                    )
                )
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            other_done.set()

    thread = threading.Thread(target=complete_other)
    # The completion is the first statement on PostgreSQL, the first two on SQLite: the
    # other transaction starts before the next one, the read of the promotions.
    completion_statements = 1 if backend == "postgresql" else 2
    sent = [0]

    def tracer(_sql: str, _params: Any) -> None:
        if sent[0] == completion_statements:
            thread.start()
            if backend == "postgresql":
                assert other_done.wait(20), "the other transaction did not commit"
        sent[0] += 1

    store.database.tracer = tracer
    try:
        promoted = queue.complete_work("/mine", mine["lease_token"])
    finally:
        store.database.tracer = None
        if thread.ident is not None:
            thread.join(60)
        engine.dispose()
    assert not failures, failures
    assert other_done.is_set()
    assert promoted == ["/mine/next"]
    assert queue.get_work_item("/other/next")["status"] == "ready"  # type: ignore[index]
