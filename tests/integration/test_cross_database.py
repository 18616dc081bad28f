"""SQLite and PostgreSQL side by side: the same rows (identical path ids and creation times,
written with the store's own table definitions) and the same metadata calls give *identical*
results from every view, value for value and in the same order, including every tie-break
(priority, NULL priority, created_at, path_id), timezone offsets, sub-millisecond start times,
64-bit priorities and badly typed values written with plain SQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.schema import file_paths

Pair = tuple[SQLAlchemyMetadataStore, SQLAlchemyMetadataStore]
GETTERS = [
    "get_ready_work",
    "get_pending_work",
    "get_blocked_work",
    "get_work_by_priority",
    "get_in_progress_work",
]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NAMESPACE = uuid.UUID("6f1c6a2e-8d0e-4b8e-9a51-2f6f3f4c1d00")


def path_id(path: str) -> str:
    return str(uuid.uuid5(NAMESPACE, path))


def insert_paths(store: SQLAlchemyMetadataStore, rows: list[tuple[str, datetime]]) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(file_paths),
            [
                {
                    "path_id": path_id(path),
                    "tenant_id": "default",
                    "virtual_path": path,
                    "size_bytes": len(path),
                    "content_hash": None,
                    "file_type": None,
                    "created_at": created,
                    "updated_at": created,
                    "deleted_at": None,
                }
                for path, created in rows
            ],
        )


def insert_raw_metadata(store: SQLAlchemyMetadataStore, path: str, key: str, text: str) -> None:
    value = "CAST(:v AS jsonb)" if store.dialect == "postgresql" else ":v"
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO file_metadata (path_id, key, value) VALUES (:id, :k, {value})"),
            {"id": path_id(path), "k": key, "v": text},
        )


def views(store: SQLAlchemyMetadataStore) -> dict[str, list[dict[str, Any]]]:
    return {
        getter: [
            {k: v for k, v in row.items() if k != "updated_at"} for row in getattr(store, getter)()
        ]
        for getter in GETTERS
    }


# (path, created_at offset in ms, metadata set through the API)
WORKLOAD: list[tuple[str, int, dict[str, Any]]] = [
    ("/done", 0, {"status": "completed", "priority": 0}),
    ("/a", 1, {"status": "ready", "priority": 3, "tags": ["x"]}),
    ("/b", 1, {"status": "ready", "priority": 3, "tags": []}),  # ties /a: path_id decides
    ("/c", 2, {"status": "ready", "priority": None, "tags": ["y", "z"]}),
    ("/c2", 2, {"status": "ready"}),  # NULL priority, same created_at as /c
    ("/c3", 0, {"status": "ready"}),  # NULL priority, earlier
    ("/d", 3, {"status": "ready", "priority": -5, "depends_on": ["/p", "/missing", "/done"]}),
    ("/e", 4, {"status": "blocked", "priority": 2**62, "depends_on": "/p"}),
    ("/e2", 4, {"status": "pending", "priority": 2**63 - 1, "depends_on": ["/p"]}),
    ("/f", 5, {"status": "pending", "priority": 7}),
    ("/p", 6, {"status": "pending", "priority": 10**18}),
    ("/g", 7, {"status": "ready", "priority": -(2**63), "depends_on": "/done"}),
    ("/fail", 8, {"status": "failed", "priority": 1}),
    (
        "/r1",
        9,
        {
            "status": "in_progress",
            "priority": 4,
            "worker_id": "w1",
            "started_at": "2026-01-01T12:00:00.000100+00:00",
        },
    ),
    (
        "/r2",
        9,
        {
            "status": "in_progress",
            "priority": 4,
            "worker_id": "w2",
            "started_at": "2026-01-01T12:00:00.000900Z",
        },
    ),
    (
        "/r3",
        10,
        {"status": "in_progress", "worker_id": "w3", "started_at": "2026-01-01T14:00:00.5+02:00"},
    ),
    ("/r4", 11, {"status": "in_progress", "started_at": "2026-01-01 11:59:59"}),
    (
        "/r5",
        12,
        {
            "status": "in_progress",
            "started_at": datetime(
                2026, 1, 1, 12, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-3))
            ),
        },
    ),
    ("/r6", 13, {"status": "in_progress"}),
    ("/r7", 13, {"status": "in_progress", "worker_id": "w7"}),
]

# Written with plain SQL as JSON text: every one is badly typed for its key.
RAW: list[tuple[str, int, str, str]] = [
    ("/raw/priority-string", 20, "priority", '"1"'),
    ("/raw/priority-real", 21, "priority", "2.5"),
    ("/raw/priority-huge", 22, "priority", "99999999999999999999"),
    ("/raw/tags-mixed", 23, "tags", '["a", 1]'),
    ("/raw/tags-string", 24, "tags", '"a"'),
    ("/raw/worker-number", 25, "worker_id", "5"),
    ("/raw/started-garbage", 26, "started_at", '"soon"'),
    ("/raw/started-hour25", 27, "started_at", '"2026-01-01T25:00:00"'),
    ("/raw/depends-number", 28, "depends_on", "5"),
]


def build(store: SQLAlchemyMetadataStore) -> None:
    insert_paths(
        store,
        [(path, T0 + timedelta(milliseconds=ms)) for path, ms, _ in WORKLOAD]
        + [(path, T0 + timedelta(milliseconds=ms)) for path, ms, _, _ in RAW],
    )
    for path, _, metadata in WORKLOAD:
        for key, value in metadata.items():
            store.set_file_metadata(path, key, value)
    for path, _, key, text in RAW:
        status = "in_progress" if key in ("worker_id", "started_at") else "ready"
        store.set_file_metadata(path, "status", status)
        insert_raw_metadata(store, path, key, text)
    store.put("/deleted")
    store.set_file_metadata("/deleted", "status", "ready")
    store.delete("/deleted")


def test_every_view_is_identical_on_both_databases(store_pair: Pair) -> None:
    lite, pg = store_pair
    for store in store_pair:
        build(store)
    lite_views, pg_views = views(lite), views(pg)
    for getter in GETTERS:
        assert lite_views[getter], getter
        assert lite_views[getter] == pg_views[getter], getter
    # Spot checks that the shared answer is the documented one.
    # Ready: priority ascending, NULL last, then created_at, then path_id.
    assert [r["virtual_path"] for r in lite_views["get_ready_work"]] == [
        "/g",
        *sorted(["/a", "/b"], key=path_id),
        "/c3",
        *sorted(["/c", "/c2"], key=path_id),
        "/raw/priority-string",
        "/raw/priority-real",
        "/raw/priority-huge",
        "/raw/tags-mixed",
        "/raw/tags-string",
        "/raw/depends-number",
    ]
    running = [r["virtual_path"] for r in lite_views["get_in_progress_work"]]
    assert running[0] == "/r5"  # 12:30-03:00 is 15:30 UTC, the newest
    assert running.index("/r3") < running.index("/r1") and running.index("/r3") < running.index(
        "/r2"
    )
    blocked = {r["virtual_path"]: r["blocker_count"] for r in lite_views["get_blocked_work"]}
    assert blocked == {"/d": 2, "/e": 1, "/e2": 1}
    by_priority = {r["virtual_path"]: r for r in lite_views["get_work_by_priority"]}
    assert by_priority["/e2"]["priority"] == 2**63 - 1
    assert by_priority["/raw/priority-string"]["priority"] is None
    assert by_priority["/raw/priority-huge"]["priority"] is None
    assert by_priority["/raw/tags-mixed"]["tags"] is None
    assert "/deleted" not in by_priority


def test_metadata_reads_are_identical_on_both_databases(store_pair: Pair) -> None:
    for store in store_pair:
        build(store)
    lite, pg = store_pair
    for path, _, _ in WORKLOAD:
        assert lite.get_all_file_metadata(path) == pg.get_all_file_metadata(path), path
    for path, _, _, _ in RAW:
        assert lite.get_all_file_metadata(path) == pg.get_all_file_metadata(path), path
    assert [r.virtual_path for r in lite.list("/")] == [r.virtual_path for r in pg.list("/")]
