"""Paths on SQLite and PostgreSQL: put is an idempotent upsert, delete is a soft delete that
removes the path from every read (and a later put brings it back with no old metadata), and
list(prefix) is a plain, case-sensitive string prefix ordered by path; close() gives every
server connection back."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from datetime import timezone

import pytest
import sqlalchemy as sa

from nexus.errors import (
    InvalidArgumentError,
    InvalidPathError,
    NexusError,
    NexusFileNotFoundError,
)
from nexus.storage.metadata_store import FileRecord, SQLAlchemyMetadataStore
from nexus.work import WorkQueue

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _all_views(store: SQLAlchemyMetadataStore) -> list[list[str]]:
    return [
        [row["virtual_path"] for row in rows]
        for rows in (
            store.get_ready_work(),
            store.get_pending_work(),
            store.get_blocked_work(),
            store.get_work_by_priority(),
            store.get_in_progress_work(),
        )
    ]


def test_put_creates_a_record(store: SQLAlchemyMetadataStore) -> None:
    record = store.put("/jobs/a.json", size=12, content_hash="abc", file_type="json")
    assert isinstance(record, FileRecord)
    assert UUID.match(record.path_id)
    assert record.virtual_path == "/jobs/a.json"
    assert record.tenant_id == "default"
    assert (record.size_bytes, record.content_hash, record.file_type) == (12, "abc", "json")
    assert record.created_at.tzinfo is not None
    assert record.created_at.utcoffset() == timezone.utc.utcoffset(None)
    assert store.get("/jobs/a.json") == record


def test_put_is_idempotent(store: SQLAlchemyMetadataStore) -> None:
    first = store.put("/jobs/a.json", size=1, content_hash="h1")
    store.set_file_metadata("/jobs/a.json", "status", "ready")
    second = store.put("/jobs/a.json", size=2, content_hash="h2", file_type="json")
    third = store.put("/jobs/a.json", size=2, content_hash="h2", file_type="json")
    assert second.path_id == first.path_id == third.path_id
    assert second.created_at == first.created_at == third.created_at
    assert second.updated_at >= first.updated_at
    assert (second.size_bytes, second.content_hash, second.file_type) == (2, "h2", "json")
    assert store.get("/jobs/a.json") == third
    assert [r.virtual_path for r in store.list("/")] == ["/jobs/a.json"]
    # Metadata survives a re-put of a live path.
    assert store.get_file_metadata("/jobs/a.json", "status") == "ready"
    assert [r["size_bytes"] for r in store.get_ready_work()] == [2]


def test_get_exists_and_path_id(store: SQLAlchemyMetadataStore) -> None:
    assert store.get("/nope") is None
    assert store.exists("/nope") is False
    assert store.get_path_id("/nope") is None
    record = store.put("/yes")
    assert store.exists("/yes") is True
    assert store.get_path_id("/yes") == record.path_id
    # A path_id is accepted wherever a path is.
    assert store.get(record.path_id) == record
    assert store.exists(record.path_id) is True
    assert store.get_path_id(record.path_id) == record.path_id
    assert store.get(str(uuid.uuid4())) is None


def test_delete_is_soft_and_hides_the_path_everywhere(
    store: SQLAlchemyMetadataStore, add_item: Callable[..., str]
) -> None:
    path_id = add_item("/w/ready", "ready", priority=1, tags=["x"])
    add_item("/w/pending", "pending")
    add_item("/w/progress", "in_progress", worker_id="w1")
    add_item("/w/blocked", "blocked", depends_on="/w/missing")
    store.put("/w/keep")
    for path in ("/w/ready", "/w/pending", "/w/progress", "/w/blocked"):
        store.delete(path)
    assert store.get("/w/ready") is None
    assert store.get(path_id) is None
    assert store.exists("/w/ready") is False
    assert store.get_path_id("/w/ready") is None
    assert [r.virtual_path for r in store.list("/")] == ["/w/keep"]
    assert _all_views(store) == [[], [], [], [], []]
    with pytest.raises(NexusFileNotFoundError):
        store.get_file_metadata("/w/ready", "status")
    with pytest.raises(NexusFileNotFoundError):
        store.get_all_file_metadata(path_id)


def test_delete_by_path_id(store: SQLAlchemyMetadataStore) -> None:
    record = store.put("/a")
    store.delete(record.path_id)
    assert not store.exists("/a")


def test_delete_of_a_missing_or_deleted_path_raises(store: SQLAlchemyMetadataStore) -> None:
    with pytest.raises(NexusFileNotFoundError) as info:
        store.delete("/missing")
    assert info.value.path == "/missing"
    store.put("/a")
    store.delete("/a")
    with pytest.raises(NexusFileNotFoundError):
        store.delete("/a")


def test_re_put_after_delete_resurrects_with_no_old_metadata(
    store: SQLAlchemyMetadataStore, add_item: Callable[..., str]
) -> None:
    add_item("/r", "ready", priority=1, tags=["old"], note={"old": True})
    before = store.get("/r")
    assert before is not None
    store.delete("/r")
    after = store.put("/r", size=5)
    assert store.exists("/r")
    assert store.get_all_file_metadata("/r") == {}
    assert store.get_file_metadata("/r", "status") is None
    assert after.size_bytes == 5
    assert after.created_at >= before.created_at
    assert _all_views(store) == [[], [], [], [], []]
    # It is a work item again only once it gets a status.
    store.set_file_metadata("/r", "status", "ready")
    [row] = store.get_ready_work()
    assert (row["virtual_path"], row["priority"]) == ("/r", None)
    assert store.get_work_by_priority()[0]["tags"] is None


def test_list_is_a_plain_string_prefix_ordered_by_path(store: SQLAlchemyMetadataStore) -> None:
    paths = ["/b", "/a/x", "/ab", "/a", "/A", "/a/y/z", "/a_", "/a%", "/ba", "/é", "/z"]
    for path in paths:
        store.put(path)
    assert [r.virtual_path for r in store.list("/")] == sorted(paths)
    assert [r.virtual_path for r in store.list()] == sorted(paths)
    assert [r.virtual_path for r in store.list("/a")] == [
        "/a",
        "/a%",
        "/a/x",
        "/a/y/z",
        "/a_",
        "/ab",
    ]
    assert [r.virtual_path for r in store.list("/a/")] == ["/a/x", "/a/y/z"]
    assert [r.virtual_path for r in store.list("/b")] == ["/b", "/ba"]
    assert [r.virtual_path for r in store.list("/nothing")] == []


def test_list_prefix_is_case_sensitive(store: SQLAlchemyMetadataStore) -> None:
    for path in ("/Jobs/a", "/jobs/b", "/JOBS/c"):
        store.put(path)
    assert [r.virtual_path for r in store.list("/jobs")] == ["/jobs/b"]
    assert [r.virtual_path for r in store.list("/Jobs")] == ["/Jobs/a"]
    assert [r.virtual_path for r in store.list("/J")] == ["/JOBS/c", "/Jobs/a"]


def test_list_prefix_treats_sql_wildcards_literally(store: SQLAlchemyMetadataStore) -> None:
    for path in ("/a_b", "/axb", "/a%b", "/ayyb"):
        store.put(path)
    assert [r.virtual_path for r in store.list("/a_")] == ["/a_b"]
    assert [r.virtual_path for r in store.list("/a%")] == ["/a%b"]


def test_list_skips_deleted_paths(store: SQLAlchemyMetadataStore) -> None:
    for path in ("/a/1", "/a/2", "/a/3"):
        store.put(path)
    store.delete("/a/2")
    assert [r.virtual_path for r in store.list("/a")] == ["/a/1", "/a/3"]


INVALID_PATHS = ["relative", "/a/../b", "/a\x00", "", "/x\ny", "/..", "/a\x7f"]
INVALID_PUT_ARGUMENTS: list[dict[str, object]] = [
    {"size": -1},
    {"size": True},
    {"size": "3"},
    {"size": 1.5},
    {"content_hash": 3},
    {"file_type": b"json"},
]


def test_invalid_paths_raise_and_write_nothing(store: SQLAlchemyMetadataStore) -> None:
    store.put("/existing")
    for path in INVALID_PATHS:
        with pytest.raises(InvalidPathError) as info:
            store.put(path)
        assert info.value.path == path
        for call in (store.get, store.exists, store.get_path_id, store.delete, store.list):
            with pytest.raises(InvalidPathError):
                call(path)
    assert [r.virtual_path for r in store.list("/")] == ["/existing"]


def test_invalid_put_arguments_raise_and_write_nothing(store: SQLAlchemyMetadataStore) -> None:
    for kwargs in INVALID_PUT_ARGUMENTS:
        with pytest.raises(InvalidArgumentError) as info:
            store.put("/a", **kwargs)  # type: ignore[arg-type]
        assert info.value.value == next(iter(kwargs.values()))
    assert store.list("/") == []


# Regression: sizes beyond 64 bits used to reach the driver (raw OverflowError on SQLite).
def test_size_beyond_64_bits_is_an_invalid_argument(store: SQLAlchemyMetadataStore) -> None:
    store.put("/ok", size=2**63 - 1)
    assert store.get("/ok").size_bytes == 2**63 - 1  # type: ignore[union-attr]
    with pytest.raises(InvalidArgumentError) as info:
        store.put("/big", size=2**63)
    assert info.value.value == 2**63
    assert [r.virtual_path for r in store.list("/")] == ["/ok"]


def test_paths_are_scoped_by_tenant(make_store: Callable[..., SQLAlchemyMetadataStore]) -> None:
    alpha = make_store(tenant_id="alpha")
    beta = make_store(tenant_id="beta")
    a = alpha.put("/shared.json", size=1)
    b = beta.put("/shared.json", size=2)
    assert a.path_id != b.path_id
    assert [r.size_bytes for r in alpha.list("/")] == [1]
    assert [r.size_bytes for r in beta.list("/")] == [2]
    alpha.delete("/shared.json")
    assert beta.exists("/shared.json")
    assert not alpha.exists("/shared.json")


@pytest.mark.parametrize("backend", ["postgresql"])
def test_close_gives_back_every_server_connection(db_url: str, raw_engine: sa.Engine) -> None:
    def backends() -> int:
        with raw_engine.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %(name)s",
                    {"name": name},
                ).scalar_one()
            )

    name = f"nexus-close-{uuid.uuid4().hex[:8]}"
    store = SQLAlchemyMetadataStore(
        db_url, engine_options={"connect_args": {"application_name": name}}
    )
    queue = WorkQueue(store)
    queue.enqueue("/jobs/a")
    assert queue.claim_ready_work("worker-1")  # a driver-level connection
    store.put("/b")  # a pooled SQLAlchemy connection
    assert backends() >= 1
    queue.close()
    store.close()
    # A backend leaves pg_stat_activity a moment after its client hangs up.
    deadline = time.monotonic() + 10
    while backends() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backends() == 0


def test_closed_store_refuses_calls(db_url: str) -> None:
    store = SQLAlchemyMetadataStore(db_url)
    store.close()
    store.close()  # idempotent
    with pytest.raises(NexusError):
        store.put("/a")
    with pytest.raises(NexusError):
        store.get_ready_work()
