"""The views are a function of the tables alone: rows written with plain SQL (no nexus code)
show up in the API's views exactly like rows written through the API, badly typed values are
ignored instead of breaking a view, and on SQLite the ``sqlite3`` shell reads the same rows,
in the same order, as the API (and its writes are projected too)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from nexus.storage.metadata_store import SQLAlchemyMetadataStore

AddItem = Callable[..., str]
VIEWS = {
    "ready_work_items": "get_ready_work",
    "pending_work_items": "get_pending_work",
    "blocked_work_items": "get_blocked_work",
    "work_by_priority": "get_work_by_priority",
    "in_progress_work": "get_in_progress_work",
}


def insert_path(engine: sa.Engine, path: str, **metadata_json: str) -> str:
    """Insert a file_paths row and file_metadata rows (values given as JSON text)."""
    path_id = str(uuid.uuid4())
    value = "CAST(:v AS jsonb)" if engine.dialect.name == "postgresql" else ":v"
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO file_paths (path_id, virtual_path) VALUES (:id, :p)"),
            {"id": path_id, "p": path},
        )
        for key, text in metadata_json.items():
            conn.execute(
                sa.text(
                    f"INSERT INTO file_metadata (path_id, key, value) VALUES (:id, :k, {value})"
                ),
                {"id": path_id, "k": key, "v": text},
            )
    return path_id


def run_sql(engine: sa.Engine, sql: str, **params: Any) -> None:
    if engine.dialect.name == "postgresql":
        sql = sql.replace(":v", "CAST(:v AS jsonb)")
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def vp(rows: list[dict[str, Any]]) -> list[str]:
    return [row["virtual_path"] for row in rows]


def test_plain_sql_rows_show_up_in_every_view(
    store: SQLAlchemyMetadataStore, raw_engine: sa.Engine
) -> None:
    done = insert_path(raw_engine, "/sql/done", status='"completed"', priority="0")
    insert_path(
        raw_engine,
        "/sql/ready",
        status='"ready"',
        priority="2",
        tags='["urgent", "data"]',
        depends_on=f'"{done}"',
    )
    insert_path(raw_engine, "/sql/pending", status='"pending"', priority="1")
    insert_path(
        raw_engine,
        "/sql/blocked",
        status='"blocked"',
        depends_on='["/sql/pending", "/sql/missing", "/sql/done"]',
    )
    insert_path(
        raw_engine,
        "/sql/running",
        status='"in_progress"',
        worker_id='"worker-9"',
        started_at='"2026-01-01T12:00:00+00:00"',
        priority="5",
    )
    assert vp(store.get_ready_work()) == ["/sql/ready"]
    assert vp(store.get_pending_work()) == ["/sql/pending"]
    [blocked] = store.get_blocked_work()
    assert (blocked["virtual_path"], blocked["blocker_count"]) == ("/sql/blocked", 2)
    [running] = store.get_in_progress_work()
    assert running["worker_id"] == "worker-9"
    assert running["started_at"] == datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    rows = store.get_work_by_priority()
    assert vp(rows) == ["/sql/done", "/sql/pending", "/sql/ready", "/sql/running", "/sql/blocked"]
    assert rows[2]["tags"] == ["urgent", "data"]
    for row in rows:
        assert row["created_at"].utcoffset() is not None
        assert row["tenant_id"] == "default"
    # The API reads the plain-SQL metadata back too.
    assert store.get_file_metadata("/sql/ready", "tags") == ["urgent", "data"]
    assert store.get_file_metadata(done, "status") == "completed"


def test_plain_sql_updates_and_deletes_are_followed(
    store: SQLAlchemyMetadataStore, raw_engine: sa.Engine
) -> None:
    target = insert_path(raw_engine, "/t", status='"in_progress"')
    insert_path(raw_engine, "/job", status='"ready"', depends_on='"/t"')
    assert vp(store.get_blocked_work()) == ["/job"]
    set_status = "UPDATE file_metadata SET value = :v WHERE path_id = :id AND key = 'status'"
    run_sql(raw_engine, set_status, v='"completed"', id=target)
    assert vp(store.get_ready_work()) == ["/job"]
    run_sql(
        raw_engine, "UPDATE file_paths SET deleted_at = updated_at WHERE path_id = :id", id=target
    )
    assert vp(store.get_blocked_work()) == ["/job"]
    assert not store.exists("/t")
    run_sql(raw_engine, "UPDATE file_paths SET deleted_at = NULL WHERE path_id = :id", id=target)
    assert vp(store.get_ready_work()) == ["/job"]
    run_sql(raw_engine, "DELETE FROM file_metadata WHERE key = 'depends_on'")
    run_sql(raw_engine, set_status, v='"failed"', id=target)
    assert vp(store.get_ready_work()) == ["/job"]
    run_sql(
        raw_engine, "DELETE FROM file_metadata WHERE key = 'status' AND path_id = :id", id=target
    )
    assert vp(store.get_work_by_priority()) == ["/job"]
    run_sql(
        raw_engine,
        "INSERT INTO file_metadata (path_id, key, value) VALUES (:id, 'status', :v)",
        id=target,
        v='"pending"',
    )
    assert vp(store.get_pending_work()) == ["/t"]
    # A hard delete of the path removes it and (cascade) its metadata.
    run_sql(raw_engine, "DELETE FROM file_paths WHERE path_id = :id", id=target)
    assert vp(store.get_work_by_priority()) == ["/job"]
    with raw_engine.connect() as conn:
        left = conn.execute(
            sa.text("SELECT count(*) FROM file_metadata WHERE path_id = :id"), {"id": target}
        ).scalar()
    assert left == 0


def test_hard_deleting_a_completed_target_re_blocks_dependents(
    store: SQLAlchemyMetadataStore, raw_engine: sa.Engine
) -> None:
    target = insert_path(raw_engine, "/t", status='"completed"')
    insert_path(raw_engine, "/by-id", status='"ready"', depends_on=f'"{target}"')
    insert_path(raw_engine, "/by-path", status='"ready"', depends_on='"/t"')
    assert sorted(vp(store.get_ready_work())) == ["/by-id", "/by-path"]
    run_sql(raw_engine, "DELETE FROM file_paths WHERE path_id = :id", id=target)
    assert store.get_ready_work() == []
    assert sorted(vp(store.get_blocked_work())) == ["/by-id", "/by-path"]


def test_plain_sql_and_api_rows_mix(
    store: SQLAlchemyMetadataStore, add_item: AddItem, raw_engine: sa.Engine
) -> None:
    api_target = add_item("/api/target", "pending")
    insert_path(raw_engine, "/sql/job", status='"ready"', depends_on=f'"{api_target}"')
    insert_path(raw_engine, "/sql/target", status='"pending"')
    add_item("/api/job", "ready", depends_on="/sql/target")
    assert sorted(vp(store.get_blocked_work())) == ["/api/job", "/sql/job"]
    store.set_file_metadata("/api/target", "status", "completed")
    run_sql(
        raw_engine,
        "UPDATE file_metadata SET value = :v WHERE key = 'status' AND path_id = "
        "(SELECT path_id FROM file_paths WHERE virtual_path = '/sql/target')",
        v='"completed"',
    )
    assert sorted(vp(store.get_ready_work())) == ["/api/job", "/sql/job"]


BAD_VALUES = {
    "priority": ['"3"', '"high"', "true", "null", "[1]", '{"p": 1}', "1.5"],
    "tags": ['"urgent"', '["a", 1]', "[null]", '{"a": 1}', "7"],
    "worker_id": ["5", "null", '["w"]'],
    "started_at": ['"garbage"', "1700000000", '"2026-01-01T25:00:00"', "null"],
    "depends_on": ["5", "null", '{"a": 1}', "[1, 2]"],
}


def test_badly_typed_plain_sql_values_are_ignored_not_fatal(
    store: SQLAlchemyMetadataStore, add_item: AddItem, raw_engine: sa.Engine
) -> None:
    # Regression: on PostgreSQL '2026-01-01T25:00:00' used to fail the INSERT in the trigger.
    add_item("/api/1", "ready", priority=1)
    add_item("/api/none", "ready")
    expected_none: list[str] = []
    for key, values in BAD_VALUES.items():
        for index, text in enumerate(values):
            path = f"/bad/{key}/{index}"
            insert_path(raw_engine, path, status='"ready"', **{key: text})
            expected_none.append(path)
    by_path = {row["virtual_path"]: row for row in store.get_work_by_priority()}
    for key in ("priority", "tags"):
        for index in range(len(BAD_VALUES[key])):
            assert by_path[f"/bad/{key}/{index}"][key] is None, (key, index)
    ready = store.get_ready_work()
    # Every bad row is ready (bad depends_on refs are no dependencies) and sorts as NULL.
    assert vp(ready)[0] == "/api/1"
    assert sorted(vp(ready)[1:]) == sorted(["/api/none", *expected_none])
    assert store.get_blocked_work() == []


def test_priority_written_as_a_json_string_sorts_as_null(
    store: SQLAlchemyMetadataStore, add_item: AddItem, raw_engine: sa.Engine
) -> None:
    add_item("/api/2", "pending", priority=2, tags=["x"])
    add_item("/api/none", "pending")
    insert_path(raw_engine, "/sql/str", status='"pending"', priority='"1"', tags='["y"]')
    insert_path(raw_engine, "/sql/int", status='"pending"', priority="1")
    insert_path(
        raw_engine, "/sql/blocked", status='"pending"', priority='"0"', depends_on='"/missing"'
    )
    insert_path(raw_engine, "/sql/running", status='"in_progress"', priority='"0"')
    pending = store.get_pending_work()
    assert vp(pending)[:2] == ["/sql/int", "/api/2"]
    assert sorted(vp(pending)[2:]) == ["/api/none", "/sql/blocked", "/sql/str"]
    assert [r["priority"] for r in pending] == [1, 2, None, None, None]
    by_priority = store.get_work_by_priority()
    assert vp(by_priority)[:2] == ["/sql/int", "/api/2"]
    assert {r["virtual_path"]: r["priority"] for r in by_priority}["/sql/str"] is None
    assert [r["priority"] for r in store.get_blocked_work()] == [None]
    assert [r["priority"] for r in store.get_in_progress_work()] == [None]
    assert store.get_ready_work() == []
    # The API still reads the raw value back.
    assert store.get_file_metadata("/sql/str", "priority") == "1"


def test_plain_sql_invalid_status_is_not_work(
    store: SQLAlchemyMetadataStore, raw_engine: sa.Engine
) -> None:
    for index, text in enumerate(['"done"', '"READY"', "1", "null", '["ready"]', '{"s": 1}']):
        insert_path(raw_engine, f"/bad/{index}", status=text)
    insert_path(raw_engine, "/good", status='"ready"')
    for getter in VIEWS.values():
        rows = getattr(store, getter)()
        assert vp(rows) in ([], ["/good"]), getter


def test_plain_sql_impossible_date_does_not_break_the_view(
    store: SQLAlchemyMetadataStore, add_item: AddItem, raw_engine: sa.Engine
) -> None:
    # Regression: on SQLite an impossible date reached work_items.started_at and every
    # get_in_progress_work() raised ValueError; on PostgreSQL the INSERT failed in the trigger.
    add_item("/api/running", "in_progress", worker_id="w1", started_at="2026-01-01T00:00:00Z")
    insert_path(
        raw_engine, "/sql/running", status='"in_progress"', started_at='"2026-02-30T00:00:00"'
    )
    rows = store.get_in_progress_work()
    assert vp(rows) == ["/api/running", "/sql/running"]
    assert rows[1]["started_at"] is None


def test_plain_sql_priority_beyond_64_bits_is_not_a_float(
    store: SQLAlchemyMetadataStore, raw_engine: sa.Engine
) -> None:
    # Regression: SQLite used to project 99999999999999999999 as the REAL 1e+20.
    insert_path(raw_engine, "/huge", status='"ready"', priority="99999999999999999999")
    [row] = store.get_ready_work()
    assert row["priority"] is None or type(row["priority"]) is int


# ---------------------------------------------------------------------------------- sqlite3 shell

# CI installs the shell (.ci/run): there a missing shell is a failure, not a skip.
needs_shell = pytest.mark.skipif(
    shutil.which("sqlite3") is None and os.environ.get("CI", "").lower() not in ("1", "true"),
    reason="no sqlite3 shell",
)


def _shell(db_file: str, sql: str) -> list[str]:
    result = subprocess.run(
        ["sqlite3", db_file, sql], capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout.splitlines()


def _db_file(db_url: str) -> str:
    database = sa.engine.make_url(db_url).database
    assert database
    return database


def _mixed_workload(
    store: SQLAlchemyMetadataStore, add_item: AddItem, raw_engine: sa.Engine
) -> None:
    done = add_item("/done", "completed", priority=1)
    for index, priority in enumerate([3, None, 1, 2, None, 0, 1]):
        add_item(f"/ready/{index}", "ready", priority=priority, tags=[f"t{index}"])
        add_item(f"/pending/{index}", "pending", priority=priority)
        add_item(
            f"/blocked/{index}",
            "blocked",
            priority=priority,
            depends_on=["/missing"] * 1 + [f"/pending/{index}"][: index % 2],
        )
        add_item(f"/dep-done/{index}", "ready", priority=priority, depends_on=done)
        add_item(
            f"/running/{index}",
            "in_progress",
            priority=priority,
            worker_id=f"w{index}",
            **({"started_at": f"2026-01-0{1 + index % 3}T0{index}:00:00Z"} if index % 3 else {}),
        )
    insert_path(raw_engine, "/sql/ready", status='"ready"', priority='"7"')
    insert_path(raw_engine, "/sql/blocked", status='"pending"', depends_on='["/a", "/b"]')
    store.delete("/ready/3")


@pytest.mark.slow
@needs_shell
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite3_shell_reads_the_same_rows_as_the_api(
    store: SQLAlchemyMetadataStore, add_item: AddItem, raw_engine: sa.Engine, db_url: str
) -> None:
    _mixed_workload(store, add_item, raw_engine)
    db_file = _db_file(db_url)
    for view, getter in VIEWS.items():
        api_rows = getattr(store, getter)()
        assert api_rows, view
        assert _shell(db_file, f"SELECT path_id FROM {view}") == [r["path_id"] for r in api_rows]
        assert _shell(db_file, f"SELECT path_id FROM {view} LIMIT 3") == [
            r["path_id"] for r in getattr(store, getter)(limit=3)
        ]
    shell_blocked = _shell(db_file, "SELECT virtual_path, blocker_count FROM blocked_work_items")
    assert shell_blocked == [
        f"{r['virtual_path']}|{r['blocker_count']}" for r in store.get_blocked_work()
    ]
    shell_ready = _shell(db_file, "SELECT virtual_path, priority FROM ready_work_items LIMIT 10")
    assert shell_ready == [
        f"{r['virtual_path']}|{'' if r['priority'] is None else r['priority']}"
        for r in store.get_ready_work(limit=10)
    ]


@pytest.mark.slow
@needs_shell
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_rows_written_in_the_sqlite3_shell_are_projected(
    store: SQLAlchemyMetadataStore, add_item: AddItem, db_url: str
) -> None:
    add_item("/api/target", "pending")
    db_file = _db_file(db_url)
    _shell(
        db_file,
        """
        INSERT INTO file_paths (virtual_path) VALUES ('/shell/job'), ('/shell/other');
        INSERT INTO file_metadata (path_id, key, value)
            SELECT path_id, 'status', '"ready"' FROM file_paths WHERE virtual_path = '/shell/job';
        INSERT INTO file_metadata (path_id, key, value)
            SELECT path_id, 'depends_on', '"/api/target"' FROM file_paths
            WHERE virtual_path = '/shell/job';
        INSERT INTO file_metadata (path_id, key, value)
            SELECT path_id, 'priority', '4' FROM file_paths WHERE virtual_path = '/shell/job';
        INSERT INTO file_metadata (path_id, key, value)
            SELECT path_id, 'status', '"pending"' FROM file_paths
            WHERE virtual_path = '/shell/other';
        """,
    )
    [row] = store.get_blocked_work()
    assert (row["virtual_path"], row["priority"], row["blocker_count"]) == ("/shell/job", 4, 1)
    # The shell's default path_id is a path_id the API accepts.
    assert store.get(row["path_id"]) is not None
    assert row["created_at"].utcoffset() is not None
    store.set_file_metadata("/api/target", "status", "completed")
    assert vp(store.get_ready_work()) == ["/shell/job"]
    assert _shell(db_file, "SELECT virtual_path FROM ready_work_items") == ["/shell/job"]
    assert _shell(db_file, "SELECT virtual_path FROM pending_work_items") == ["/shell/other"]
    _shell(
        db_file,
        "UPDATE file_metadata SET value = '\"completed\"' WHERE key = 'status' AND "
        "path_id = (SELECT path_id FROM file_paths WHERE virtual_path = '/shell/job')",
    )
    assert store.get_ready_work() == []
    assert store.get_file_metadata("/shell/job", "status") == "completed"
