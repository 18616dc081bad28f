"""The queue's read-outs for operators (used by the dashboard and metrics), on both
databases: ``page_failed_work`` pages every failed item once, newest first, across cursors;
``get_work_items`` returns items in the order asked; ``recent_workers`` names the workers of
the latest history and every current lease holder; ``work_throughput`` is one entry per
hour from the maintained hourly counters; ``work_event_counts`` counts every event;
``revoke_lease`` (an operator's release) takes an item back so that its worker's lease is
lost. Bad input is refused before anything is read."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from nexus.errors import (
    InvalidArgumentError,
    LeaseLostError,
    WorkItemStateError,
)
from nexus.work import WorkQueue


def _fail(queue: WorkQueue, paths: list[str]) -> None:
    for path in paths:
        queue.enqueue(path)
        (held,) = queue.claim_ready_work("w", path_prefix=path)
        queue.fail_work(held["virtual_path"], held["lease_token"], f"bad {path}", retry=False)


def test_page_failed_work_pages_newest_first(queue: WorkQueue) -> None:
    paths = [f"/f/{i:02d}" for i in range(7)]
    _fail(queue, paths)
    seen: list[str] = []
    items, cursor = queue.page_failed_work(3)
    seen += [i["virtual_path"] for i in items]
    while cursor is not None:
        items, cursor = queue.page_failed_work(3, after=cursor)
        seen += [i["virtual_path"] for i in items]
    assert seen == list(reversed(paths))
    assert all(i["last_error"] == f"bad {i['virtual_path']}" for i in items)
    # An item retried leaves the list.
    queue.retry_work("/f/03")
    assert "/f/03" not in [i["virtual_path"] for i in queue.page_failed_work(100)[0]]


def test_page_failed_work_rejects_bad_input(queue: WorkQueue) -> None:
    for cursor in ("nope", "bm9wZQ==", "WzEsMl0="):  # not base64 JSON / not a pair of text
        with pytest.raises(InvalidArgumentError):
            queue.page_failed_work(10, after=cursor)
    with pytest.raises(InvalidArgumentError):
        queue.page_failed_work(0)


def test_get_work_items_in_the_order_asked(queue: WorkQueue) -> None:
    items = queue.enqueue_many([{"path": f"/g/{i}"} for i in range(3)])
    ids = [i["path_id"] for i in reversed(items)]
    missing = "01a00000-0000-7000-8000-000000000000"
    found = queue.get_work_items([*ids, missing, ids[0]])
    assert [i["path_id"] for i in found] == ids
    assert queue.get_work_items([]) == []
    for bad in ("/g/0", ["/g/0"], [1]):
        with pytest.raises(InvalidArgumentError):
            queue.get_work_items(bad)  # type: ignore[arg-type]


def test_recent_workers(queue: WorkQueue) -> None:
    queue.enqueue_many([{"path": f"/r/{i}"} for i in range(3)])
    (a,) = queue.claim_ready_work("worker-a")
    queue.complete_work(a["virtual_path"], a["lease_token"])
    queue.claim_ready_work("worker-b", limit=2)
    workers = {w["worker_id"]: w for w in queue.recent_workers()}
    assert set(workers) == {"worker-a", "worker-b"}
    assert (workers["worker-a"]["completed"], workers["worker-a"]["holding"]) == (1, 0)
    assert (workers["worker-b"]["claimed"], workers["worker-b"]["holding"]) == (2, 2)
    assert workers["worker-b"]["next_lease_expiry"] is not None
    # A holder whose events are older than the window is still listed.
    newest = queue.recent_workers(window=1)
    assert {w["worker_id"] for w in newest} == {"worker-b"}
    queue.enqueue_many([{"path": f"/r/more/{i}"} for i in range(3)])  # 3 newer history rows
    held = {w["worker_id"]: w["holding"] for w in queue.recent_workers(window=2)}
    assert held == {"worker-b": 2}
    with pytest.raises(InvalidArgumentError):
        queue.recent_workers(window=0)


def test_work_throughput_per_hour(queue: WorkQueue, raw_engine: sa.Engine) -> None:
    queue.enqueue_many([{"path": f"/t/{i}"} for i in range(3)])
    for held in queue.claim_ready_work("w", limit=2):
        queue.complete_work(held["virtual_path"], held["lease_token"])
    hours = queue.work_throughput(6)
    assert len(hours) == 6
    assert [h["hour"] for h in hours] == sorted(h["hour"] for h in hours)
    assert hours[-1]["completed"] == 2
    assert sum(h["completed"] for h in hours[:-1]) == 0
    with pytest.raises(InvalidArgumentError):
        queue.work_throughput(0)


def test_event_counts(queue: WorkQueue) -> None:
    queue.enqueue_many([{"path": "/e/a"}, {"path": "/e/b", "depends_on": "/e/a"}])
    (held,) = queue.claim_ready_work("w")
    queue.heartbeat(held["virtual_path"], held["lease_token"])
    queue.complete_work(held["virtual_path"], held["lease_token"])
    counts = queue.work_event_counts()
    events = counts["events"]
    assert (events["enqueued"], events["claimed"], events["heartbeat"]) == (2, 1, 1)
    assert events["completed"] == 1 and events.get("promoted", 0) == 0  # b was ready anyway
    assert counts["run_seconds"]["count"] == 1
    assert counts["run_seconds"]["buckets"][-1] == (float("inf"), 1)


def test_revoke_lease(queue: WorkQueue) -> None:
    queue.enqueue("/v/a")
    (held,) = queue.claim_ready_work("worker-a")
    queue.revoke_lease("/v/a")
    item = queue.get_work_item("/v/a") or {}
    assert (item["status"], item["attempts"]) == ("ready", 0)
    with pytest.raises(LeaseLostError):
        queue.complete_work("/v/a", held["lease_token"])
    history = queue.get_work_history("/v/a")[-1]
    assert (history["event"], history["detail"]) == ("released", {"by": "operator"})
    with pytest.raises(WorkItemStateError):
        queue.revoke_lease("/v/a")  # ready, not in progress
    (again,) = queue.claim_ready_work("worker-b")
    assert again["attempts"] == 1
