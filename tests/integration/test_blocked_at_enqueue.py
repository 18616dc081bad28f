"""A ``blocked`` item enqueued when its dependencies have all completed already is ready at
once (history: enqueued, promoted), on both databases, through ``enqueue`` and
``enqueue_many``. Found by the soak (benchmarks/soak.py): whether a dependent ran used to
depend on whether its dependency finished before or after the enqueue; when it finished
before, the item stayed ``blocked`` with nothing unresolved, in no view, forever."""

from __future__ import annotations

from nexus.work import WorkQueue


def _complete(queue: WorkQueue, path: str) -> None:
    queue.enqueue(path)
    [item] = queue.claim_ready_work("w", path_prefix=path)
    queue.complete_work(path, str(item["lease_token"]))


def _events(queue: WorkQueue, path: str) -> list[str]:
    return [event["event"] for event in queue.get_work_history(path)]


def test_a_blocked_item_whose_dependencies_completed_is_ready(queue: WorkQueue) -> None:
    _complete(queue, "/done/a")
    _complete(queue, "/done/b")
    created = queue.enqueue("/late/one", depends_on=["/done/a", "/done/b"], status="blocked")
    assert created["status"] == "ready"
    [batch] = queue.enqueue_many(
        [{"path": "/late/two", "depends_on": "/done/a", "status": "blocked"}]
    )
    assert batch["status"] == "ready"
    for path in ("/late/one", "/late/two"):
        stored = queue.get_work_item(path)
        assert stored is not None and stored["status"] == "ready"
        assert _events(queue, path) == ["enqueued", "promoted"]
    claimed = {item["virtual_path"] for item in queue.claim_ready_work("w", limit=5)}
    assert claimed == {"/late/one", "/late/two"}
    assert queue.work_stats()["by_status"]["blocked"] == 0


def test_blocked_items_with_open_or_no_dependencies_stay_blocked(queue: WorkQueue) -> None:
    _complete(queue, "/done/a")
    queue.enqueue("/open/dep")
    queue.enqueue_many(
        [
            {"path": "/wait/mixed", "depends_on": ["/done/a", "/open/dep"], "status": "blocked"},
            {"path": "/wait/missing", "depends_on": "/nowhere", "status": "blocked"},
            {"path": "/wait/none", "status": "blocked"},
        ]
    )
    for path in ("/wait/mixed", "/wait/missing", "/wait/none"):
        stored = queue.get_work_item(path)
        assert stored is not None and stored["status"] == "blocked", path
    [item] = queue.claim_ready_work("w", path_prefix="/open/")
    assert queue.complete_work("/open/dep", str(item["lease_token"])) == ["/wait/mixed"]
    assert _events(queue, "/wait/mixed") == ["enqueued", "promoted"]
