"""``WorkQueue.get_dependencies`` and ``get_dependents`` on SQLite and PostgreSQL: the
direct edges of a path in both directions, resolved or not, whether the dependency was
written as a virtual path or a path_id, without deleted paths or other tenants' items."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nexus.errors import NexusFileNotFoundError
from nexus.work import WorkQueue


def test_dependencies_include_resolved_missing_and_deleted_targets(queue: WorkQueue) -> None:
    queue.enqueue_many(
        [
            {"path": "/d/done"},
            {"path": "/d/open", "status": "pending"},
            {"path": "/d/gone"},
            {"path": "/d/job", "depends_on": ["/d/done", "/d/open", "/d/gone", "/d/never"]},
        ]
    )
    [done] = queue.claim_ready_work("w", path_prefix="/d/done")
    queue.complete_work(done["virtual_path"], str(done["lease_token"]))
    queue.store.delete("/d/gone")
    deps = {d["path"]: d for d in queue.get_dependencies("/d/job")}
    assert set(deps) == {"/d/done", "/d/open", "/d/gone", "/d/never"}
    assert deps["/d/done"]["status"] == "completed" and deps["/d/done"]["why"] is None
    assert deps["/d/open"]["why"] == "status is pending, needs completed"
    assert deps["/d/gone"]["why"] == "deleted" and deps["/d/gone"]["status"] is None
    assert deps["/d/never"] == {
        "path": "/d/never",
        "path_id": None,
        "status": None,
        "why": "missing",
    }
    # explain_blocked still leaves the resolved one out.
    assert {b["path"] for b in queue.explain_blocked("/d/job")} == {
        "/d/open",
        "/d/gone",
        "/d/never",
    }


def test_dependents_by_path_or_path_id(queue: WorkQueue) -> None:
    [root] = queue.enqueue_many([{"path": "/e/root"}])
    queue.enqueue_many(
        [
            {"path": "/e/b-by-path", "depends_on": "/e/root", "status": "blocked"},
            {"path": "/e/a-by-id", "depends_on": [root["path_id"]]},
            {"path": "/e/unrelated"},
        ]
    )
    queue.store.put("/e/plain")  # not a work item, but it depends on the root
    queue.store.set_file_metadata("/e/plain", "depends_on", "/e/root")
    expected = [
        ("/e/a-by-id", "ready"),
        ("/e/b-by-path", "blocked"),
        ("/e/plain", None),
    ]
    for ref in ("/e/root", root["path_id"]):
        got = [(d["path"], d["status"]) for d in queue.get_dependents(ref)]
        assert got == expected
    assert queue.get_dependents("/e/unrelated") == []
    queue.store.delete("/e/b-by-path")
    assert [d["path"] for d in queue.get_dependents("/e/root")] == ["/e/a-by-id", "/e/plain"]
    ids = {d["path"]: d["path_id"] for d in queue.get_dependents("/e/root")}
    assert ids["/e/a-by-id"] == queue.store.get_path_id("/e/a-by-id")


def test_dependents_stay_in_their_tenant(make_queue: Callable[..., WorkQueue]) -> None:
    mine, theirs = make_queue(tenant_id="mine"), make_queue(tenant_id="theirs")
    for queue in (mine, theirs):
        queue.enqueue_many([{"path": "/t/root"}, {"path": "/t/child", "depends_on": "/t/root"}])
    theirs.enqueue("/t/only-theirs", depends_on="/t/root")
    assert [d["path"] for d in mine.get_dependents("/t/root")] == ["/t/child"]
    assert [d["path"] for d in theirs.get_dependents("/t/root")] == [
        "/t/child",
        "/t/only-theirs",
    ]


@pytest.mark.parametrize("method", ["get_dependencies", "get_dependents"])
def test_missing_path_raises(queue: WorkQueue, method: str) -> None:
    with pytest.raises(NexusFileNotFoundError):
        getattr(queue, method)("/nowhere")
