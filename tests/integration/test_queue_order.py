"""Items of one batch with equal priority are claimed in the order given (their path_ids,
made in one millisecond, still sort in the order they were made), on both databases."""

from __future__ import annotations

from nexus.storage.types import new_path_id
from nexus.work import WorkQueue


def test_path_ids_made_in_a_row_sort_in_order() -> None:
    ids = [new_path_id() for _ in range(10_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_a_batch_is_claimed_in_the_order_given(queue: WorkQueue) -> None:
    paths = [f"/order/{i:03d}-{name}" for i, name in enumerate("kdqawmzbxe" * 5)]
    shuffled = paths[1::2] + paths[::2]
    queue.enqueue_many([{"path": p, "priority": 1} for p in shuffled])
    claimed = [c["virtual_path"] for c in queue.claim_ready_work("w", limit=100)]
    assert claimed == shuffled
