"""The work_items projection always equals what file_metadata says, on SQLite and PostgreSQL.

An independent Python oracle recomputes every projected column (status, priority, tags,
worker_id, started_at, the queue state, and the unresolved dependency count) from the
file_paths and file_metadata rows, and is compared with the maintained work_items table after
a random mix of queue calls (which write work_items directly) and plain metadata writes,
deletes and re-creations (which go through the triggers)."""

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
        for path_id, key, value in conn.execute(
            sa.text("SELECT path_id, key, value FROM file_metadata")
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
        queue = values.get("queue") if isinstance(values.get("queue"), dict) else {}
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
            "run_after": _ts(queue.get("run_after")),
            "lease_token": queue.get("lease_token")
            if isinstance(queue.get("lease_token"), str)
            else None,
            "lease_expires_at": _ts(queue.get("lease_expires_at")),
            "attempts": _int(queue.get("attempts")) or 0,
            "max_attempts": _int(queue.get("max_attempts")),
            "unresolved_count": sum(1 for ref in refs if not resolved(ref, tenant)),
        }
    return expected


def actual_projection(store: SQLAlchemyMetadataStore) -> dict[str, dict[str, Any]]:
    from nexus.storage.schema import work_items

    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(work_items)).mappings().all()
    return {
        row["path_id"]: {
            key: row[key]
            for key in (
                "status",
                "priority",
                "tags",
                "worker_id",
                "started_at",
                "run_after",
                "lease_token",
                "lease_expires_at",
                "attempts",
                "max_attempts",
                "unresolved_count",
            )
        }
        for row in rows
    }


def assert_consistent(store: SQLAlchemyMetadataStore) -> None:
    expected = expected_projection(store.engine)
    actual = actual_projection(store)
    assert actual.keys() == expected.keys()
    for path_id, row in expected.items():
        assert actual[path_id] == row, path_id


@pytest.mark.parametrize("seed", [1, 2])
def test_projection_matches_file_metadata_after_random_workload(
    store: SQLAlchemyMetadataStore, seed: int
) -> None:
    rng = random.Random(seed)
    paths = [f"/r/{i}" for i in range(25)]
    store.enqueue_many(
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
    for step in range(150):
        action = rng.random()
        try:
            if action < 0.3:
                for item in store.claim_ready_work(
                    f"w{rng.randint(1, 3)}",
                    limit=rng.randint(1, 4),
                    lease_seconds=rng.choice([0.01, 60]),
                ):
                    held[item["virtual_path"]] = item["lease_token"]
            elif action < 0.5 and held:
                path = rng.choice(sorted(held))
                store.complete_work(path, held.pop(path), result={"step": step})
            elif action < 0.6 and held:
                path = rng.choice(sorted(held))
                store.fail_work(path, held.pop(path), f"error {step}", retry=rng.random() < 0.7)
            elif action < 0.65 and held:
                path = rng.choice(sorted(held))
                store.heartbeat(path, held[path])
            elif action < 0.7 and held:
                path = rng.choice(sorted(held))
                store.release_work(path, held.pop(path))
            elif action < 0.75:
                store.cancel_work(rng.choice(paths))
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
                    ]
                )
                store.set_file_metadata(path, key, value)
            elif action < 0.9:
                path = rng.choice(paths)
                if store.exists(path):
                    store.delete(path)
                else:
                    store.enqueue(path, priority=rng.choice([None, 4]))
            else:
                time.sleep(0.02)
                store.reclaim_expired_leases()
        except LeaseLostError:
            pass
        except NexusError as exc:  # cycles, completed cancels, missing paths: allowed refusals
            assert type(exc).__name__ in (
                "DependencyCycleError",
                "WorkItemNotFoundError",
                "NexusFileNotFoundError",
            ), exc
        if step % 10 == 0:
            assert_consistent(store)
    assert_consistent(store)
