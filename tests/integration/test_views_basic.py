"""The five work views through the store API, on SQLite and PostgreSQL: a dependency is
resolved only by a completed target, blocker counts count unresolved dependencies only."""

from __future__ import annotations

from nexus.storage.metadata_store import SQLAlchemyMetadataStore


def _item(store: SQLAlchemyMetadataStore, path: str, status: str, **meta: object) -> str:
    record = store.put(path)
    store.set_file_metadata(path, "status", status)
    for key, value in meta.items():
        store.set_file_metadata(path, key, value)
    return record.path_id


def test_dependency_resolves_only_when_target_completed(store: SQLAlchemyMetadataStore) -> None:
    target = _item(store, "/a", "ready")
    _item(store, "/b", "ready", depends_on=target)
    assert [r["virtual_path"] for r in store.get_ready_work()] == ["/a"]
    for status in ("pending", "blocked", "in_progress", "failed", "ready"):
        store.set_file_metadata("/a", "status", status)
        assert [r["virtual_path"] for r in store.get_blocked_work()] == ["/b"]
    store.set_file_metadata("/a", "status", "completed")
    assert [r["virtual_path"] for r in store.get_ready_work()] == ["/b"]
    assert store.get_blocked_work() == []


def test_blocker_count_counts_unresolved_only(store: SQLAlchemyMetadataStore) -> None:
    _item(store, "/t1", "completed")
    _item(store, "/t2", "ready")
    _item(store, "/x", "pending", depends_on=["/t1", "/t2", "/missing"])
    [row] = store.get_blocked_work()
    assert row["virtual_path"] == "/x"
    assert row["blocker_count"] == 2
