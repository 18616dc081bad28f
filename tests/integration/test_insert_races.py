"""Read-then-insert under concurrency (issue 12, item 2): two real processes ('spawn') do the
same first write at the same moment, round after round, on SQLite and PostgreSQL.

Every place that looks for a row and inserts it when absent is raced here: idempotency keys,
new paths (``enqueue``, ``put``, ``put_many``), a path that exists but is no work item yet, a
soft-deleted path brought back, overlapping ``enqueue_many`` batches, metadata keys, the
dependency rows of one item, and the counter rows of a tenant's first items. Each round the
two processes wait at a barrier and then write; the test checks that neither failed and that
the database holds what one writer alone would have left (one row, one ``enqueued`` event,
one creator, the creator's values).

On SQLite every writer holds the write lock for its whole transaction, so these races cannot
happen there; the tests run there too, to hold both databases to the same promise.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue

pytestmark = pytest.mark.slow
SPAWN = multiprocessing.get_context("spawn")
ROUNDS = 20
RACERS = 2
TIMEOUT = 60

Scenario = Callable[[WorkQueue, int, int], Any]


# ----------------------------------------------------------------------------- harness


def _racer(db_url: str, scenario: Scenario, racer: int, barrier: Any, out: Any) -> None:
    """Run every round of ``scenario`` as racer ``racer``, lined up with the other racer at
    the barrier before each round; report each round's value or error."""
    results: list[tuple[str, Any]] = []
    try:
        with SQLAlchemyMetadataStore(db_url) as store:
            queue = WorkQueue(store)
            for round_ in range(ROUNDS):
                barrier.wait(timeout=TIMEOUT)
                try:
                    results.append(("ok", scenario(queue, round_, racer)))
                except Exception as exc:  # every failure is reported
                    results.append(("error", f"{type(exc).__name__}: {exc}"))
            queue.close()
        out.put((racer, results))
    except BaseException as exc:  # reported to the parent
        out.put((racer, [("error", f"{type(exc).__name__}: {exc}")]))


def _race(db_url: str, scenario: Scenario) -> list[list[Any]]:
    """Race ``scenario`` in two processes; returns, per round, the two racers' values."""
    barrier = SPAWN.Barrier(RACERS)
    out = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=_racer, args=(db_url, scenario, racer, barrier, out))
        for racer in range(RACERS)
    ]
    for proc in procs:
        proc.start()
    reports: dict[int, list[tuple[str, Any]]] = {}
    try:
        for _ in procs:
            racer, results = out.get(timeout=TIMEOUT * 3)
            reports[racer] = results
    except queue_module.Empty:  # pragma: no cover - a hung racer
        pass
    finally:
        for proc in procs:
            proc.join(timeout=TIMEOUT)
            if proc.is_alive():  # pragma: no cover
                proc.kill()
                proc.join()
    assert len(reports) == RACERS, "a racer hung"
    errors = [value for results in reports.values() for kind, value in results if kind == "error"]
    assert not errors, f"{len(errors)} racing writes failed, e.g. {errors[0]}"
    assert all(len(results) == ROUNDS for results in reports.values())
    return [[reports[racer][round_][1] for racer in range(RACERS)] for round_ in range(ROUNDS)]


def _events(queue: WorkQueue, path: str) -> Counter[str]:
    return Counter(event["event"] for event in queue.get_work_history(path))


# ------------------------------------------------------------------ idempotency keys


def _same_key(queue: WorkQueue, round_: int, racer: int) -> Any:
    item = queue.enqueue(f"/idem/{round_}/{racer}", idempotency_key=f"key-{round_}")
    return item["virtual_path"], item["created"]


def test_the_same_idempotency_key_enqueued_at_once_makes_one_item(
    db_url: str, queue: WorkQueue
) -> None:
    """Found broken on PostgreSQL: the second raised a unique violation on the key."""
    for round_, (first, second) in enumerate(_race(db_url, _same_key)):
        assert first[0] == second[0], "both must return the item the key names"
        assert sorted([first[1], second[1]]) == [False, True]
        other = f"/idem/{round_}/{1 - int(first[0].rsplit('/', 1)[1])}"
        assert queue.get_work_item(other) is None and not queue.store.exists(other)


def _same_key_same_path(queue: WorkQueue, round_: int, racer: int) -> Any:
    return queue.enqueue(f"/idem-path/{round_}", idempotency_key=f"path-key-{round_}")["created"]


def test_the_same_key_and_path_enqueued_at_once(db_url: str, queue: WorkQueue) -> None:
    for round_, created in enumerate(_race(db_url, _same_key_same_path)):
        assert sorted(created) == [False, True]
        assert _events(queue, f"/idem-path/{round_}")["enqueued"] == 1


# ----------------------------------------------------------------------------- paths


def _same_new_path(queue: WorkQueue, round_: int, racer: int) -> Any:
    item = queue.enqueue(f"/new/{round_}", priority=racer, depends_on=f"/new/dep-{racer}")
    return item["created"], item["priority"]


def test_the_same_new_path_enqueued_at_once_is_created_once(
    db_url: str, queue: WorkQueue
) -> None:
    for round_, results in enumerate(_race(db_url, _same_new_path)):
        [creator] = [r for r, (created, _) in enumerate(results) if created]
        assert [p for _, p in results] == [creator, creator], "both see the creator's item"
        item = queue.get_work_item(f"/new/{round_}")
        assert item is not None and item["priority"] == creator
        assert item["depends_on"] == f"/new/dep-{creator}"
        assert _events(queue, f"/new/{round_}")["enqueued"] == 1


def _existing_path(queue: WorkQueue, round_: int, racer: int) -> Any:
    item = queue.enqueue(f"/old/{round_}", priority=racer, tags=[f"racer-{racer}"])
    return item["created"], item["priority"]


def test_an_existing_path_enqueued_at_once_becomes_one_item(
    db_url: str, store: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    """Found broken on PostgreSQL: both routed a status, both reported a new item, and the
    second's priority and tags overwrote the first's."""
    store.put_many([f"/old/{round_}" for round_ in range(ROUNDS)])
    for round_, results in enumerate(_race(db_url, _existing_path)):
        creators = [racer for racer, (created, _) in enumerate(results) if created]
        assert len(creators) == 1, results
        [creator] = creators
        assert [p for _, p in results] == [creator, creator]
        item = queue.get_work_item(f"/old/{round_}")
        assert item is not None
        assert (item["priority"], item["tags"]) == (creator, [f"racer-{creator}"])
        assert _events(queue, f"/old/{round_}")["enqueued"] == 1


def _deleted_path(queue: WorkQueue, round_: int, racer: int) -> Any:
    return queue.enqueue(f"/gone/{round_}", priority=racer)["created"]


def test_a_soft_deleted_path_enqueued_at_once_comes_back_once(
    db_url: str, store: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    """Found broken on PostgreSQL: both revived the path, the second then inserted a work
    row the first had committed (unique violation)."""
    for round_ in range(ROUNDS):
        store.put(f"/gone/{round_}")
        store.set_file_metadata(f"/gone/{round_}", "owner", "before")
        store.delete(f"/gone/{round_}")
    for round_, created in enumerate(_race(db_url, _deleted_path)):
        assert sorted(created) == [False, True]
        assert store.get_all_file_metadata(f"/gone/{round_}").get("owner") is None
        assert _events(queue, f"/gone/{round_}")["enqueued"] == 1


def _overlapping_batches(queue: WorkQueue, round_: int, racer: int) -> Any:
    paths = [f"/batch/{round_}/{i}" for i in range(6)]
    if racer:
        paths.reverse()
    items = queue.enqueue_many(
        [{"path": p, "depends_on": paths[0] if p != paths[0] else None} for p in paths]
    )
    return {item["virtual_path"]: item["created"] for item in items}


def test_overlapping_enqueue_many_batches_create_each_item_once(
    db_url: str, queue: WorkQueue
) -> None:
    for round_, (first, second) in enumerate(_race(db_url, _overlapping_batches)):
        assert set(first) == set(second)
        for path in first:
            assert sorted([first[path], second[path]]) == [False, True], path
            assert _events(queue, path)["enqueued"] == 1
        assert len(queue.store.list(f"/batch/{round_}/")) == 6


def _put_same_path(queue: WorkQueue, round_: int, racer: int) -> Any:
    return queue.store.put(f"/put/{round_}", size=racer).path_id


def test_the_same_path_put_at_once_is_one_path(db_url: str, queue: WorkQueue) -> None:
    for round_, (first, second) in enumerate(_race(db_url, _put_same_path)):
        assert first == second
        listed = [r.virtual_path for r in queue.store.list(f"/put/{round_}")]
        assert listed.count(f"/put/{round_}") == 1


def _put_many_overlapping(queue: WorkQueue, round_: int, racer: int) -> Any:
    paths = [f"/many/{round_}/{i}" for i in range(8)]
    return queue.store.put_many(paths[::-1] if racer else paths)


def test_overlapping_put_many_creates_each_path_once(db_url: str, queue: WorkQueue) -> None:
    for round_, created in enumerate(_race(db_url, _put_many_overlapping)):
        assert sum(created) == 8
        assert len(queue.store.list(f"/many/{round_}/")) == 8


# -------------------------------------------------------------------- metadata keys


def _same_keys(queue: WorkQueue, round_: int, racer: int) -> Any:
    path = f"/keys/{round_}"
    return queue.store.set_file_metadata_many(
        [(path, "owner", racer), (path, "priority", racer), (path, "status", "ready")]
    )


def test_the_same_metadata_keys_written_at_once_are_one_row_each(
    db_url: str, store: SQLAlchemyMetadataStore, raw_engine: sa.Engine
) -> None:
    store.put_many([f"/keys/{round_}" for round_ in range(ROUNDS)])
    _race(db_url, _same_keys)
    with raw_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT p.virtual_path, m.key, count(*) FROM file_metadata m"
                " JOIN file_paths p ON p.path_id = m.path_id GROUP BY p.virtual_path, m.key"
            )
        ).all()
    assert {n for _, _, n in rows} == {1}
    assert len(rows) == ROUNDS * 3
    for round_ in range(ROUNDS):
        metadata = store.get_all_file_metadata(f"/keys/{round_}")
        assert metadata["owner"] == metadata["priority"]  # one writer's values, not a mix


# ------------------------------------------------------------------- dependency rows


def _same_dependencies(queue: WorkQueue, round_: int, racer: int) -> Any:
    path = f"/deps/{round_}"
    queue.store.set_file_metadata(path, "depends_on", [f"/deps/t{racer}", "/deps/shared"])
    return racer


def test_the_dependencies_of_one_item_written_at_once_match_its_value(
    db_url: str, store: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    queue.enqueue_many([{"path": f"/deps/{round_}"} for round_ in range(ROUNDS)])
    _race(db_url, _same_dependencies)
    for round_ in range(ROUNDS):
        path = f"/deps/{round_}"
        value = store.get_file_metadata(path, "depends_on")
        assert [d["path"] for d in queue.get_dependencies(path)] == sorted(value)
        assert queue.get_work_item(path)["blocker_count"] == 2  # type: ignore[index]


# -------------------------------------------------------------------------- counters


def _first_items_of_a_tenant(queue: WorkQueue, round_: int, racer: int) -> Any:
    with SQLAlchemyMetadataStore(queue.store.url, tenant_id=f"tenant-{round_}") as store:
        tenant_queue = WorkQueue(store)
        tenant_queue.enqueue_many([{"path": f"/c/{racer}/{i}"} for i in range(3)])
        tenant_queue.close()
    return racer


def test_the_first_items_of_a_tenant_enqueued_at_once_are_all_counted(
    db_url: str, make_queue: Callable[..., WorkQueue]
) -> None:
    _race(db_url, _first_items_of_a_tenant)
    for round_ in range(ROUNDS):
        stats = make_queue(tenant_id=f"tenant-{round_}").work_stats()
        assert stats["ready"] == 6 and stats["by_status"]["ready"] == 6
