"""What an enqueue did, in its result (issue 12, items 7 and 8): ``created`` says whether the
call made the item (a re-enqueue with other fields changes nothing, and says so), and
``missing_dependencies`` names the dependencies that name no live path (kept: they block)."""

from __future__ import annotations

from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue


def test_a_new_item_is_created_and_a_second_enqueue_changes_nothing(queue: WorkQueue) -> None:
    first = queue.enqueue("/e/a", priority=1, tags=["x"])
    assert first["created"] is True and first["missing_dependencies"] == []
    again = queue.enqueue("/e/a", priority=9, tags=["y"], status="pending")
    assert again["created"] is False
    assert (again["priority"], again["tags"], again["status"]) == (1, ["x"], "ready")
    assert queue.get_work_item("/e/a")["priority"] == 1  # type: ignore[index]


def test_an_idempotency_key_used_again_returns_the_first_item_not_created(
    queue: WorkQueue,
) -> None:
    assert queue.enqueue("/e/k1", idempotency_key="k")["created"] is True
    again = queue.enqueue("/e/k2", idempotency_key="k")
    assert (again["virtual_path"], again["created"]) == ("/e/k1", False)
    assert queue.get_work_item("/e/k2") is None


def test_a_key_or_path_named_twice_in_one_batch_is_created_once(
    store: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    """The second entry with the same idempotency key used to make the batch fail (the key
    was inserted twice); it now gets the first entry's item, not created."""
    items = queue.enqueue_many(
        [
            {"path": "/b/one", "idempotency_key": "same"},
            {"path": "/b/two", "idempotency_key": "same"},
            {"path": "/b/three"},
            {"path": "/b/three", "priority": 5},
        ]
    )
    assert [(i["virtual_path"], i["created"]) for i in items] == [
        ("/b/one", True),
        ("/b/one", False),
        ("/b/three", True),
        ("/b/three", False),
    ]
    assert not store.exists("/b/two")
    assert items[3]["priority"] is None


def test_a_path_that_existed_without_being_an_item_is_created(
    store: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    store.put("/e/file")
    assert queue.enqueue("/e/file")["created"] is True


def test_dependencies_on_missing_paths_are_kept_and_named(
    store: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    queue.enqueue("/d/there")
    store.put("/d/gone")
    store.delete("/d/gone")
    item = queue.enqueue(
        "/d/item", depends_on=["/d/there", "/d/typo", "/d/gone"], status="blocked"
    )
    assert item["missing_dependencies"] == ["/d/typo", "/d/gone"]
    assert queue.get_work_item("/d/item")["blocker_count"] == 3  # type: ignore[index]
    # The existing item, enqueued again, still reports them (its stored depends_on).
    again = queue.enqueue("/d/item")
    assert again["created"] is False and again["missing_dependencies"] == ["/d/typo", "/d/gone"]


def test_dependencies_inside_the_batch_and_by_path_id_are_not_missing(
    queue: WorkQueue,
) -> None:
    target = queue.enqueue("/i/target")
    items = queue.enqueue_many(
        [
            {"path": "/i/first"},
            {"path": "/i/second", "depends_on": ["/i/first", target["path_id"]]},
            {"path": "/i/third", "depends_on": ["/i/second", "/i/nowhere"]},
        ]
    )
    assert [i["missing_dependencies"] for i in items] == [[], [], ["/i/nowhere"]]
    assert [i["created"] for i in items] == [True, True, True]
