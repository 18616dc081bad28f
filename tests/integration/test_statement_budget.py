"""The queue's hot paths send a fixed, small number of statements, and the claim reads the
ready index — on SQLite and on PostgreSQL.

A claim or a completion is one statement per batch on PostgreSQL (history rows are written by
the same statement) and two on SQLite (history rows are one more statement); an
``enqueue_many`` sends a number of statements that does not grow with the batch. Statements
are counted where they are sent: the driver-level tracer of ``store.database`` and
SQLAlchemy's cursor events. These tests fail when a change adds a round trip.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue
from nexus.work.drivers import driver_for

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")


@contextmanager
def counting(store: SQLAlchemyMetadataStore) -> Iterator[list[str]]:
    """Collect every statement sent (driver level and SQLAlchemy), transaction control left
    out."""
    sent: list[str] = []

    def record(sql: str, _params: Any = None) -> None:
        if not sql.strip().upper().startswith(TRANSACTION_CONTROL):
            sent.append(" ".join(sql.split())[:80])

    def on_execute(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        record(sql)

    store.database.tracer = record
    sa.event.listen(store.engine, "before_cursor_execute", on_execute)
    try:
        yield sent
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", on_execute)
        store.database.tracer = None


def _no_rescue_due(queue: WorkQueue) -> None:
    # The rescue of expired leases runs at most once per interval; keep it out of the count.
    queue._last_reclaim = time.monotonic()


@pytest.mark.parametrize("batch", [1, 10])
def test_claim_and_completion_budget(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, backend: str, batch: int
) -> None:
    queue.enqueue_many([{"path": f"/b/{i}"} for i in range(20)])
    _no_rescue_due(queue)
    with counting(store) as sent:
        claimed = queue.claim_ready_work("w", limit=batch)
    assert len(claimed) == batch
    assert len(sent) == (1 if backend == "postgresql" else 2), sent
    with counting(store) as sent:
        queue.complete_work_many([(item["path_id"], item["lease_token"]) for item in claimed])
    assert len(sent) == (1 if backend == "postgresql" else 2), sent


def test_completion_with_dependents_reads_the_promoted_once(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, backend: str
) -> None:
    queue.enqueue_many(
        [{"path": "/p/a"}]
        + [{"path": f"/p/d{i}", "status": "blocked", "depends_on": "/p/a"} for i in range(5)]
    )
    _no_rescue_due(queue)
    (item,) = queue.claim_ready_work("w")
    with counting(store) as sent:
        promoted = queue.complete_work(item["path_id"], item["lease_token"])
    assert promoted == [f"/p/d{i}" for i in range(5)]
    assert len(sent) == (2 if backend == "postgresql" else 3), sent


@pytest.mark.parametrize("with_dependencies", [False, True])
def test_enqueue_many_budget_does_not_grow_with_the_batch(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, with_dependencies: bool
) -> None:
    def batch(prefix: str, n: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for i in range(n):
            item: dict[str, Any] = {"path": f"/{prefix}/{i}", "priority": i % 7}
            if with_dependencies and i % 5 == 4:
                item["depends_on"] = f"/{prefix}/{i - 1}"
            items.append(item)
        return items

    with counting(store) as small:
        queue.enqueue_many(batch("small", 10))
    with counting(store) as large:
        queue.enqueue_many(batch("large", 1500))
    # The same statements; only multi-row INSERTs split (2,000 metadata rows per statement).
    kinds = {sql.split(" (")[0] for sql in large}
    assert kinds == {sql.split(" (")[0] for sql in small}, (small, large)
    assert len(small) <= 5, small  # + the dependency-writers lock on PostgreSQL
    assert len(large) <= len(small) + 4, large  # 1,500 items: a handful of statements


def _plan(store: SQLAlchemyMetadataStore, backend: str) -> str:
    sql = driver_for(backend).claim_sql(prefix=False, tags=False)
    now = store.database.timestamp(datetime.now(timezone.utc))
    params = {
        "worker": "w",
        "now": now,
        "expires": now,
        "lease": 30.0,
        "tenant": store.tenant_id,
        "limit": 10,
    }
    conn = store.database._connection()
    cursor = conn.cursor()
    try:
        prefix = "EXPLAIN " if backend == "postgresql" else "EXPLAIN QUERY PLAN "
        cursor.execute(prefix + sql, params)
        text = "\n".join(
            str(row[-1] if backend == "sqlite" else row[0]) for row in cursor.fetchall()
        )
    finally:
        cursor.close()
        conn.rollback()
    return text


def test_claim_plan_uses_the_ready_index(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, backend: str
) -> None:
    # A queue with history: most rows completed, so a plan walking the priority index (or
    # scanning and sorting) would visit the finished rows that the ready index leaves out.
    items = [{"path": f"/plan/{i}", "priority": i % 50} for i in range(6000)]
    queue.enqueue_many(items)
    for _ in range(10):
        claimed = queue.claim_ready_work("w", limit=500)
        queue.complete_work_many([(c["path_id"], c["lease_token"]) for c in claimed])
    if backend == "postgresql":
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE work_items, file_paths, work_history")
    plan = _plan(store, backend)
    assert "ix_work_items_ready" in plan, plan
