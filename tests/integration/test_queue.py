"""The work queue on SQLite and PostgreSQL, single process: enqueue, claims, leases and
fencing, retries with back-off, dead letters, promotion, history, stats, and that the views
keep answering for claimed items."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from nexus import (
    DependencyCycleError,
    InvalidArgumentError,
    InvalidPathError,
    LeaseLostError,
    NexusFileNotFoundError,
    WorkItemStateError,
)
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import RetryPolicy, WorkQueue
from nexus.work import leases as queue_module

FAST_RETRY = RetryPolicy(base_seconds=0.05, factor=2.0, max_seconds=1.0, jitter=0.0)


def paths(rows: list[dict[str, object]]) -> list[object]:
    return [row["virtual_path"] for row in rows]


# ---------------------------------------------------------------- enqueue


def test_enqueue_creates_path_and_is_idempotent(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
) -> None:
    item = queue.enqueue("/jobs/a", priority=2, tags=["x"])
    assert item["status"] == "ready" and item["priority"] == 2 and item["tags"] == ["x"]
    assert store.exists("/jobs/a")
    again = queue.enqueue("/jobs/a", priority=9, status="pending")
    assert again["path_id"] == item["path_id"]
    assert again["priority"] == 2 and again["status"] == "ready"
    assert [e["event"] for e in queue.get_work_history("/jobs/a")] == ["enqueued"]


def test_idempotency_key_returns_existing_item(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
) -> None:
    first = queue.enqueue("/jobs/a", idempotency_key="k1")
    second = queue.enqueue("/jobs/b", idempotency_key="k1")
    assert second["path_id"] == first["path_id"]
    assert not store.exists("/jobs/b")


def test_enqueue_keeps_existing_file(store: SQLAlchemyMetadataStore, queue: WorkQueue) -> None:
    store.put("/data/f", size=10, content_hash="abc")
    queue.enqueue("/data/f")
    record = store.get("/data/f")
    assert record is not None and record.size_bytes == 10 and record.content_hash == "abc"


def test_enqueue_many_builds_a_dag_in_one_call(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
) -> None:
    items = queue.enqueue_many(
        [
            {"path": "/dag/a", "priority": 1},
            {"path": "/dag/b", "depends_on": "/dag/a", "status": "blocked"},
            {"path": "/dag/c", "depends_on": ["/dag/a", "/dag/b"]},
        ]
    )
    # Freshly enqueued items do not know their blocker count (the database counts them);
    # reading them back does.
    assert [(i["virtual_path"], i["blocker_count"]) for i in items] == [
        ("/dag/a", None),
        ("/dag/b", None),
        ("/dag/c", None),
    ]
    counted = [queue.get_work_item(i["virtual_path"]) for i in items]
    assert [(i["virtual_path"], i["blocker_count"]) for i in counted if i] == [
        ("/dag/a", 0),
        ("/dag/b", 1),
        ("/dag/c", 2),
    ]
    assert paths(store.get_ready_work()) == ["/dag/a"]
    assert paths(store.get_blocked_work()) == ["/dag/c", "/dag/b"]


def test_enqueue_many_rejects_cycles_and_bad_items_writing_nothing(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
) -> None:
    with pytest.raises(DependencyCycleError):
        queue.enqueue_many(
            [{"path": "/c/a", "depends_on": "/c/b"}, {"path": "/c/b", "depends_on": "/c/a"}]
        )
    with pytest.raises(DependencyCycleError):
        queue.enqueue_many([{"path": "/c/self", "depends_on": "/c/self"}])
    with pytest.raises(InvalidPathError):
        queue.enqueue_many([{"path": "/ok"}, {"path": "no-slash"}])
    with pytest.raises(InvalidArgumentError):
        queue.enqueue_many([{"path": "/ok", "colour": "red"}])
    assert store.list("/") == []
    assert queue.work_stats()["by_status"]["ready"] == 0


def test_enqueue_many_detects_cycle_through_existing_items(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
) -> None:
    queue.enqueue("/e/old", depends_on="/e/new")  # names a path that does not exist yet
    with pytest.raises(DependencyCycleError):
        queue.enqueue_many([{"path": "/e/new", "depends_on": "/e/old"}])
    assert not store.exists("/e/new")


def test_enqueue_many_large_batch(store: SQLAlchemyMetadataStore, queue: WorkQueue) -> None:
    n = 1200  # over the IN-list chunk size
    queue.enqueue_many(
        [{"path": f"/bulk/{i:05d}", "priority": i % 7} for i in range(n)]
        + [{"path": "/bulk/last", "depends_on": [f"/bulk/{i:05d}" for i in range(0, n, 100)]}]
    )
    assert queue.work_stats()["ready"] == n
    [blocked] = store.get_blocked_work()
    assert blocked["blocker_count"] == n // 100


# ---------------------------------------------------------------- claims


def test_claim_moves_items_out_of_ready_into_in_progress(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
) -> None:
    queue.enqueue_many([{"path": f"/q/{i}", "priority": i} for i in range(5)])
    claimed = queue.claim_ready_work("w1", limit=2)
    assert paths(claimed) == ["/q/0", "/q/1"]
    assert all(c["lease_token"] and c["attempts"] == 1 for c in claimed)
    assert paths(store.get_ready_work()) == ["/q/2", "/q/3", "/q/4"]
    in_progress = store.get_in_progress_work()
    assert sorted(paths(in_progress)) == ["/q/0", "/q/1"]
    assert {row["worker_id"] for row in in_progress} == {"w1"}
    assert all(row["started_at"].tzinfo is not None for row in in_progress)
    assert store.get_file_metadata("/q/0", "status") == "in_progress"
    assert store.get_file_metadata("/q/0", "worker_id") == "w1"


def test_claim_filters_by_tags_and_prefix(queue: WorkQueue) -> None:
    queue.enqueue_many(
        [
            {"path": "/a/1", "tags": ["gpu"], "priority": 1},
            {"path": "/a/2", "tags": ["cpu"], "priority": 2},
            {"path": "/b/3", "tags": ["gpu", "big"], "priority": 3},
        ]
    )
    assert paths(queue.claim_ready_work("w", limit=5, tags=["big", "none"])) == ["/b/3"]
    assert paths(queue.claim_ready_work("w", limit=5, path_prefix="/a/")) == ["/a/1", "/a/2"]


def test_claim_skips_items_until_run_after(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
) -> None:
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    queue.enqueue("/later", run_after=later)
    queue.enqueue("/now")
    assert paths(store.get_ready_work()) == ["/now"]
    assert paths(queue.claim_ready_work("w", limit=5)) == ["/now"]
    assert queue.claim_ready_work("w") == []


def test_claim_validates_arguments(queue: WorkQueue) -> None:
    for kwargs in ({"limit": 0}, {"limit": True}, {"lease_seconds": 0}, {"tags": "gpu"}):
        with pytest.raises(ValueError):
            queue.claim_ready_work("w", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        queue.claim_ready_work("")


# ---------------------------------------------------------------- completion, promotion


def test_complete_promotes_blocked_dependents(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
) -> None:
    queue.enqueue_many(
        [
            {"path": "/p/a"},
            {"path": "/p/b"},
            {"path": "/p/needs-a", "depends_on": "/p/a", "status": "blocked"},
            {"path": "/p/needs-ab", "depends_on": ["/p/a", "/p/b"], "status": "blocked"},
        ]
    )
    [a] = queue.claim_ready_work("w", path_prefix="/p/a")
    assert queue.complete_work("/p/a", a["lease_token"], result={"rows": 3}) == ["/p/needs-a"]
    assert store.get_file_metadata("/p/a", "result") == {"rows": 3}
    assert store.get_file_metadata("/p/needs-a", "status") == "ready"
    assert store.get_file_metadata("/p/needs-ab", "status") == "blocked"
    [b] = queue.claim_ready_work("w", path_prefix="/p/b")
    assert queue.complete_work("/p/b", b["lease_token"]) == ["/p/needs-ab"]
    assert sorted(paths(store.get_ready_work())) == ["/p/needs-a", "/p/needs-ab"]
    events = [e["event"] for e in queue.get_work_history("/p/needs-ab")]
    assert events == ["enqueued", "promoted"]


def test_ready_dependents_become_ready_without_promotion(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
) -> None:
    queue.enqueue_many([{"path": "/r/a"}, {"path": "/r/b", "depends_on": "/r/a"}])
    [a] = queue.claim_ready_work("w")
    assert queue.complete_work("/r/a", a["lease_token"]) == []
    assert paths(store.get_ready_work()) == ["/r/b"]


def test_complete_work_many_is_all_or_nothing(queue: WorkQueue) -> None:
    queue.enqueue_many([{"path": f"/m/{i}"} for i in range(3)])
    claimed = queue.claim_ready_work("w", limit=3)
    tokens = {c["virtual_path"]: c["lease_token"] for c in claimed}
    with pytest.raises(LeaseLostError):
        queue.complete_work_many(
            [("/m/0", tokens["/m/0"]), ("/m/1", tokens["/m/1"]), ("/m/2", "bogus")]
        )
    assert queue.work_stats()["in_progress"] == 3
    queue.complete_work_many([(c["virtual_path"], c["lease_token"]) for c in claimed])
    assert queue.work_stats()["by_status"]["completed"] == 3


# ---------------------------------------------------------------- leases and fencing


def test_expired_lease_is_reclaimed_and_stale_token_fenced(
    queue: WorkQueue, make_queue: Callable[..., WorkQueue]
) -> None:
    queue.enqueue("/l/a")
    [old] = queue.claim_ready_work("old-worker", lease_seconds=0.05)
    time.sleep(0.15)
    # Another worker's queue has not looked for expired leases yet: its claim reclaims first.
    [new] = make_queue().claim_ready_work("new-worker", lease_seconds=60)
    assert new["virtual_path"] == "/l/a" and new["attempts"] == 2
    for call in (
        lambda: queue.heartbeat("/l/a", old["lease_token"]),
        lambda: queue.complete_work("/l/a", old["lease_token"]),
        lambda: queue.fail_work("/l/a", old["lease_token"], "late"),
        lambda: queue.release_work("/l/a", old["lease_token"]),
    ):
        with pytest.raises(LeaseLostError):
            call()
    item = queue.get_work_item("/l/a")
    assert item is not None
    assert item["status"] == "in_progress" and item["worker_id"] == "new-worker"
    queue.complete_work("/l/a", new["lease_token"])
    events = [e["event"] for e in queue.get_work_history("/l/a")]
    assert events == ["enqueued", "claimed", "reclaimed", "claimed", "completed"]


def test_claims_reclaim_at_most_once_per_interval(
    queue: WorkQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "RECLAIM_INTERVAL", 0.5)
    queue.enqueue_many([{"path": "/ri/a"}, {"path": "/ri/b"}])
    [a] = queue.claim_ready_work("w", lease_seconds=0.05, path_prefix="/ri/a")
    time.sleep(0.1)
    # The lease has expired, but this queue looked for expired leases a moment ago.
    assert paths(queue.claim_ready_work("w", path_prefix="/ri/a")) == []
    item = queue.get_work_item("/ri/a")
    assert item is not None and item["status"] == "in_progress" and item["attempts"] == 1
    time.sleep(0.5)
    # Once the interval has passed, the next claim (of anything) reclaims first.
    assert paths(queue.claim_ready_work("w", path_prefix="/ri/b")) == ["/ri/b"]
    item = queue.get_work_item("/ri/a")
    assert item is not None and item["status"] == "ready"
    [again] = queue.claim_ready_work("w", lease_seconds=0.05, path_prefix="/ri/a")
    assert again["attempts"] == 2 and again["lease_token"] != a["lease_token"]
    time.sleep(0.1)
    # An explicit rescue always runs, whatever the interval.
    assert queue.reclaim_expired_leases() == 1
    events = [e["event"] for e in queue.get_work_history("/ri/a")]
    assert events == ["enqueued", "claimed", "reclaimed", "claimed", "reclaimed"]


def test_heartbeat_extends_lease(queue: WorkQueue) -> None:
    queue.enqueue("/h/a")
    [c] = queue.claim_ready_work("w", lease_seconds=0.3)
    for _ in range(4):
        time.sleep(0.1)
        queue.heartbeat("/h/a", c["lease_token"])
    assert queue.reclaim_expired_leases() == 0
    assert queue.claim_ready_work("other") == []
    expires = queue.heartbeat("/h/a", c["lease_token"], lease_seconds=3600)
    assert expires > datetime.now(timezone.utc) + timedelta(minutes=59)


def test_reclaim_expired_leases_counts_and_dead_letters(queue: WorkQueue) -> None:
    queue.enqueue("/x/once", max_attempts=1)
    queue.enqueue("/x/twice", max_attempts=2)
    queue.claim_ready_work("w", limit=2, lease_seconds=0.05)
    time.sleep(0.15)
    assert queue.reclaim_expired_leases() == 2
    once, twice = queue.get_work_item("/x/once"), queue.get_work_item("/x/twice")
    assert once is not None and once["status"] == "failed" and once["last_error"] == "lease expired"
    assert twice is not None and twice["status"] == "ready"


def test_release_gives_item_back_untouched(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
) -> None:
    queue.enqueue("/rel/a")
    [c] = queue.claim_ready_work("w")
    queue.release_work("/rel/a", c["lease_token"])
    item = queue.get_work_item("/rel/a")
    assert item is not None and item["status"] == "ready" and item["attempts"] == 0
    assert paths(store.get_ready_work()) == ["/rel/a"]


def test_cancel(queue: WorkQueue) -> None:
    queue.enqueue("/can/a")
    queue.enqueue("/can/b")
    [c] = queue.claim_ready_work("w", path_prefix="/can/a")
    queue.cancel_work("/can/a")
    with pytest.raises(LeaseLostError):
        queue.complete_work("/can/a", c["lease_token"])
    queue.cancel_work("/can/b")
    assert queue.work_stats()["by_status"]["failed"] == 2
    assert queue.get_work_item("/can/b")["last_error"] == "cancelled"  # type: ignore[index]
    queue.enqueue("/can/c")
    [c] = queue.claim_ready_work("w")
    queue.complete_work("/can/c", c["lease_token"])
    with pytest.raises(WorkItemStateError):
        queue.cancel_work("/can/c")


# ---------------------------------------------------------------- retries


def test_retries_back_off_then_dead_letter(
    store: SQLAlchemyMetadataStore,
) -> None:
    # Delays long enough that a loaded machine still reads the view before run_after.
    policy = RetryPolicy(base_seconds=0.5, factor=2.0, max_seconds=5.0, jitter=0.0)
    queue = WorkQueue(store, retry_policy=policy)
    queue.enqueue("/f/a", max_attempts=3)
    delays = []
    for attempt in (1, 2):
        [c] = queue.claim_ready_work("w")
        assert c["attempts"] == attempt
        assert queue.fail_work("/f/a", c["lease_token"], f"boom {attempt}") == "ready"
        item = queue.get_work_item("/f/a")
        assert item is not None and item["run_after"] is not None
        delays.append((item["run_after"] - datetime.now(timezone.utc)).total_seconds())
        assert store.get_ready_work() == []  # not before run_after
        assert queue.wait_for_ready_work(5.0)
    assert 0 < delays[0] <= 0.5 and 0.5 < delays[1] <= 1.0  # doubling
    [c] = queue.claim_ready_work("w")
    assert queue.fail_work("/f/a", c["lease_token"], "boom 3") == "failed"
    item = queue.get_work_item("/f/a")
    assert item is not None and item["status"] == "failed" and item["last_error"] == "boom 3"
    events = [e["event"] for e in queue.get_work_history("/f/a")]
    assert events.count("retried") == 2 and events[-1] == "failed"
    failures = queue.work_analytics()["failures_by_error"]
    assert {row["error"] for row in failures} == {"boom 1", "boom 2", "boom 3"}
    queue.close()


def test_store_no_longer_takes_a_retry_policy(db_url: str) -> None:
    with pytest.raises(TypeError):
        SQLAlchemyMetadataStore(db_url, retry_policy=FAST_RETRY)  # type: ignore[call-arg]


def test_retry_work_puts_a_failed_item_back(queue: WorkQueue) -> None:
    queue.enqueue("/rw/a", max_attempts=2)
    for attempt in (1, 2):
        [c] = queue.claim_ready_work("w")
        assert c["attempts"] == 1  # reset by each retry_work
        queue.fail_work("/rw/a", c["lease_token"], f"boom {attempt}", retry=False)
        item = queue.get_work_item("/rw/a")
        assert item is not None and item["status"] == "failed"
        assert item["last_error"] == f"boom {attempt}" and item["finished_at"] is not None
        queue.retry_work("/rw/a")
        item = queue.get_work_item("/rw/a")
        assert item is not None and item["status"] == "ready" and item["attempts"] == 0
        assert item["last_error"] is None and item["finished_at"] is None
    # Attempts were reset: a full max_attempts budget again (the first failure retries).
    [c] = queue.claim_ready_work("w")
    assert c["attempts"] == 1
    assert queue.fail_work("/rw/a", c["lease_token"], "again") == "ready"
    # Only failed items can be retried; a cancelled one is failed.
    with pytest.raises(WorkItemStateError):
        queue.retry_work("/rw/a")
    queue.enqueue("/rw/cancelled")
    queue.cancel_work("/rw/cancelled")
    queue.retry_work("/rw/cancelled")
    assert paths(queue.claim_ready_work("w", path_prefix="/rw/cancelled")) == ["/rw/cancelled"]
    with pytest.raises(NexusFileNotFoundError):
        queue.retry_work("/rw/missing")
    events = [e["event"] for e in queue.get_work_history("/rw/cancelled")]
    assert events == ["enqueued", "cancelled", "requeued", "claimed"]
    assert queue.work_stats()["by_status"]["failed"] == 0


def test_fail_without_retry_goes_straight_to_failed(queue: WorkQueue) -> None:
    queue.enqueue("/f/b", max_attempts=5)
    [c] = queue.claim_ready_work("w")
    assert queue.fail_work("/f/b", c["lease_token"], "fatal", retry=False) == "failed"


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(base_seconds=1, factor=2, max_seconds=10, jitter=0.2)
    for attempt, nominal in ((1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)):
        for _ in range(20):
            assert nominal * 0.8 - 1e-9 <= policy.delay(attempt) <= min(10, nominal * 1.2)
    with pytest.raises(InvalidArgumentError):
        RetryPolicy(jitter=1.5)


# ---------------------------------------------------------------- insight


def test_explain_blocked_walks_the_chain(queue: WorkQueue) -> None:
    queue.enqueue_many(
        [
            {"path": "/ex/root", "status": "pending"},
            {"path": "/ex/mid", "depends_on": "/ex/root"},
            {"path": "/ex/top", "depends_on": ["/ex/mid", "/ex/missing"]},
        ]
    )
    chain = queue.explain_blocked("/ex/top")
    assert [(c["path"], c["depth"], c["blocks"]) for c in chain] == [
        ("/ex/mid", 1, "/ex/top"),
        ("/ex/missing", 1, "/ex/top"),
        ("/ex/root", 2, "/ex/mid"),
    ]
    assert chain[1]["why"] == "missing" and chain[2]["status"] == "pending"


def test_work_stats_match_views(store: SQLAlchemyMetadataStore, queue: WorkQueue) -> None:
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    queue.enqueue_many(
        [
            {"path": "/s/r1"},
            {"path": "/s/r2", "priority": 1},
            {"path": "/s/later", "run_after": later},
            {"path": "/s/p", "status": "pending"},
            {"path": "/s/pb", "status": "pending", "depends_on": "/s/r1"},
            {"path": "/s/b", "status": "blocked", "depends_on": "/s/r1"},
            {"path": "/s/done", "status": "completed"},
        ]
    )
    queue.claim_ready_work("w", path_prefix="/s/r2")
    stats = queue.work_stats()
    assert stats["ready"] == len(store.get_ready_work()) == 1
    assert stats["pending"] == len(store.get_pending_work()) == 2
    assert stats["blocked"] == len(store.get_blocked_work()) == 2
    assert stats["in_progress"] == len(store.get_in_progress_work()) == 1
    assert stats["by_status"] == {
        "ready": 2,
        "pending": 2,
        "blocked": 1,
        "in_progress": 1,
        "completed": 1,
        "failed": 0,
    }


def test_analytics_views(queue: WorkQueue) -> None:
    queue.enqueue_many([{"path": f"/an/{i}"} for i in range(3)])
    for c in queue.claim_ready_work("w", limit=3):
        queue.complete_work(c["virtual_path"], c["lease_token"])
    analytics = queue.work_analytics()
    [hour] = analytics["throughput_hourly"]
    assert hour["completed"] == 3 and hour["hour"].tzinfo is not None
    [timing] = analytics["timing_hourly"]
    assert timing["claims"] == 3 and timing["mean_run_seconds"] >= 0


def test_wait_for_ready_work(make_queue: Callable[..., WorkQueue]) -> None:
    waiter, writer = make_queue(), make_queue()
    start = time.monotonic()
    assert waiter.wait_for_ready_work(0.2) is False
    assert time.monotonic() - start >= 0.2
    import threading

    threading.Timer(0.2, lambda: writer.enqueue("/wake")).start()
    start = time.monotonic()
    assert waiter.wait_for_ready_work(5) is True
    assert time.monotonic() - start < 2


# ---------------------------------------------------------------- worker runner


def test_worker_heartbeats_keep_a_short_lease(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
    make_queue: Callable[..., WorkQueue],
) -> None:
    from nexus.work import Worker

    rival = make_queue()
    queue.enqueue("/w/slow")
    seen: list[list[dict[str, object]]] = []

    def handler(item: dict[str, object]) -> dict[str, bool]:
        time.sleep(0.4)
        seen.append(rival.claim_ready_work("rival"))  # the lease is still held
        time.sleep(0.4)
        return {"done": True}

    stats = Worker(queue, handler, worker_id="slow", lease_seconds=0.3).run(stop_when_idle=True)
    assert stats.completed == 1 and stats.lost == 0
    assert seen == [[]]
    item = queue.get_work_item("/w/slow")
    assert item is not None and item["status"] == "completed" and item["attempts"] == 1
    events = [e["event"] for e in queue.get_work_history("/w/slow")]
    assert "heartbeat" in events and "reclaimed" not in events
    assert store.get_file_metadata("/w/slow", "result") == {"done": True}


def test_worker_fails_items_whose_handler_raises(queue: WorkQueue) -> None:
    from nexus.work import Worker

    queue.enqueue("/w/bad", max_attempts=1)

    def handler(item: dict[str, object]) -> None:
        raise RuntimeError("no luck")

    stats = Worker(queue, handler).run(stop_when_idle=True)
    assert stats.failed == 1
    item = queue.get_work_item("/w/bad")
    assert item is not None and item["status"] == "failed"
    assert item["last_error"] == "RuntimeError: no luck"
