"""Promises of docs/work-queue.md that earlier mutants of the queue survived, each with a test
that fails without it (on SQLite and PostgreSQL):

* a claim, whatever its filters, takes only its own tenant's items, even when another
  tenant's items share the database, come first in ready order and have the same paths;
* the rescue of expired leases touches only its own tenant's items;
* an expired lease that nobody has rescued yet is still honoured by heartbeat, complete,
  fail and release (fencing is by token, not by the clock);
* the fencing of the other calls: a released or failed item's old token is refused, and a
  settled item holds no lease;
* heartbeat's default is the last lease's length; ``reclaim_expired_leases`` rescues all
  expired leases, however many batches that takes; an error text is kept to 4,000
  characters; a release leaves the item as it was (attempts, ``last_error``);
* every transition writes the history row the docs' table lists, with its detail keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from nexus import LeaseLostError
from nexus.work import RetryPolicy, WorkQueue
from nexus.work import leases as queue_module

NO_DELAY = RetryPolicy(base_seconds=0, jitter=0)


def claimed_paths(items: list[Any]) -> list[str]:
    return [item["virtual_path"] for item in items]


def expire(queue: WorkQueue, path: str) -> dict[str, Any]:
    """Wait until the lease on ``path`` has expired; returns the (still in_progress) item."""
    while True:
        item = queue.get_work_item(path)
        assert item is not None and item["status"] == "in_progress"
        expires = item["lease_expires_at"]
        assert expires is not None
        # Past by more than the milliseconds the queue cuts its clock to.
        if expires + timedelta(milliseconds=10) < datetime.now(timezone.utc):
            return dict(item)
        time.sleep(0.02)


# ---------------------------------------------------------------- tenants


@pytest.mark.parametrize(
    "claim",
    [
        pytest.param({}, id="plain"),
        pytest.param({"tags": ["etl"]}, id="tags"),
        pytest.param({"path_prefix": "/jobs/"}, id="prefix"),
        pytest.param({"tags": ["etl"], "path_prefix": "/jobs/"}, id="tags-and-prefix"),
    ],
)
def test_a_claim_takes_only_its_own_tenants_items(
    make_queue: Callable[..., WorkQueue], claim: dict[str, Any]
) -> None:
    tenant_a, tenant_b = make_queue(tenant_id="a"), make_queue(tenant_id="b")
    # b's items come first in ready order and one has the same path as a's item.
    tenant_b.enqueue_many(
        [
            {"path": "/jobs/shared", "priority": 0, "tags": ["etl"]},
            {"path": "/jobs/b-only", "priority": 1, "tags": ["etl"]},
        ]
    )
    mine = tenant_a.enqueue("/jobs/shared", priority=5, tags=["etl"])

    taken = tenant_a.claim_ready_work("worker-a", limit=10, **claim)
    assert [(item["path_id"], item["virtual_path"]) for item in taken] == [
        (mine["path_id"], "/jobs/shared")
    ]
    assert tenant_a.claim_ready_work("worker-a", limit=10, **claim) == []

    # b's items are untouched: still ready, never claimed, all claimable by b.
    for path in ("/jobs/shared", "/jobs/b-only"):
        theirs = tenant_b.get_work_item(path)
        assert theirs is not None
        assert (theirs["status"], theirs["attempts"], theirs["worker_id"]) == ("ready", 0, None)
    taken_by_b = tenant_b.claim_ready_work("worker-b", limit=10, **claim)
    assert claimed_paths(taken_by_b) == ["/jobs/shared", "/jobs/b-only"]
    assert mine["path_id"] not in {item["path_id"] for item in taken_by_b}


def test_the_rescue_touches_only_its_own_tenants_leases(
    make_queue: Callable[..., WorkQueue],
) -> None:
    tenant_a, tenant_b = make_queue(tenant_id="a"), make_queue(tenant_id="b")
    tenant_b.enqueue("/jobs/theirs")
    [held] = tenant_b.claim_ready_work("worker-b", lease_seconds=0.05)
    expire(tenant_b, "/jobs/theirs")

    assert tenant_a.reclaim_expired_leases() == 0
    assert tenant_a.claim_ready_work("worker-a", limit=10) == []  # a claim rescues first too
    theirs = tenant_b.get_work_item("/jobs/theirs")
    assert theirs is not None and theirs["status"] == "in_progress"
    # Nobody in b rescued it, so b's expired lease is still good.
    assert tenant_b.complete_work("/jobs/theirs", held["lease_token"]) == []
    events = [event["event"] for event in tenant_b.get_work_history("/jobs/theirs")]
    assert events == ["enqueued", "claimed", "completed"]


# ---------------------------------------------------------------- expired, not rescued


def _heartbeat(queue: WorkQueue, path: str, token: str) -> str:
    expires = queue.heartbeat(path, token, lease_seconds=60)
    assert expires > datetime.now(timezone.utc)
    # The lease is live again: a rescue now leaves it alone.
    assert queue.reclaim_expired_leases() == 0
    return "in_progress"


def _complete(queue: WorkQueue, path: str, token: str) -> str:
    assert queue.complete_work(path, token, result={"ok": True}) == []
    return "completed"


def _complete_many(queue: WorkQueue, path: str, token: str) -> str:
    assert queue.complete_work_many([(path, token)]) == []
    return "completed"


def _fail(queue: WorkQueue, path: str, token: str) -> str:
    assert queue.fail_work(path, token, "boom") == "ready"
    return "ready"


def _release(queue: WorkQueue, path: str, token: str) -> str:
    queue.release_work(path, token)
    return "ready"


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(_heartbeat, id="heartbeat"),
        pytest.param(_complete, id="complete"),
        pytest.param(_complete_many, id="complete_many"),
        pytest.param(_fail, id="fail"),
        pytest.param(_release, id="release"),
    ],
)
def test_an_expired_lease_nobody_rescued_is_still_honoured(
    queue: WorkQueue, call: Callable[[WorkQueue, str, str], str]
) -> None:
    queue.enqueue("/jobs/slow")
    [item] = queue.claim_ready_work("worker-1", lease_seconds=0.05)
    expire(queue, "/jobs/slow")

    status = call(queue, "/jobs/slow", item["lease_token"])

    after = queue.get_work_item("/jobs/slow")
    assert after is not None and after["status"] == status
    events = [event["event"] for event in queue.get_work_history("/jobs/slow")]
    assert "reclaimed" not in events


# ---------------------------------------------------------------- fencing after a settle


@pytest.mark.parametrize("settle", ["release", "fail"])
def test_a_token_is_dead_once_its_lease_was_settled(
    make_queue: Callable[..., WorkQueue], settle: str
) -> None:
    queue = make_queue(retry_policy=NO_DELAY)
    queue.enqueue("/jobs/a")
    [first] = queue.claim_ready_work("worker-1")
    if settle == "release":
        queue.release_work("/jobs/a", first["lease_token"])
    else:
        queue.fail_work("/jobs/a", first["lease_token"], "boom")
    [second] = queue.claim_ready_work("worker-2")
    assert second["lease_token"] != first["lease_token"]
    for stale in (
        lambda: queue.heartbeat("/jobs/a", first["lease_token"]),
        lambda: queue.complete_work("/jobs/a", first["lease_token"]),
        lambda: queue.fail_work("/jobs/a", first["lease_token"], "late"),
        lambda: queue.release_work("/jobs/a", first["lease_token"]),
    ):
        with pytest.raises(LeaseLostError):
            stale()
    item = queue.get_work_item("/jobs/a")
    assert item is not None
    assert (item["status"], item["worker_id"]) == ("in_progress", "worker-2")
    queue.complete_work("/jobs/a", second["lease_token"])


def test_settled_items_hold_no_lease(make_queue: Callable[..., WorkQueue]) -> None:
    queue = make_queue(retry_policy=NO_DELAY)
    queue.enqueue_many(
        [
            {"path": f"/jobs/{name}", "max_attempts": 1 if name == "dead" else 3}
            for name in ("done", "retried", "dead", "released", "cancelled", "rescued")
        ]
    )
    held = {
        item["virtual_path"]: item["lease_token"]
        for item in queue.claim_ready_work("worker-1", limit=6, lease_seconds=60)
    }
    queue.complete_work("/jobs/done", held["/jobs/done"])
    queue.fail_work("/jobs/retried", held["/jobs/retried"], "boom")
    queue.fail_work("/jobs/dead", held["/jobs/dead"], "boom")
    queue.release_work("/jobs/released", held["/jobs/released"])
    queue.cancel_work("/jobs/cancelled")
    queue.heartbeat("/jobs/rescued", held["/jobs/rescued"], lease_seconds=0.05)
    expire(queue, "/jobs/rescued")
    assert queue.reclaim_expired_leases() == 1
    for path in held:
        item = queue.get_work_item(path)
        assert item is not None and item["status"] != "in_progress"
        assert (path, item["lease_expires_at"]) == (path, None)


# ---------------------------------------------------------------- the smaller promises


def test_heartbeat_extends_by_the_last_lease_length_by_default(queue: WorkQueue) -> None:
    queue.enqueue("/jobs/long")
    [item] = queue.claim_ready_work("worker-1", lease_seconds=30)

    def extended_by(seconds: float, **kwargs: float) -> bool:
        before = datetime.now(timezone.utc)
        expires = queue.heartbeat("/jobs/long", item["lease_token"], **kwargs)
        after = datetime.now(timezone.utc)
        window = timedelta(seconds=seconds)
        # Timestamps are cut to milliseconds.
        return before + window - timedelta(milliseconds=1) <= expires <= after + window

    assert extended_by(30)  # the claim's lease
    assert extended_by(600, lease_seconds=600)
    assert extended_by(600)  # now the last heartbeat's lease
    stored = queue.get_work_item("/jobs/long")
    assert stored is not None and stored["lease_expires_at"] is not None
    assert stored["lease_expires_at"] > datetime.now(timezone.utc) + timedelta(seconds=500)


def test_reclaim_expired_leases_rescues_every_batch(
    queue: WorkQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "RECLAIM_BATCH", 3)
    queue.enqueue_many([{"path": f"/jobs/{i}"} for i in range(7)])
    claimed = queue.claim_ready_work("worker-1", limit=7, lease_seconds=0.05)
    assert len(claimed) == 7
    for item in claimed:
        expire(queue, item["virtual_path"])
    assert queue.reclaim_expired_leases() == 7
    assert queue.work_stats()["by_status"]["ready"] == 7


def test_an_error_text_is_kept_to_4000_characters(make_queue: Callable[..., WorkQueue]) -> None:
    queue = make_queue(retry_policy=NO_DELAY)
    queue.enqueue("/jobs/noisy", max_attempts=1)
    [item] = queue.claim_ready_work("worker-1")
    assert queue.fail_work("/jobs/noisy", item["lease_token"], "e" * 5000) == "failed"
    failed = queue.get_work_item("/jobs/noisy")
    assert failed is not None and failed["last_error"] == "e" * 4000
    [event] = [e for e in queue.get_work_history("/jobs/noisy") if e["event"] == "failed"]
    assert event["detail"]["error"] == "e" * 4000


def test_a_release_leaves_the_item_as_it_was(make_queue: Callable[..., WorkQueue]) -> None:
    queue = make_queue(retry_policy=NO_DELAY)
    queue.enqueue("/jobs/a")
    [first] = queue.claim_ready_work("worker-1")
    queue.fail_work("/jobs/a", first["lease_token"], "boom")
    [second] = queue.claim_ready_work("worker-2")
    queue.release_work("/jobs/a", second["lease_token"])
    item = queue.get_work_item("/jobs/a")
    assert item is not None
    assert (item["status"], item["attempts"], item["last_error"]) == ("ready", 1, "boom")


# ---------------------------------------------------------------- history


class ClaimDetail:
    """Equal to a ``claimed`` detail of this attempt (any non-negative ``wait_seconds``)."""

    def __init__(self, attempt: int) -> None:
        self.attempt = attempt

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, dict)
            and set(other) == {"attempt", "wait_seconds"}
            and other["attempt"] == self.attempt
            and other["wait_seconds"] >= 0
        )

    def __repr__(self) -> str:
        return f"{{'attempt': {self.attempt}, 'wait_seconds': >= 0}}"


def _history(queue: WorkQueue, path: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    return [
        (event["event"], event["worker_id"], event["detail"] or {})
        for event in queue.get_work_history(path)
    ]


def test_every_transition_writes_its_documented_history_row(
    make_queue: Callable[..., WorkQueue],
) -> None:
    """The table in docs/work-queue.md#history-and-analytics: one row per transition, with
    the detail keys it lists."""
    queue = make_queue(retry_policy=RetryPolicy(base_seconds=0.001, jitter=0))
    queue.enqueue("/h/a")
    queue.enqueue("/h/b", depends_on="/h/a", status="blocked")
    queue.enqueue("/h/c", max_attempts=1)

    [a] = queue.claim_ready_work("w1", path_prefix="/h/a", lease_seconds=30)
    queue.heartbeat("/h/a", a["lease_token"], lease_seconds=45)
    assert queue.fail_work("/h/a", a["lease_token"], "flaky") == "ready"
    time.sleep(0.01)  # past run_after
    [a] = queue.claim_ready_work("w2", path_prefix="/h/a")
    queue.release_work("/h/a", a["lease_token"])
    [a] = queue.claim_ready_work("w3", path_prefix="/h/a")
    assert queue.complete_work("/h/a", a["lease_token"]) == ["/h/b"]

    history = _history(queue, "/h/a")
    assert [(event, worker) for event, worker, _ in history] == [
        ("enqueued", None),
        ("claimed", "w1"),
        ("heartbeat", "w1"),
        ("retried", "w1"),
        ("claimed", "w2"),
        ("released", "w2"),
        ("claimed", "w3"),
        ("completed", "w3"),
    ]
    details = [detail for _, _, detail in history]
    assert details[0] == {"status": "ready"}
    # A release does not count as an attempt.
    assert [details[1], details[4], details[6]] == [ClaimDetail(1), ClaimDetail(2), ClaimDetail(2)]
    assert details[2] == {"lease_seconds": 45}
    assert set(details[3]) == {"error", "attempt", "delay_seconds"}
    assert (details[3]["error"], details[3]["attempt"]) == ("flaky", 1)
    assert details[3]["delay_seconds"] > 0
    assert details[5] == {}
    assert set(details[7]) == {"attempt", "run_seconds"} and details[7]["attempt"] == 2
    assert details[7]["run_seconds"] >= 0
    assert [event for event, _, _ in _history(queue, "/h/b")] == ["enqueued", "promoted"]

    [c] = queue.claim_ready_work("w1", path_prefix="/h/c", lease_seconds=0.05)
    expire(queue, "/h/c")
    assert queue.reclaim_expired_leases() == 1  # no attempts left: dead letter
    queue.retry_work("/h/c")
    [c] = queue.claim_ready_work("w1", path_prefix="/h/c")
    queue.cancel_work("/h/c")
    queue.retry_work("/h/c")
    [c] = queue.claim_ready_work("w1", path_prefix="/h/c")
    assert queue.fail_work("/h/c", c["lease_token"], "fatal", retry=False) == "failed"
    assert _history(queue, "/h/c") == [
        ("enqueued", None, {"status": "ready"}),
        ("claimed", "w1", ClaimDetail(1)),
        ("reclaimed", "w1", {"to": "failed", "attempt": 1}),
        ("requeued", None, {}),
        ("claimed", "w1", ClaimDetail(1)),
        ("cancelled", None, {"from": "in_progress"}),
        ("requeued", None, {}),
        ("claimed", "w1", ClaimDetail(1)),
        ("failed", "w1", {"error": "fatal", "attempt": 1}),
    ]
