"""A depends_on that would close a cycle (self, 2-cycle, 3-cycle; by virtual path, by path_id,
or mixed, directly or inside a list) raises DependencyCycleError and writes nothing, on
SQLite and PostgreSQL; acyclic graphs such as diamonds are accepted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nexus.errors import DependencyCycleError, InvalidMetadataError
from nexus.storage.metadata_store import SQLAlchemyMetadataStore

AddItem = Callable[..., str]


def snapshot(store: SQLAlchemyMetadataStore) -> tuple[Any, ...]:
    return (
        {r.virtual_path: store.get_all_file_metadata(r.path_id) for r in store.list("/")},
        store.get_ready_work(),
        store.get_blocked_work(),
        store.get_work_by_priority(),
    )


def assert_cycle_rejected(
    store: SQLAlchemyMetadataStore, path: str, value: Any
) -> DependencyCycleError:
    before = snapshot(store)
    with pytest.raises(DependencyCycleError) as info:
        store.set_file_metadata(path, "depends_on", value)
    assert isinstance(info.value, InvalidMetadataError)
    assert isinstance(info.value, ValueError)
    assert info.value.key == "depends_on"
    assert snapshot(store) == before
    return info.value


def test_self_dependency(store: SQLAlchemyMetadataStore, add_item: AddItem) -> None:
    for by in ("path", "path_id"):
        path = f"/{by}/a"
        a = add_item(path, "ready")
        ref = a if by == "path_id" else path
        error = assert_cycle_rejected(store, path, ref)
        assert error.value == ref
        assert_cycle_rejected(store, a, ref)
        assert_cycle_rejected(store, path, ["/other", ref])
        assert store.get_file_metadata(path, "depends_on") is None
    assert [r["virtual_path"] for r in store.get_ready_work()] == ["/path/a", "/path_id/a"]


def test_two_cycle(store: SQLAlchemyMetadataStore, add_item: AddItem) -> None:
    for by in ("path", "path_id", "mixed"):
        a = add_item(f"/{by}/a", "ready")
        b = add_item(f"/{by}/b", "ready")
        store.set_file_metadata(a, "depends_on", b if by in ("path_id", "mixed") else f"/{by}/b")
        ref = a if by == "path_id" else f"/{by}/a"
        assert_cycle_rejected(store, f"/{by}/b", ref)
        assert_cycle_rejected(store, b, [ref])
        assert store.get_file_metadata(b, "depends_on") is None
    assert [r["virtual_path"] for r in store.get_ready_work()] == [
        "/path/b",
        "/path_id/b",
        "/mixed/b",
    ]
    assert [r["virtual_path"] for r in store.get_blocked_work()] == [
        "/path/a",
        "/path_id/a",
        "/mixed/a",
    ]


def test_three_cycle(store: SQLAlchemyMetadataStore, add_item: AddItem) -> None:
    for by in ("path", "path_id", "mixed"):
        ids = {p: add_item(f"/{by}{p}", "pending") for p in ("/a", "/b", "/c")}

        def ref(path: str, index: int, by: str = by, ids: dict[str, str] = ids) -> str:
            use_id = by == "path_id" or (by == "mixed" and index % 2 == 0)
            return ids[path] if use_id else f"/{by}{path}"

        store.set_file_metadata(ids["/a"], "depends_on", ref("/b", 0))
        store.set_file_metadata(ids["/b"], "depends_on", [ref("/c", 1), "/unrelated"])
        assert_cycle_rejected(store, ids["/c"], ref("/a", 2))
        assert_cycle_rejected(store, f"/{by}/c", ["/unrelated", ref("/a", 2)])
        assert store.get_file_metadata(ids["/c"], "depends_on") is None
        # The same edge pointing elsewhere is fine.
        store.set_file_metadata(ids["/c"], "depends_on", "/unrelated")
        assert store.get_file_metadata(ids["/c"], "depends_on") == "/unrelated"


def test_rejected_change_keeps_the_previous_dependency(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    add_item("/a", "ready", depends_on="/b")
    add_item("/b", "ready", depends_on="/c")
    add_item("/c", "completed")
    assert [r["virtual_path"] for r in store.get_ready_work()] == ["/b"]
    assert_cycle_rejected(store, "/c", "/a")
    assert store.get_file_metadata("/c", "status") == "completed"
    assert [r["virtual_path"] for r in store.get_ready_work()] == ["/b"]


def test_cycle_through_a_path_created_later(
    store: SQLAlchemyMetadataStore, add_item: AddItem
) -> None:
    add_item("/a", "ready", depends_on="/future")
    add_item("/future", "ready")
    assert_cycle_rejected(store, "/future", "/a")
    assert_cycle_rejected(store, "/future", store.get_path_id("/a"))


def test_acyclic_graphs_are_accepted(store: SQLAlchemyMetadataStore, add_item: AddItem) -> None:
    # Diamond: top -> left, right -> bottom; plus a chain and duplicate references.
    add_item("/bottom", "completed")
    left = add_item("/left", "completed", depends_on="/bottom")
    add_item("/right", "completed", depends_on=store.get_path_id("/bottom"))
    add_item("/top", "ready", depends_on=[left, "/right", "/bottom", "/right"])
    add_item("/chain/1", "ready", depends_on="/top")
    add_item("/chain/2", "ready", depends_on="/chain/1")
    add_item("/chain/3", "ready", depends_on=["/chain/2", "/chain/1", "/top"])
    ready = [r["virtual_path"] for r in store.get_ready_work()]
    assert ready == ["/top"]
    assert {r["virtual_path"] for r in store.get_blocked_work()} == {
        "/chain/1",
        "/chain/2",
        "/chain/3",
    }
