"""``StopWorker``, on SQLite and PostgreSQL: a handler that cannot work at all (its program is
missing, say) raises it; the Worker gives that item back (ready, the attempt not counted,
history ``released``) instead of failing it, claims nothing more, settles what the other
handlers of the round did, and ``run()`` / ``run_once()`` raise the handler's exception."""

from __future__ import annotations

import threading

import pytest

from nexus.work import StopWorker, Worker, WorkItem, WorkQueue


def statuses(queue: WorkQueue, *paths: str) -> dict[str, tuple[str, int]]:
    found = {}
    for path in paths:
        item = queue.get_work_item(path)
        assert item is not None
        found[path] = (item["status"], item["attempts"])
    return found


def test_stop_worker_releases_the_item_and_stops(queue: WorkQueue) -> None:
    queue.enqueue_many([{"path": f"/s/{i}", "priority": i, "max_attempts": 1} for i in range(4)])
    reason = StopWorker("cannot run './proces.sh': No such file or directory")
    handled: list[str] = []

    def handler(item: WorkItem) -> dict[str, bool]:
        handled.append(item["virtual_path"])
        if item["virtual_path"] == "/s/1":
            raise reason
        return {"ok": True}

    worker = Worker(queue, handler, worker_id="w")
    with pytest.raises(StopWorker) as raised:
        worker.run(stop_when_idle=True)
    assert raised.value is reason
    assert handled == ["/s/0", "/s/1"]  # nothing claimed after the stop
    assert worker.stats.claimed == 2 and worker.stats.completed == 1
    assert worker.stats.released == 1 and worker.stats.failed == 0 and worker.stats.lost == 0
    assert statuses(queue, "/s/0", "/s/1", "/s/2", "/s/3") == {
        "/s/0": ("completed", 1),
        "/s/1": ("ready", 0),
        "/s/2": ("ready", 0),
        "/s/3": ("ready", 0),
    }
    assert [e["event"] for e in queue.get_work_history("/s/1")] == [
        "enqueued",
        "claimed",
        "released",
    ]


def test_the_other_handlers_of_the_round_finish_and_are_completed(queue: WorkQueue) -> None:
    queue.enqueue_many([{"path": f"/r/{i}"} for i in range(3)] + [{"path": "/r/later"}])
    all_started = threading.Barrier(3, timeout=30)

    def handler(item: WorkItem) -> None:
        all_started.wait()  # three handlers at once: one round
        if item["virtual_path"] == "/r/1":
            raise StopWorker("gone")

    worker = Worker(queue, handler, concurrency=3)
    with pytest.raises(StopWorker, match="gone"):
        worker.run()  # not stop_when_idle: only the StopWorker ends it
    assert statuses(queue, "/r/0", "/r/1", "/r/2", "/r/later") == {
        "/r/0": ("completed", 1),
        "/r/1": ("ready", 0),
        "/r/2": ("completed", 1),
        "/r/later": ("ready", 0),
    }
    assert (worker.stats.completed, worker.stats.released, worker.stats.failed) == (2, 1, 0)


def test_run_once_raises_it_too(queue: WorkQueue) -> None:
    queue.enqueue("/o/1")

    def handler(item: WorkItem) -> None:
        raise StopWorker("no")

    worker = Worker(queue, handler)
    with pytest.raises(StopWorker):
        worker.run_once()
    assert statuses(queue, "/o/1") == {"/o/1": ("ready", 0)}
    assert worker.stopping and worker.run_once() == 0
