"""Which error every queue operation raises when it refuses, on SQLite and PostgreSQL: each
operation that names one item, against every situation it must refuse, gets the one type the
rule in docs/work-queue.md ("Which error") names, carrying the item's path and status now,
and changes nothing.

The rule: no such path → NexusFileNotFoundError; a path that is no work item →
WorkItemNotFoundError; a lease call (heartbeat, complete, fail, release) whose token does not
hold the item → LeaseLostError when the item had a lease (it is in_progress under another
one, or it was claimed once and has been settled, released, revoked or cancelled since),
WorkItemStateError when it never had one; an operator call (retry, cancel, revoke) on an item
in a status it does not take → WorkItemStateError."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from nexus.errors import (
    LeaseLostError,
    NexusError,
    NexusFileNotFoundError,
    WorkItemNotFoundError,
    WorkItemStateError,
)
from nexus.work import WorkQueue
from nexus.work.queue import CANCELLABLE

TOKEN = "not-the-token"

# Each situation: (name, how to make it at PATH, the status it leaves, whether the item was
# ever claimed). The builder returns the token a stale caller would hold (or a made-up one).
Build = Callable[[WorkQueue, str], str]


def _claim(queue: WorkQueue, path: str) -> str:
    [item] = queue.claim_ready_work("w", path_prefix=path)
    return str(item["lease_token"])


def _never_claimed(status: str) -> Build:
    def build(queue: WorkQueue, path: str) -> str:
        depends = "/nowhere" if status == "blocked" else None
        queue.enqueue(path, status=status, depends_on=depends)
        return TOKEN

    return build


def _cancelled(queue: WorkQueue, path: str) -> str:
    queue.enqueue(path)
    queue.cancel_work(path)
    return TOKEN


def _released(queue: WorkQueue, path: str) -> str:
    queue.enqueue(path)
    token = _claim(queue, path)
    queue.release_work(path, token)
    return token


def _revoked(queue: WorkQueue, path: str) -> str:
    queue.enqueue(path)
    token = _claim(queue, path)
    queue.revoke_lease(path)
    return token


def _completed(queue: WorkQueue, path: str) -> str:
    queue.enqueue(path)
    token = _claim(queue, path)
    queue.complete_work(path, token)
    return token


def _dead(queue: WorkQueue, path: str) -> str:
    queue.enqueue(path, max_attempts=1)
    token = _claim(queue, path)
    queue.fail_work(path, token, "boom")
    return token


def _cancelled_while_held(queue: WorkQueue, path: str) -> str:
    queue.enqueue(path)
    token = _claim(queue, path)
    queue.cancel_work(path)
    return token


def _held_by_another(queue: WorkQueue, path: str) -> str:
    queue.enqueue(path)
    _claim(queue, path)
    return TOKEN


def _no_work_item(queue: WorkQueue, path: str) -> str:
    queue.store.put(path)
    return TOKEN


def _no_path(queue: WorkQueue, path: str) -> str:
    return TOKEN


SITUATIONS: list[tuple[str, Build, str | None, bool]] = [
    ("ready, never claimed", _never_claimed("ready"), "ready", False),
    ("pending, never claimed", _never_claimed("pending"), "pending", False),
    ("blocked, never claimed", _never_claimed("blocked"), "blocked", False),
    ("cancelled before any claim", _cancelled, "failed", False),
    ("ready again, released", _released, "ready", True),
    ("ready again, lease revoked", _revoked, "ready", True),
    ("completed", _completed, "completed", True),
    ("dead-lettered", _dead, "failed", True),
    ("cancelled while held", _cancelled_while_held, "failed", True),
    ("in_progress under another lease", _held_by_another, "in_progress", True),
    ("no work item", _no_work_item, None, False),
    ("no such path", _no_path, None, False),
]

LeaseCall = Callable[[WorkQueue, str, str], Any]
LEASE_CALLS: dict[str, LeaseCall] = {
    "heartbeat": lambda q, path, token: q.heartbeat(path, token),
    "complete_work": lambda q, path, token: q.complete_work(path, token, result={"n": 1}),
    "complete_work_many": lambda q, path, token: q.complete_work_many([(path, token)]),
    "complete_and_claim": lambda q, path, token: q.complete_and_claim([(path, token)], "w2"),
    "fail_work": lambda q, path, token: q.fail_work(path, token, "late"),
    "release_work": lambda q, path, token: q.release_work(path, token),
}

OPERATOR_CALLS: dict[str, tuple[Callable[[WorkQueue, str], Any], tuple[str, ...]]] = {
    "retry_work": (lambda q, path: q.retry_work(path), ("failed",)),
    "cancel_work": (lambda q, path: q.cancel_work(path), CANCELLABLE),
    "revoke_lease": (lambda q, path: q.revoke_lease(path), ("in_progress",)),
}


def _snapshot(queue: WorkQueue, paths: list[str]) -> Any:
    """Everything a refused call must leave as it was: each item, each history, the counts
    (a refused complete_and_claim claims nothing either)."""
    return (
        [queue.get_work_item(path) for path in paths if queue.store.exists(path)],
        [
            [(e["event"], e["worker_id"]) for e in queue.get_work_history(path)]
            for path in paths
            if queue.store.exists(path)
        ],
        queue.work_stats(),
    )


def _setup(queue: WorkQueue) -> tuple[list[str], dict[str, str]]:
    """Every situation at a path of its own, plus a ready item a claim could take (a refused
    complete_and_claim must not)."""
    queue.enqueue("/spare", priority=-1)
    paths, tokens = [], {}
    for i, (name, build, _, _) in enumerate(SITUATIONS):
        path = f"/x/{i:02d}"
        tokens[name] = build(queue, path)
        paths.append(path)
    return paths, tokens


@pytest.mark.parametrize("operation", list(LEASE_CALLS))
def test_a_lease_call_that_is_refused_names_the_reason(
    queue: WorkQueue, operation: str
) -> None:
    paths, tokens = _setup(queue)
    call = LEASE_CALLS[operation]
    for (name, _, status, claimed), path in zip(SITUATIONS, paths, strict=True):
        before = _snapshot(queue, [*paths, "/spare"])
        with pytest.raises(NexusError) as caught:
            call(queue, path, tokens[name])
        error = caught.value
        if name == "no such path":
            assert type(error) is NexusFileNotFoundError, name
            assert error.path == path
        elif name == "no work item":
            assert type(error) is WorkItemNotFoundError, name
            assert error.path == path
        elif claimed:
            assert type(error) is LeaseLostError, (name, error)
            assert (error.path, error.lease_token, error.status) == (path, tokens[name], status)
        else:
            assert type(error) is WorkItemStateError, (name, error)
            assert (error.path, error.status) == (path, status), name
            assert (error.required, error.operation) == (("in_progress",), operation)
            assert str(error) == f"'{path}' is {status}; {operation} needs in_progress"
        assert _snapshot(queue, [*paths, "/spare"]) == before, name


@pytest.mark.parametrize("operation", list(OPERATOR_CALLS))
def test_an_operator_call_on_an_item_in_the_wrong_state_is_a_state_error(
    queue: WorkQueue, operation: str
) -> None:
    paths, _ = _setup(queue)
    call, required = OPERATOR_CALLS[operation]
    refused = 0
    for (name, _, status, _), path in zip(SITUATIONS, paths, strict=True):
        if status in required:
            continue  # not a wrong state for this operation
        before = _snapshot(queue, paths)
        with pytest.raises(NexusError) as caught:
            call(queue, path)
        error = caught.value
        if name == "no such path":
            assert type(error) is NexusFileNotFoundError, name
        elif name == "no work item":
            assert type(error) is WorkItemNotFoundError, name
        else:
            assert type(error) is WorkItemStateError, (name, error)
            assert (error.path, error.status, error.required, error.operation) == (
                path,
                status,
                required,
                operation,
            ), name
            refused += 1
        assert _snapshot(queue, paths) == before, name
    assert refused >= 1


def test_a_path_id_is_named_as_given(queue: WorkQueue) -> None:
    item = queue.enqueue("/by/id")
    with pytest.raises(WorkItemStateError) as caught:
        queue.retry_work(item["path_id"])
    assert (caught.value.path, caught.value.status) == (item["path_id"], "ready")
    with pytest.raises(WorkItemStateError) as state:
        queue.complete_work_many([("/by/id", "t")])
    assert state.value.operation == "complete_work_many"


def test_the_state_error_is_no_lookup_error(queue: WorkQueue) -> None:
    """A wrong state is not "not found": code catching WorkItemNotFoundError (or LookupError)
    for a missing item does not swallow it."""
    queue.enqueue("/w/a")
    with pytest.raises(WorkItemStateError) as caught:
        queue.retry_work("/w/a")
    assert not isinstance(caught.value, LookupError)
    assert not isinstance(caught.value, (WorkItemNotFoundError, LeaseLostError))


def test_a_stale_worker_always_gets_lease_lost(queue: WorkQueue) -> None:
    """Whatever ended its lease, and whether or not the item was claimed again since, the
    worker that held it gets LeaseLostError (what a worker loop catches)."""
    for end in ("revoke", "revoke and claim again", "cancel", "expire and rescue"):
        path = f"/stale/{end.replace(' ', '-')}"
        queue.enqueue(path)
        lease = 0.05 if end.startswith("expire") else 60
        [held] = queue.claim_ready_work("old", path_prefix=path, lease_seconds=lease)
        if end.startswith("revoke"):
            queue.revoke_lease(path)
        elif end == "cancel":
            queue.cancel_work(path)
        else:
            time.sleep(0.1)
            queue.reclaim_expired_leases()
        if end.endswith("claim again"):
            queue.claim_ready_work("new", path_prefix=path)
        for call in LEASE_CALLS.values():
            with pytest.raises(LeaseLostError):
                call(queue, path, str(held["lease_token"]))


@pytest.mark.parametrize("outcome", ["returns", "raises"])
@pytest.mark.parametrize("end", ["status removed", "lease revoked", "cancelled"])
def test_the_worker_counts_an_item_no_longer_its_own_as_lost(
    queue: WorkQueue, end: str, outcome: str
) -> None:
    """While a handler runs its item stops being the worker's: an operator revokes or
    cancels it, or removes its status (it is no work item any more). The worker records
    nothing for it, counts it lost and goes on with the next item."""
    from nexus.work import Worker

    queue.enqueue_many([{"path": "/wk/a", "priority": 0}, {"path": "/wk/b", "priority": 1}])

    ended: list[str] = []

    def handler(item: Any) -> dict[str, bool]:
        if item["virtual_path"] == "/wk/a" and not ended:  # a revoked item comes back: once
            ended.append(end)
            if end == "status removed":
                queue.store.delete_file_metadata("/wk/a", "status")
            elif end == "lease revoked":
                queue.revoke_lease("/wk/a")
            else:
                queue.cancel_work("/wk/a")
            if outcome == "raises":
                raise RuntimeError("handler failed too")
        return {"ok": True}

    stats = Worker(queue, handler, worker_id="wk").run(stop_when_idle=True)
    again = 1 if end == "lease revoked" else 0  # ready again: claimed and completed once more
    assert (stats.claimed, stats.completed, stats.failed, stats.lost) == (
        2 + again,
        1 + again,
        0,
        1,
    )
    assert (queue.get_work_item("/wk/b") or {})["status"] == "completed"
    a = queue.get_work_item("/wk/a")
    if end == "status removed":
        assert a is None
    else:
        assert a is not None and a["status"] == ("completed" if again else "failed")
        assert a["last_error"] == (None if again else "cancelled")
