"""Every rule of "Semantics of the views" (issue 2), through the store API, on SQLite and
PostgreSQL: when a dependency counts as resolved, which statuses each view holds, blocker
counts, the orderings (identical on both databases), soft-deleted paths, the keys and value
types of the returned dicts, and ``limit``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from nexus.errors import InvalidArgumentError
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.types import parse_timestamp

AddItem = Callable[..., str]

BASE_KEYS = {
    "path_id",
    "virtual_path",
    "tenant_id",
    "status",
    "priority",
    "created_at",
    "updated_at",
    "size_bytes",
    "content_hash",
}
VIEW_KEYS = {
    "get_ready_work": BASE_KEYS,
    "get_pending_work": BASE_KEYS,
    "get_blocked_work": BASE_KEYS | {"blocker_count"},
    "get_in_progress_work": BASE_KEYS | {"worker_id", "started_at"},
    "get_work_by_priority": BASE_KEYS | {"tags"},
}
GETTERS = list(VIEW_KEYS)
NOT_COMPLETED = ["ready", "pending", "blocked", "in_progress", "failed"]


def paths(rows: list[dict[str, Any]]) -> list[str]:
    return [row["virtual_path"] for row in rows]


def all_views(store: SQLAlchemyMetadataStore) -> dict[str, list[str]]:
    return {getter: paths(getattr(store, getter)()) for getter in GETTERS}


def priority_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """The documented order: priority ASC with NULL last, then created_at, then path_id."""
    return (row["priority"] is None, row["priority"] or 0, row["created_at"], row["path_id"])


def set_created_at(engine: sa.Engine, path: str, moment: datetime) -> None:
    """Backdate a path with plain SQL (the projection follows file_paths.created_at)."""
    if engine.dialect.name == "postgresql":
        value: Any = moment
        stmt = "UPDATE file_paths SET created_at = :v WHERE virtual_path = :p"
    else:
        value = moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        stmt = "UPDATE file_paths SET created_at = :v WHERE virtual_path = :p"
    with engine.begin() as conn:
        assert conn.execute(sa.text(stmt), {"v": value, "p": path}).rowcount == 1


# ---------------------------------------------------------------------------------- resolution


def test_dependency_resolved_only_when_target_completed(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    target_id = add_item("/target", "ready")
    add_item("/by-id", "ready", depends_on=target_id)
    add_item("/by-path", "ready", depends_on="/target")
    dependents = ["/by-id", "/by-path"]
    for status in NOT_COMPLETED:
        store.set_file_metadata("/target", "status", status)
        assert paths(store.get_ready_work()) == (["/target"] if status == "ready" else [])
        rows = store.get_blocked_work()
        assert sorted(paths(rows)) == dependents, status
        assert [r["blocker_count"] for r in rows] == [1, 1], status
    store.set_file_metadata("/target", "status", "completed")
    assert sorted(paths(store.get_ready_work())) == dependents
    assert store.get_blocked_work() == []
    # Leaving "completed" blocks the dependents again.
    store.set_file_metadata(target_id, "status", "failed")
    assert sorted(paths(store.get_blocked_work())) == dependents
    assert store.get_ready_work() == []


def test_deleting_a_completed_target_re_blocks_its_dependents(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    target_id = add_item("/target", "completed")
    add_item("/by-id", "ready", depends_on=target_id)
    add_item("/by-path", "pending", depends_on="/target")
    assert paths(store.get_ready_work()) == ["/by-id"]
    assert store.get_blocked_work() == []
    store.delete("/target")
    assert store.get_ready_work() == []
    assert sorted((r["virtual_path"], r["blocker_count"]) for r in store.get_blocked_work()) == [
        ("/by-id", 1),
        ("/by-path", 1),
    ]
    # Brought back with no metadata, the target is still not completed...
    store.put("/target")
    assert sorted(paths(store.get_blocked_work())) == ["/by-id", "/by-path"]
    # ...until it is completed again.
    store.set_file_metadata("/target", "status", "completed")
    assert paths(store.get_ready_work()) == ["/by-id"]
    assert store.get_blocked_work() == []


def test_missing_target_leaves_dependency_unresolved_until_created_and_completed(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    add_item("/dependent", "ready", depends_on="/later")
    assert paths(store.get_blocked_work()) == ["/dependent"]
    store.put("/later")
    assert paths(store.get_blocked_work()) == ["/dependent"]
    store.set_file_metadata("/later", "status", "completed")
    assert paths(store.get_ready_work()) == ["/dependent"]


def test_target_without_status_leaves_dependency_unresolved(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    store.put("/plain-file")
    add_item("/dependent", "ready", depends_on="/plain-file")
    assert paths(store.get_blocked_work()) == ["/dependent"]
    store.set_file_metadata("/plain-file", "status", "completed")
    assert paths(store.get_ready_work()) == ["/dependent"]
    store.delete_file_metadata("/plain-file", "status")
    assert paths(store.get_blocked_work()) == ["/dependent"]


def test_list_of_dependencies_mixing_paths_and_path_ids(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    a = add_item("/a", "ready")
    add_item("/b", "ready")
    c = add_item("/c", "ready")
    add_item("/job", "ready", depends_on=[a, "/b", c, "/missing"])
    expected_counts = [
        (None, 4),
        ("/a", 3),
        ("/b", 2),
        ("/c", 1),
    ]
    for completed, count in expected_counts:
        if completed is not None:
            store.set_file_metadata(completed, "status", "completed")
        rows = [r for r in store.get_blocked_work() if r["virtual_path"] == "/job"]
        assert [r["blocker_count"] for r in rows] == [count]
        assert "/job" not in paths(store.get_ready_work())
    store.put("/missing")
    store.set_file_metadata("/missing", "status", "completed")
    assert "/job" in paths(store.get_ready_work())
    assert store.get_blocked_work() == []
    # One target leaving "completed" counts one blocker again.
    store.set_file_metadata(a, "status", "in_progress")
    assert [(r["virtual_path"], r["blocker_count"]) for r in store.get_blocked_work()] == [
        ("/job", 1)
    ]


def test_changing_or_clearing_depends_on(store: SQLAlchemyMetadataStore, add_item: AddItem) -> None:
    add_item("/done", "completed")
    add_item("/open", "pending")
    add_item("/job", "ready", depends_on="/open")
    assert paths(store.get_blocked_work()) == ["/job"]
    store.set_file_metadata("/job", "depends_on", "/done")
    assert "/job" in paths(store.get_ready_work())
    store.set_file_metadata("/job", "depends_on", ["/done", "/open"])
    assert "/job" in paths(store.get_blocked_work())
    store.set_file_metadata("/job", "depends_on", None)
    assert "/job" in paths(store.get_ready_work())
    store.set_file_metadata("/job", "depends_on", ["/open"])
    assert "/job" in paths(store.get_blocked_work())
    store.delete_file_metadata("/job", "depends_on")
    assert "/job" in paths(store.get_ready_work())
    store.set_file_metadata("/job", "depends_on", [])
    assert "/job" in paths(store.get_ready_work())


def test_dependencies_by_virtual_path_resolve_within_the_tenant(
    make_store: Callable[..., SQLAlchemyMetadataStore],
) -> None:
    alpha = make_store(tenant_id="alpha")
    beta = make_store(tenant_id="beta")
    beta.put("/target")
    beta.set_file_metadata("/target", "status", "completed")
    alpha.put("/target")
    alpha.set_file_metadata("/target", "status", "pending")
    alpha.put("/job")
    alpha.set_file_metadata("/job", "status", "ready")
    alpha.set_file_metadata("/job", "depends_on", "/target")
    blocked = [r for r in alpha.get_blocked_work() if r["tenant_id"] == "alpha"]
    assert paths(blocked) == ["/job"]
    alpha.set_file_metadata("/target", "status", "completed")
    ready = [r for r in alpha.get_ready_work() if r["tenant_id"] == "alpha"]
    assert paths(ready) == ["/job"]


def test_views_are_scoped_to_the_store_tenant(
    make_store: Callable[..., SQLAlchemyMetadataStore],
) -> None:
    alpha = make_store(tenant_id="alpha")
    beta = make_store(tenant_id="beta")
    beta.put("/theirs")
    beta.set_file_metadata("/theirs", "status", "ready")
    alpha.put("/mine")
    alpha.set_file_metadata("/mine", "status", "ready")
    assert paths(alpha.get_ready_work()) == ["/mine"]
    assert paths(beta.get_ready_work()) == ["/theirs"]
    for getter in GETTERS:
        assert {r["tenant_id"] for r in getattr(alpha, getter)()} <= {"alpha"}, getter


# ---------------------------------------------------------------------------------- membership


def test_which_statuses_each_view_holds(store: SQLAlchemyMetadataStore, add_item: AddItem) -> None:
    add_item("/done", "completed")
    for status in ("ready", "pending", "blocked", "in_progress", "completed", "failed"):
        add_item(f"/free/{status}", status)
        add_item(f"/dep/{status}", status, depends_on="/missing")
        add_item(f"/res/{status}", status, depends_on="/done")
    store.put("/no-status")
    views = all_views(store)
    assert sorted(views["get_ready_work"]) == ["/free/ready", "/res/ready"]
    assert sorted(views["get_pending_work"]) == ["/dep/pending", "/free/pending", "/res/pending"]
    assert sorted(views["get_blocked_work"]) == ["/dep/blocked", "/dep/pending", "/dep/ready"]
    assert sorted(views["get_in_progress_work"]) == [
        "/dep/in_progress",
        "/free/in_progress",
        "/res/in_progress",
    ]
    everything = [
        "/done",
        *(
            f"/{group}/{status}"
            for group in ("free", "dep", "res")
            for status in ("ready", "pending", "blocked", "in_progress", "completed", "failed")
        ),
    ]
    assert sorted(views["get_work_by_priority"]) == sorted(everything)
    assert "/no-status" not in views["get_work_by_priority"]


def test_status_changes_move_items_between_views(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    add_item("/job", "pending")
    expected = {
        "pending": "get_pending_work",
        "ready": "get_ready_work",
        "in_progress": "get_in_progress_work",
        "completed": None,
        "failed": None,
        "blocked": None,
    }
    for status, getter in expected.items():
        store.set_file_metadata("/job", "status", status)
        views = all_views(store)
        assert views["get_work_by_priority"] == ["/job"]
        for name in (
            "get_ready_work",
            "get_pending_work",
            "get_in_progress_work",
            "get_blocked_work",
        ):
            assert views[name] == (["/job"] if name == getter else []), (status, name)
        assert [r["status"] for r in store.get_work_by_priority()] == [status]


def test_soft_deleted_paths_appear_in_no_view(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    for status in ("ready", "pending", "blocked", "in_progress", "completed", "failed"):
        add_item(f"/{status}", status, priority=1, depends_on="/missing", tags=["t"])
        add_item(f"/{status}-free", status)
    assert all(all_views(store)[getter] for getter in GETTERS)
    for record in store.list("/"):
        store.delete(record.path_id)
    assert all_views(store) == {getter: [] for getter in GETTERS}


# ---------------------------------------------------------------------------------- ordering


def test_priority_order_everywhere(
    store: SQLAlchemyMetadataStore, add_item: AddItem, raw_engine: sa.Engine
) -> None:
    priorities = [3, None, 1, -2, 2, None, 1, 0, 10**9]
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for index, priority in enumerate(priorities):
        for status in ("ready", "pending"):
            path = f"/{status}/{index}"
            add_item(path, status, priority=priority)
            add_item(f"/blocked-{status}/{index}", status, priority=priority, depends_on="/missing")
            # Later inserts get *earlier* created_at, so insertion order is not the answer.
            set_created_at(raw_engine, path, base - timedelta(minutes=index))
    for getter in ("get_ready_work", "get_pending_work", "get_work_by_priority"):
        rows = getattr(store, getter)()
        assert rows == sorted(rows, key=priority_key), getter
        got = [r["priority"] for r in rows]
        assert got[-1] is None and got[0] == -2, getter
    blocked = store.get_blocked_work()
    assert blocked == sorted(blocked, key=priority_key)
    ready = store.get_ready_work()
    # Equal priority 1: the one created earlier (index 6) comes first.
    assert [r["virtual_path"] for r in ready if r["priority"] == 1] == ["/ready/6", "/ready/2"]
    assert [r["virtual_path"] for r in ready if r["priority"] is None] == ["/ready/5", "/ready/1"]


def test_equal_priority_and_created_at_order_by_path_id(
    store: SQLAlchemyMetadataStore, add_item: AddItem, raw_engine: sa.Engine
) -> None:
    moment = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    ids = {}
    for index in range(6):
        ids[f"/same/{index}"] = add_item(f"/same/{index}", "ready", priority=7)
        set_created_at(raw_engine, f"/same/{index}", moment)
    rows = store.get_ready_work()
    assert [r["path_id"] for r in rows] == sorted(ids.values())
    assert {r["created_at"] for r in rows} == {moment}
    assert [r["path_id"] for r in store.get_work_by_priority()] == sorted(ids.values())


def test_blocked_order_blocker_count_desc_then_priority(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    add_item("/one-p5", "ready", priority=5, depends_on="/m1")
    add_item("/three-none", "blocked", depends_on=["/m1", "/m2", "/m3"])
    add_item("/one-p1", "pending", priority=1, depends_on="/m2")
    add_item("/two-p9", "blocked", priority=9, depends_on=["/m1", "/m2"])
    add_item("/three-p2", "ready", priority=2, depends_on=["/m1", "/m2", "/m3"])
    add_item("/one-none", "blocked", depends_on=["/m3"])
    rows = store.get_blocked_work()
    assert [(r["virtual_path"], r["blocker_count"]) for r in rows] == [
        ("/three-p2", 3),
        ("/three-none", 3),
        ("/two-p9", 2),
        ("/one-p1", 1),
        ("/one-p5", 1),
        ("/one-none", 1),
    ]


def test_in_progress_newest_start_first_missing_last(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    add_item("/no-start-1", "in_progress", worker_id="w0")
    add_item("/old", "in_progress", worker_id="w1", started_at="2026-01-01T08:00:00Z")
    add_item(
        "/newest",
        "in_progress",
        worker_id="w2",
        started_at=datetime(2026, 1, 1, 11, 30, tzinfo=timezone.utc),
    )
    # 12:00 at +02:00 is 10:00 UTC: between the others.
    add_item("/offset", "in_progress", worker_id="w3", started_at="2026-01-01T12:00:00+02:00")
    add_item("/naive", "in_progress", worker_id="w4", started_at="2026-01-01T09:00:00")
    add_item("/no-start-2", "in_progress")
    rows = store.get_in_progress_work()
    order = paths(rows)
    assert order[:4] == ["/newest", "/offset", "/naive", "/old"]
    assert sorted(order[4:]) == ["/no-start-1", "/no-start-2"]
    by_path = {r["virtual_path"]: r for r in rows}
    assert by_path["/offset"]["started_at"] == datetime(2026, 1, 1, 10, tzinfo=timezone.utc)
    assert by_path["/naive"]["started_at"] == datetime(2026, 1, 1, 9, tzinfo=timezone.utc)
    assert by_path["/old"]["worker_id"] == "w1"
    assert by_path["/no-start-2"]["worker_id"] is None
    assert by_path["/no-start-2"]["started_at"] is None


def test_in_progress_order_follows_start_times_a_millisecond_apart(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    # Sub-millisecond precision is not promised (the two databases agree to milliseconds,
    # see test_cross_database); starts a millisecond or more apart are ordered exactly.
    starts = {
        "/a": "2026-01-01T12:00:00.001+00:00",
        "/b": "2026-01-01T12:00:00.002+00:00",
        "/c": "2026-01-01T12:00:00.000999+00:00",
        "/d": "2026-01-01T12:00:00.003Z",
    }
    for path, start in starts.items():
        add_item(path, "in_progress", started_at=start)
    rows = store.get_in_progress_work()
    assert paths(rows) == ["/d", "/b", "/a", "/c"]
    for row in rows:
        expected = parse_timestamp(starts[row["virtual_path"]])
        assert abs(row["started_at"] - expected) < timedelta(milliseconds=1)
        assert row["started_at"] <= expected


# Strings the API accepts as started_at (datetime.fromisoformat on Python 3.11).
ACCEPTED_ONLY_BY_PYTHON = ["20260101T120000", "2026-01-01T12:00:00,5", "2026-01-01T12"]


def test_every_accepted_started_at_appears_in_the_view(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    for index, text in enumerate(ACCEPTED_ONLY_BY_PYTHON):
        add_item(f"/job/{index}", "in_progress", started_at=text)
    by_path = {r["virtual_path"]: r["started_at"] for r in store.get_in_progress_work()}
    assert by_path == {
        f"/job/{index}": parse_timestamp(text) for index, text in enumerate(ACCEPTED_ONLY_BY_PYTHON)
    }


def test_started_at_with_hour_only_offset(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    # Regression: accepted by validation, parsed by PostgreSQL, NULL on SQLite.
    add_item("/job", "in_progress", started_at="2026-01-01 12:00:00+00")
    [row] = store.get_in_progress_work()
    assert row["started_at"] == datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


# ---------------------------------------------------------------------------------- dict shape


def test_returned_keys_are_exactly_the_documented_ones(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    add_item("/ready", "ready")
    add_item("/pending", "pending")
    add_item("/blocked", "blocked", depends_on="/missing")
    add_item("/running", "in_progress", worker_id="w", started_at="2026-01-01T00:00:00Z")
    for getter, keys in VIEW_KEYS.items():
        rows = getattr(store, getter)()
        assert rows, getter
        for row in rows:
            assert isinstance(row, dict)
            assert set(row) == keys, getter


def test_value_types_are_the_same_on_both_databases(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    store.put("/ready", size=7, content_hash="abc")
    store.set_file_metadata("/ready", "status", "ready")
    store.set_file_metadata("/ready", "priority", 3)
    store.set_file_metadata("/ready", "tags", ["urgent", "data"])
    add_item("/untagged", "ready")
    add_item("/blocked", "pending", priority=0, depends_on=["/missing", "/other"])
    add_item(
        "/running",
        "in_progress",
        priority=-1,
        worker_id="worker-123",
        started_at="2026-01-01T12:00:00+00:00",
    )
    for getter in GETTERS:
        for row in getattr(store, getter)():
            assert isinstance(row["path_id"], str)
            assert isinstance(row["virtual_path"], str)
            assert row["tenant_id"] == "default"
            assert isinstance(row["status"], str)
            assert row["priority"] is None or type(row["priority"]) is int
            for key in ("created_at", "updated_at"):
                assert isinstance(row[key], datetime), (getter, key)
                assert row[key].utcoffset() == timedelta(0), (getter, key)
            assert type(row["size_bytes"]) is int
            assert row["content_hash"] is None or isinstance(row["content_hash"], str)
    by_priority = {r["virtual_path"]: r for r in store.get_work_by_priority()}
    assert by_priority["/ready"]["tags"] == ["urgent", "data"]
    assert by_priority["/untagged"]["tags"] is None
    assert (by_priority["/ready"]["size_bytes"], by_priority["/ready"]["content_hash"]) == (
        7,
        "abc",
    )
    assert by_priority["/ready"]["priority"] == 3
    [blocked] = store.get_blocked_work()
    assert type(blocked["blocker_count"]) is int and blocked["blocker_count"] == 2
    assert blocked["priority"] == 0
    [running] = store.get_in_progress_work()
    assert running["worker_id"] == "worker-123"
    assert running["started_at"] == datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    assert running["started_at"].utcoffset() == timedelta(0)
    record = store.get("/ready")
    assert record is not None
    assert by_priority["/ready"]["created_at"] == record.created_at


def test_large_priorities_keep_their_value(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    # Regression: |priority| >= 10**18 used to project to NULL on PostgreSQL only.
    values = [2**63 - 1, -(2**63), 10**18, -(10**18), 10**18 - 1]
    for index, value in enumerate(values):
        add_item(f"/p{index}", "ready", priority=value)
    rows = store.get_ready_work()
    assert [r["priority"] for r in rows] == sorted(values)


# ---------------------------------------------------------------------------------- limit


def test_limit_is_respected_by_every_view(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    for index in range(5):
        add_item(f"/ready/{index}", "ready", priority=index)
        add_item(f"/pending/{index}", "pending", priority=index)
        add_item(f"/blocked/{index}", "blocked", priority=index, depends_on="/missing")
        add_item(f"/running/{index}", "in_progress", started_at=f"2026-01-01T0{index}:00:00Z")
    for getter in GETTERS:
        method = getattr(store, getter)
        full = method()
        assert len(full) >= 5
        assert method(limit=0) == []
        assert method(limit=1) == full[:1]
        assert method(limit=3) == full[:3]
        assert method(limit=len(full)) == full
        assert method(limit=len(full) + 100) == full
        assert method(None) == full


def test_invalid_limits_raise(store: SQLAlchemyMetadataStore, add_item: AddItem) -> None:
    add_item("/ready", "ready")
    for getter in GETTERS:
        for bad in (-1, True, False, "10", 1.5, "1; DROP TABLE file_paths"):
            with pytest.raises(InvalidArgumentError) as info:
                getattr(store, getter)(limit=bad)
            assert info.value.value == bad
    assert paths(store.get_ready_work()) == ["/ready"]
