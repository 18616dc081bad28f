"""Revision 0006 on both databases: the event counters start from the history already
there (every event, dead letters, run-time buckets and sum, hourly throughput), and the
downgrade removes its tables, triggers and indexes while the history stays."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from nexus.storage import migrate
from nexus.storage.engine import create_engine
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue

PATH_ID = "00000000-0000-7000-8000-000000000001"
AT = datetime.now(timezone.utc).replace(minute=5, second=0, microsecond=0)
HISTORY = [
    ("claimed", '{"attempt": 1, "wait_seconds": 1.5}'),
    ("completed", '{"attempt": 1, "run_seconds": 0.2}'),
    ("completed", '{"attempt": 1, "run_seconds": 42}'),
    ("completed", None),
    ("retried", '{"error": "x", "attempt": 1}'),
    ("failed", '{"error": "x", "attempt": 2}'),
    ("reclaimed", '{"to": "failed", "attempt": 3}'),
    ("reclaimed", '{"to": "ready", "attempt": 1}'),
]


@pytest.fixture
def engine(fresh_db_url: str) -> Iterator[sa.Engine]:
    made = create_engine(fresh_db_url)
    yield made
    made.dispose()


def _history_at_0005(engine: sa.Engine) -> None:
    migrate.upgrade(engine, "0005")
    pg = engine.dialect.name == "postgresql"
    at: object = AT if pg else AT.strftime("%Y-%m-%d %H:%M:%S.000")
    detail = "CAST(:d AS jsonb)" if pg else ":d"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO file_paths (path_id, tenant_id, virtual_path, size_bytes,"
                " created_at, updated_at) VALUES (:id, 'default', '/old', 0, :at, :at)"
            ),
            {"id": PATH_ID, "at": at},
        )
        for event, value in HISTORY:
            conn.execute(
                sa.text(
                    "INSERT INTO work_history (path_id, tenant_id, event, at, detail)"
                    f" VALUES (:id, 'default', :event, :at, {detail})"
                ),
                {"id": PATH_ID, "event": event, "at": at, "d": value},
            )


def test_counters_start_from_the_history(engine: sa.Engine, fresh_db_url: str) -> None:
    _history_at_0005(engine)
    migrate.upgrade(engine)
    with SQLAlchemyMetadataStore(fresh_db_url) as store:
        queue = WorkQueue(store)
        counts = queue.work_event_counts()
        assert counts["events"] == {
            "claimed": 1,
            "completed": 3,
            "retried": 1,
            "failed": 1,
            "reclaimed": 2,
        }
        assert counts["dead_letters"] == 2
        run = counts["run_seconds"]
        assert run["count"] == 2 and run["sum"] == pytest.approx(42.2)
        buckets = dict(run["buckets"])
        assert (buckets[0.1], buckets[0.5], buckets[30.0], buckets[60.0]) == (0, 1, 1, 2)
        hour = {h["hour"]: h for h in queue.work_throughput(48)}[AT.replace(minute=0)]
        assert (hour["completed"], hour["failed"], hour["retried"]) == (3, 1, 1)
        # New rows add to what was backfilled.
        queue.enqueue("/new")
        (held,) = queue.claim_ready_work("w")
        queue.complete_work("/new", held["lease_token"])
        counts = queue.work_event_counts()
        assert (counts["events"]["claimed"], counts["events"]["completed"]) == (2, 4)
        assert counts["run_seconds"]["count"] == 3


def test_downgrade_removes_the_counters(engine: sa.Engine) -> None:
    _history_at_0005(engine)
    migrate.upgrade(engine, "0006")
    migrate.downgrade(engine, "0005")
    names = set(sa.inspect(engine).get_table_names())
    assert "work_event_counts" not in names and "work_event_hourly" not in names
    listing = (
        "SELECT indexname FROM pg_indexes WHERE tablename = 'work_items'"
        if engine.dialect.name == "postgresql"
        else "SELECT name FROM sqlite_master WHERE type = 'index'"
    )
    with engine.connect() as conn:
        indexes = set(conn.execute(sa.text(listing)).scalars())
        assert "ix_work_items_ready" in indexes  # (the listing sees expression indexes)
        assert not indexes & {"ix_work_items_ready_since", "ix_work_items_failed"}
        assert conn.execute(sa.text("SELECT count(*) FROM work_history")).scalar() == len(HISTORY)
        # History inserts no longer touch the (dropped) counters.
        conn.execute(
            sa.text(
                "INSERT INTO work_history (path_id, tenant_id, event, at)"
                " VALUES (:id, 'default', 'claimed', :at)"
            ),
            {"id": PATH_ID, "at": AT if engine.dialect.name == "postgresql" else "2026"},
        )
