"""The work_items projection always equals what file_metadata says, on SQLite and PostgreSQL.

An independent Python oracle recomputes every user-visible work column (status, priority,
tags, worker_id, started_at, and the unresolved dependency count, resolved inside the edge's
tenant) from the file_paths and file_metadata rows, and is compared with the maintained
work_items table after a random mix of queue calls (which write work_items, mirrored back into
file_metadata) and plain metadata writes, deletes and re-creations (which go through the
triggers). The maintained counters are compared with a count of that recomputation.

Queue-owned state (lease token, expiry, attempts...) lives in work_items only since revision
0005, so it is not recomputable from metadata; it is checked against the tokens the test was
handed and the lease invariants instead. A 'queue' metadata key is an ordinary key now: the
workload writes one and the oracle must not care."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from nexus import LeaseLostError, NexusError
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.types import parse_timestamp, truncate_to_ms
from nexus.work import WorkQueue

STATUSES = {"ready", "pending", "blocked", "in_progress", "completed", "failed"}


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return truncate_to_ms(parse_timestamp(value))
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    return None


def expected_projection(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        paths = {
            row.path_id: row
            for row in conn.execute(
                sa.text("SELECT path_id, tenant_id, virtual_path, deleted_at FROM file_paths")
            )
        }
        meta: dict[str, dict[str, Any]] = {}
        # Every key but the routed ones comes from file_metadata itself; the routed keys
        # (status, worker_id, started_at) of a live work item live in its row since 0005, and
        # path_metadata is where a reader sees them.
        for path_id, key, value in conn.execute(
            sa.text(
                "SELECT path_id, key, value FROM file_metadata"
                " WHERE key NOT IN ('status', 'worker_id', 'started_at')"
                " UNION ALL SELECT path_id, key, value FROM path_metadata"
                " WHERE key IN ('status', 'worker_id', 'started_at')"
            )
        ):
            if engine.dialect.name == "sqlite":  # JSON text; psycopg decodes jsonb itself
                value = json.loads(value)
            meta.setdefault(path_id, {})[key] = value
    live = {pid: row for pid, row in paths.items() if row.deleted_at is None}
    status_of = {
        pid: meta.get(pid, {}).get("status")
        for pid in live
        if meta.get(pid, {}).get("status") in STATUSES
    }
    by_path = {(row.tenant_id, row.virtual_path): pid for pid, row in paths.items()}

    def resolved(ref: str, tenant: str) -> bool:
        target = ref if ref in paths else by_path.get((tenant, ref))
        return target is not None and status_of.get(target) == "completed"

    expected = {}
    for pid, status in status_of.items():
        values = meta[pid]
        tenant = live[pid].tenant_id
        deps = values.get("depends_on")
        refs = [deps] if isinstance(deps, str) else deps if isinstance(deps, list) else []
        refs = list(dict.fromkeys(r for r in refs if isinstance(r, str)))
        tags = values.get("tags")
        expected[pid] = {
            "status": status,
            "priority": _int(values.get("priority")),
            "tags": tags
            if isinstance(tags, list) and all(isinstance(t, str) for t in tags)
            else None,
            "worker_id": values.get("worker_id")
            if isinstance(values.get("worker_id"), str)
            else None,
            "started_at": _ts(values.get("started_at")),
            "unresolved_count": sum(1 for ref in refs if not resolved(ref, tenant)),
        }
    return expected


PROJECTED = ("status", "priority", "tags", "worker_id", "started_at", "unresolved_count")


def work_rows(store: SQLAlchemyMetadataStore) -> dict[str, dict[str, Any]]:
    from nexus.storage.schema import work_items

    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(work_items)).mappings().all()
    return {row["path_id"]: dict(row) for row in rows}


def expected_counters(expected: dict[str, dict[str, Any]]) -> dict[str, int]:
    """The counters work_stats() reads, counted from the oracle's rows."""
    counts = dict.fromkeys(
        (
            "ready",
            "pending",
            "blocked",
            "in_progress",
            "completed",
            "failed",
            "eligible",
            "waiting",
        ),
        0,
    )
    for row in expected.values():
        counts[row["status"]] += 1
        if row["unresolved_count"] > 0 and row["status"] in ("ready", "pending", "blocked"):
            counts["waiting"] += 1
        elif row["status"] == "ready":
            counts["eligible"] += 1
    return counts


def maintained_counters(store: SQLAlchemyMetadataStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT counter, sum(n) FROM work_counters GROUP BY counter")
        ).all()
    return {str(counter): int(n) for counter, n in rows}


def assert_consistent(store: SQLAlchemyMetadataStore, issued: set[str]) -> None:
    expected = expected_projection(store.engine)
    actual = work_rows(store)
    assert actual.keys() == expected.keys()
    for path_id, row in expected.items():
        assert {key: actual[path_id][key] for key in PROJECTED} == row, path_id
    counters = maintained_counters(store)
    for name, n in expected_counters(expected).items():
        assert counters.get(name, 0) == n, name
    # Queue-owned state: only held leases have a token and an expiry, each token one that a
    # claim handed out, no token on two items.
    tokens = [row["lease_token"] for row in actual.values() if row["lease_token"] is not None]
    assert len(tokens) == len(set(tokens))
    for path_id, row in actual.items():
        assert row["attempts"] >= 0, path_id
        if row["lease_token"] is not None:
            assert row["status"] == "in_progress", path_id
            assert row["lease_token"] in issued, path_id
            assert row["lease_expires_at"] is not None, path_id
        else:
            assert row["lease_expires_at"] is None, path_id


@pytest.mark.parametrize("seed", [1, 2])
def test_projection_matches_file_metadata_after_random_workload(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, seed: int
) -> None:
    rng = random.Random(seed)
    paths = [f"/r/{i}" for i in range(25)]
    queue.enqueue_many(
        [
            {
                "path": p,
                "priority": rng.choice([None, 1, 2, 3]),
                "tags": rng.choice([None, ["a"], ["a", "b"]]),
                "depends_on": rng.sample(paths[:i], k=min(i, rng.randint(0, 2))) or None,
                "status": rng.choice(["ready", "ready", "blocked", "pending"]),
                "max_attempts": rng.randint(1, 3),
            }
            for i, p in enumerate(paths)
        ]
    )
    held: dict[str, str] = {}
    issued: set[str] = set()
    for step in range(150):
        action = rng.random()
        try:
            if action < 0.3:
                for item in queue.claim_ready_work(
                    f"w{rng.randint(1, 3)}",
                    limit=rng.randint(1, 4),
                    lease_seconds=rng.choice([0.01, 60]),
                ):
                    held[item["virtual_path"]] = item["lease_token"]
                    issued.add(str(item["lease_token"]))
            elif action < 0.5 and held:
                path = rng.choice(sorted(held))
                queue.complete_work(path, held.pop(path), result={"step": step})
            elif action < 0.6 and held:
                path = rng.choice(sorted(held))
                queue.fail_work(path, held.pop(path), f"error {step}", retry=rng.random() < 0.7)
            elif action < 0.65 and held:
                path = rng.choice(sorted(held))
                queue.heartbeat(path, held[path])
            elif action < 0.7 and held:
                path = rng.choice(sorted(held))
                queue.release_work(path, held.pop(path))
            elif action < 0.75:
                queue.cancel_work(rng.choice(paths))
            elif action < 0.85:
                path = rng.choice(paths)
                key, value = rng.choice(
                    [
                        ("status", rng.choice(sorted(STATUSES))),
                        ("priority", rng.choice([None, 0, 5])),
                        ("tags", ["z"]),
                        ("depends_on", rng.sample(paths, 2)),
                        ("worker_id", "manual"),
                        ("started_at", "2026-01-01T00:00:00Z"),
                        ("queue", {"attempts": 99, "lease_token": "forged"}),
                    ]
                )
                store.set_file_metadata(path, key, value)
            elif action < 0.9:
                path = rng.choice(paths)
                if store.exists(path):
                    store.delete(path)
                else:
                    queue.enqueue(path, priority=rng.choice([None, 4]))
            else:
                time.sleep(0.02)
                queue.reclaim_expired_leases()
        except LeaseLostError:
            pass
        except NexusError as exc:  # cycles, completed cancels, missing paths: allowed refusals
            assert type(exc).__name__ in (
                "DependencyCycleError",
                "WorkItemNotFoundError",
                "WorkItemStateError",
                "NexusFileNotFoundError",
            ), exc
        if step % 10 == 0:
            assert_consistent(store, issued)
    assert_consistent(store, issued)
