"""Every example of the original feature description (../shared/seeds/000_*), run as written
(only placeholders filled in), on SQLite and, where a URL can be passed, on PostgreSQL:
setting work metadata, the Python API tour, the worker loop, dependency resolution, priority
scheduling and the monitoring dashboard. The assertions pin what each example shows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import nexus
from nexus.storage.metadata_store import SQLAlchemyMetadataStore


@pytest.fixture
def nx_config(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``nexus.connect`` config for the parametrized backend: data under tmp, the database
    named by URL."""
    monkeypatch.delenv("NEXUS_DATABASE_URL", raising=False)
    return {"data_dir": str(tmp_path / "nexus-data"), "database_url": db_url}


@pytest.fixture
def seed_store(db_url: str) -> Iterator[SQLAlchemyMetadataStore]:
    with SQLAlchemyMetadataStore(db_url) as store:
        yield store


def utcnow_naive_iso() -> str:
    """``datetime.utcnow().isoformat()`` of the seed, without the deprecation warning."""
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat()


def vp(rows: list[dict[str, Any]]) -> list[str]:
    return [row["virtual_path"] for row in rows]


# ------------------------------------------------------------ "Example: Setting Work Metadata"


def _setting_work_metadata(config: dict[str, str]) -> None:
    """The seed's example, step by step, with the views checked after each step."""
    nx = nexus.connect(config=config)
    # Write a work item file
    nx.write("/jobs/process-data.json", b'{"task": "data_processing"}')
    # Set work metadata
    store = nx.metadata
    # Mark as ready with priority
    store.set_file_metadata("/jobs/process-data.json", "status", "ready")
    store.set_file_metadata("/jobs/process-data.json", "priority", 1)  # High priority
    store.set_file_metadata("/jobs/process-data.json", "tags", ["urgent", "data"])
    [ready] = store.get_ready_work(limit=10)
    assert (ready["virtual_path"], ready["priority"]) == ("/jobs/process-data.json", 1)
    assert store.get_work_by_priority()[0]["tags"] == ["urgent", "data"]

    # Create a dependent work item
    nx.write("/jobs/analyze-results.json", b'{"task": "analysis"}')
    path_id_of_process_data = store.get_path_id("/jobs/process-data.json")
    store.set_file_metadata("/jobs/analyze-results.json", "status", "blocked")
    store.set_file_metadata("/jobs/analyze-results.json", "depends_on", path_id_of_process_data)
    store.set_file_metadata("/jobs/analyze-results.json", "priority", 2)
    [blocked] = store.get_blocked_work()
    assert (blocked["virtual_path"], blocked["blocker_count"], blocked["priority"]) == (
        "/jobs/analyze-results.json",
        1,
        2,
    )
    assert vp(store.get_ready_work()) == ["/jobs/process-data.json"]

    # Mark work as in-progress
    store.set_file_metadata("/jobs/process-data.json", "status", "in_progress")
    store.set_file_metadata("/jobs/process-data.json", "worker_id", "worker-123")
    started = utcnow_naive_iso()
    store.set_file_metadata("/jobs/process-data.json", "started_at", started)
    [active] = store.get_in_progress_work()
    assert (active["virtual_path"], active["worker_id"]) == (
        "/jobs/process-data.json",
        "worker-123",
    )
    # A naive ISO timestamp is UTC.
    expected = datetime.fromisoformat(started).replace(tzinfo=timezone.utc)
    assert abs(active["started_at"] - expected) < timedelta(milliseconds=1)
    assert store.get_ready_work() == []
    assert vp(store.get_blocked_work()) == ["/jobs/analyze-results.json"]

    # Mark work as completed
    store.set_file_metadata("/jobs/process-data.json", "status", "completed")
    assert store.get_in_progress_work() == []
    # The dependency is resolved, whoever completed it (here a plain metadata write): the
    # database promotes the blocked dependent to ready, so it never drops out of every view
    # (the seed's "Dependency Resolution" loop then finds nothing left to unblock).
    assert store.get_blocked_work() == []
    assert vp(store.get_ready_work()) == ["/jobs/analyze-results.json"]
    by_priority = store.get_work_by_priority()
    assert [(r["virtual_path"], r["status"]) for r in by_priority] == [
        ("/jobs/process-data.json", "completed"),
        ("/jobs/analyze-results.json", "ready"),
    ]
    nx.close()


def test_setting_work_metadata_exactly_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The literal example: ``nexus.connect(config={"data_dir": "./nexus-data"})`` from a
    working directory, SQLite at ./nexus-data/metadata.db."""
    monkeypatch.delenv("NEXUS_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    _setting_work_metadata({"data_dir": "./nexus-data"})
    assert (tmp_path / "nexus-data" / "metadata.db").is_file()
    with nexus.connect(config={"data_dir": "./nexus-data"}) as nx:
        assert nx.read("/jobs/analyze-results.json") == b'{"task": "analysis"}'


def test_setting_work_metadata_on_each_backend(nx_config: dict[str, str]) -> None:
    _setting_work_metadata(nx_config)


# ------------------------------------------------------------ "Python API"


def test_python_api_tour(
    db_url: str,
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    # Initialize metadata store ("metadata.db" on SQLite, as in the seed)
    store = SQLAlchemyMetadataStore("metadata.db" if backend == "sqlite" else db_url)
    for path, status, priority, extra in [
        ("/r1", "ready", 2, {}),
        ("/r0", "ready", 1, {}),
        ("/p", "pending", None, {}),
        ("/b", "blocked", 3, {"depends_on": "/p"}),
        ("/w", "in_progress", 4, {"worker_id": "worker-7"}),
    ]:
        store.put(path)
        store.set_file_metadata(path, "status", status)
        store.set_file_metadata(path, "priority", priority)
        for key, value in extra.items():
            store.set_file_metadata(path, key, value)

    # Get ready work items
    ready_items = store.get_ready_work(limit=10)
    for item in ready_items:
        print(f"Ready: {item['virtual_path']}, Priority: {item['priority']}")
    # Get pending work
    pending_items = store.get_pending_work()
    # Get blocked work
    blocked_items = store.get_blocked_work()
    for item in blocked_items:
        print(f"Blocked: {item['virtual_path']}, Blockers: {item['blocker_count']}")
    # Get in-progress work
    active_items = store.get_in_progress_work()
    for item in active_items:
        print(f"Processing: {item['virtual_path']}, Worker: {item['worker_id']}")
    # Get work by priority
    prioritized = store.get_work_by_priority(limit=20)
    store.close()

    assert capsys.readouterr().out.splitlines() == [
        "Ready: /r0, Priority: 1",
        "Ready: /r1, Priority: 2",
        "Blocked: /b, Blockers: 1",
        "Processing: /w, Worker: worker-7",
    ]
    assert vp(pending_items) == ["/p"]
    assert vp(prioritized) == ["/r0", "/r1", "/b", "/w", "/p"]
    if backend == "sqlite":
        assert (tmp_path / "metadata.db").is_file()


# ------------------------------------------------------------ "1. Work Queue System"


def test_worker_loop(seed_store: SQLAlchemyMetadataStore) -> None:
    store = seed_store
    graph = {
        "/etl/extract": ("ready", 1, None),
        "/etl/clean": ("ready", 1, "/etl/extract"),
        "/etl/train": ("ready", 0, "/etl/clean"),
        "/etl/report": ("ready", None, ["/etl/train", "/etl/clean"]),
        "/misc/thumbs": ("ready", 5, None),
        "/misc/index": ("ready", 2, None),
    }
    for path, (status, priority, depends_on) in graph.items():
        store.put(path)
        store.set_file_metadata(path, "status", status)
        store.set_file_metadata(path, "priority", priority)
        store.set_file_metadata(path, "depends_on", depends_on)

    processed: list[str] = []
    worker_id = "worker-1"

    def process_work_item(item: dict[str, Any]) -> None:
        assert store.get_file_metadata(item["virtual_path"], "status") == "in_progress"
        assert vp(store.get_in_progress_work()) == [item["virtual_path"]]
        processed.append(item["virtual_path"])

    while True:
        ready_work = store.get_ready_work(limit=1)
        if ready_work:
            item = ready_work[0]
            # Mark as in-progress
            store.set_file_metadata(item["virtual_path"], "status", "in_progress")
            store.set_file_metadata(item["virtual_path"], "worker_id", worker_id)
            # Process work
            process_work_item(item)
            # Mark as completed
            store.set_file_metadata(item["virtual_path"], "status", "completed")
        else:
            break  # the seed sleeps and polls again; with no other writer, nothing will come
        assert len(processed) <= len(graph), "the loop processed an item twice"

    # Highest priority among what is ready at each step; dependencies always first.
    assert processed == [
        "/etl/extract",
        "/etl/clean",
        "/etl/train",
        "/misc/index",
        "/misc/thumbs",
        "/etl/report",
    ]
    assert {r["status"] for r in store.get_work_by_priority()} == {"completed"}
    assert store.get_blocked_work() == []


# ------------------------------------------------------------ "2. Dependency Resolution"


def _resolve_blockers(store: SQLAlchemyMetadataStore, blocked: list[dict[str, Any]]) -> None:
    """The seed's loop body, verbatim."""
    for item in blocked:
        # Check if blockers are now completed
        depends_on = store.get_file_metadata(item["virtual_path"], "depends_on")
        if depends_on:
            blocker_status = store.get_file_metadata(depends_on, "status")
            if blocker_status == "completed":
                # Unblock this item
                store.set_file_metadata(item["virtual_path"], "status", "ready")


def test_dependency_resolution(seed_store: SQLAlchemyMetadataStore) -> None:
    store = seed_store
    blocker_id = store.put("/jobs/blocker").path_id
    store.set_file_metadata("/jobs/blocker", "status", "in_progress")
    store.put("/jobs/waiting")
    store.set_file_metadata("/jobs/waiting", "status", "blocked")
    store.set_file_metadata("/jobs/waiting", "depends_on", blocker_id)  # a path_id
    # get_file_metadata accepts the path_id the example passes it.
    assert store.get_file_metadata(blocker_id, "status") == "in_progress"

    # Blocker still running: the loop leaves the item blocked.
    blocked = store.get_blocked_work()
    assert [(r["virtual_path"], r["blocker_count"]) for r in blocked] == [("/jobs/waiting", 1)]
    _resolve_blockers(store, blocked)
    assert store.get_file_metadata("/jobs/waiting", "status") == "blocked"

    # A worker fetched the blocked list, then the blocker completed: the loop unblocks it.
    blocked = store.get_blocked_work()
    store.set_file_metadata(blocker_id, "status", "completed")
    _resolve_blockers(store, blocked)
    assert store.get_file_metadata("/jobs/waiting", "status") == "ready"
    assert vp(store.get_ready_work()) == ["/jobs/waiting"]
    assert store.get_blocked_work() == []

    # With the fixed semantics the loop is only a safety net: an item queued as "ready" with a
    # dependency leaves the blocked view and becomes ready work by itself.
    store.put("/jobs/next")
    store.set_file_metadata("/jobs/next", "status", "ready")
    store.set_file_metadata("/jobs/next", "depends_on", "/jobs/waiting")
    assert vp(store.get_blocked_work()) == ["/jobs/next"]
    store.set_file_metadata("/jobs/waiting", "status", "completed")
    _resolve_blockers(store, store.get_blocked_work())  # nothing left to do
    assert vp(store.get_ready_work()) == ["/jobs/next"]


# ------------------------------------------------------------ "3. Priority-Based Scheduling"


def test_priority_based_scheduling(seed_store: SQLAlchemyMetadataStore) -> None:
    store = seed_store
    for path, status, priority in [
        ("/low", "ready", 9),
        ("/urgent", "ready", 0),
        ("/none", "ready", None),
        ("/running", "in_progress", -1),
        ("/done", "completed", 1),
        ("/mid", "ready", 5),
        ("/waiting", "pending", 2),
    ]:
        store.put(path)
        store.set_file_metadata(path, "status", status)
        store.set_file_metadata(path, "priority", priority)

    assigned: list[str] = []

    def assign_to_worker(item: dict[str, Any]) -> None:
        assigned.append(item["virtual_path"])

    # Process high-priority work first
    work_items = store.get_work_by_priority(limit=100)
    for item in work_items:
        if item["status"] == "ready":
            assign_to_worker(item)

    assert assigned == ["/urgent", "/mid", "/low", "/none"]
    assert vp(work_items) == ["/running", "/urgent", "/done", "/waiting", "/mid", "/low", "/none"]


# ------------------------------------------------------------ "4. Monitoring Dashboard"


def test_monitoring_dashboard(
    seed_store: SQLAlchemyMetadataStore, capsys: pytest.CaptureFixture[str]
) -> None:
    store = seed_store
    layout = {
        "ready": 3,
        "pending": 2,
        "in_progress": 4,
        "completed": 2,
        "failed": 1,
    }
    for status, count in layout.items():
        for index in range(count):
            store.put(f"/{status}/{index}")
            store.set_file_metadata(f"/{status}/{index}", "status", status)
    # Blocked work: two "blocked" items and one pending item with unresolved dependencies, and a
    # ready item whose only dependency is completed (so it counts as ready, not blocked).
    for path, status, depends_on in [
        ("/blocked/0", "blocked", "/pending/0"),
        ("/blocked/1", "blocked", ["/failed/0", "/completed/0"]),
        ("/pending/blocked", "pending", "/in_progress/0"),
        ("/ready/unblocked", "ready", "/completed/1"),
    ]:
        store.put(path)
        store.set_file_metadata(path, "status", status)
        store.set_file_metadata(path, "depends_on", depends_on)
    store.delete("/ready/2")

    # Get work statistics
    ready_count = len(store.get_ready_work())
    pending_count = len(store.get_pending_work())
    blocked_count = len(store.get_blocked_work())
    in_progress_count = len(store.get_in_progress_work())

    print(f"Ready: {ready_count}, Pending: {pending_count}")
    print(f"Blocked: {blocked_count}, In Progress: {in_progress_count}")

    assert capsys.readouterr().out.splitlines() == [
        "Ready: 3, Pending: 3",
        "Blocked: 3, In Progress: 4",
    ]
