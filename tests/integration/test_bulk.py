"""The bulk API (put_many, set_file_metadata_many) on SQLite and PostgreSQL: counts, revival of
soft-deleted paths, validation before any write, and plain-SQL hard deletes of a dependency
graph."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from nexus import DependencyCycleError, InvalidArgumentError, NexusFileNotFoundError
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue


def test_put_many_counts_created_and_revives_deleted(store: SQLAlchemyMetadataStore) -> None:
    assert store.put_many(["/a", {"path": "/b", "size": 3, "content_hash": "h"}]) == 2
    assert store.put_many(["/a", "/c"]) == 1
    record = store.get("/b")
    assert record is not None and record.size_bytes == 3 and record.content_hash == "h"
    store.set_file_metadata("/a", "status", "ready")
    before = store.get("/a")
    assert before is not None
    store.delete("/a")
    time.sleep(0.005)  # timestamps have millisecond precision
    assert store.put_many(["/a"]) == 1
    assert store.get_all_file_metadata("/a") == {}
    revived = store.get("/a")
    # As with put: the same path_id, a new created_at.
    assert revived is not None and revived.path_id == before.path_id
    assert revived.created_at > before.created_at
    assert [r.virtual_path for r in store.list()] == ["/a", "/b", "/c"]


@pytest.mark.parametrize(
    "items",
    [
        ["/ok", "relative"],
        ["/ok", {"path": "/x", "colour": 1}],
        [{"path": "/x", "file_type": 7}],
        [{"path": "/x", "size": -1}],
    ],
)
def test_put_many_validates_everything_first(
    store: SQLAlchemyMetadataStore, items: list[object]
) -> None:
    with pytest.raises(ValueError):
        store.put_many(items)  # type: ignore[arg-type]
    assert store.list() == []


def test_set_file_metadata_many(store: SQLAlchemyMetadataStore) -> None:
    store.put_many(["/t", "/d"])
    written = store.set_file_metadata_many(
        [
            ("/t", "status", "completed"),
            ("/d", "depends_on", "/t"),
            ("/d", "status", "ready"),
            ("/d", "priority", 4),
            ("/d", "note", {"any": ["json"]}),
        ]
    )
    assert written == 5
    assert [r["virtual_path"] for r in store.get_ready_work()] == ["/d"]
    assert store.get_file_metadata("/d", "note") == {"any": ["json"]}


def test_set_file_metadata_many_writes_nothing_on_error(
    store: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    store.put_many(["/a", "/b"])
    with pytest.raises(NexusFileNotFoundError):
        store.set_file_metadata_many([("/a", "status", "ready"), ("/missing", "status", "ready")])
    with pytest.raises(ValueError):
        store.set_file_metadata_many([("/a", "status", "ready"), ("/b", "priority", "high")])
    with pytest.raises(InvalidArgumentError):
        store.set_file_metadata_many([("/a", "status")])  # type: ignore[list-item]
    store.set_file_metadata("/b", "depends_on", "/a")
    with pytest.raises(DependencyCycleError):
        store.set_file_metadata_many([("/a", "status", "ready"), ("/a", "depends_on", "/b")])
    assert store.get_all_file_metadata("/a") == {}
    assert queue.work_stats()["by_status"]["ready"] == 0


def test_plain_sql_hard_delete_of_a_graph(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, raw_engine: sa.Engine
) -> None:
    queue.enqueue_many(
        [
            {"path": "/g/a"},
            {"path": "/g/b", "depends_on": "/g/a"},
            {"path": "/g/c", "depends_on": ["/g/a", "/g/b"]},
            {"path": "/g/keep", "depends_on": "/g/a"},
        ]
    )
    with raw_engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM file_paths WHERE virtual_path IN ('/g/a', '/g/b', '/g/c')")
        )
    [row] = store.get_blocked_work()
    assert row["virtual_path"] == "/g/keep" and row["blocker_count"] == 1
    with raw_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM work_items")).scalar() == 1
        assert (
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM file_metadata WHERE path_id NOT IN "
                    "(SELECT path_id FROM file_paths)"
                )
            ).scalar()
            == 0
        )
