"""Real processes (multiprocessing 'spawn') against one database, SQLite and PostgreSQL:
several processes opening the same *fresh* database at the same moment all succeed and
migrate it exactly once, and concurrent first writes of the same metadata key leave exactly
one row (writes are upserts on the (path_id, key) key), and concurrent depends_on writes that
together would close a cycle are serialised so that exactly one is refused."""

from __future__ import annotations

import multiprocessing
import queue
from typing import Any

import pytest
import sqlalchemy as sa

from nexus.errors import DependencyCycleError
from nexus.storage import migrate
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.schema import VIEW_NAMES

pytestmark = pytest.mark.slow
SPAWN = multiprocessing.get_context("spawn")
N_PROCESSES = 4
TIMEOUT = 60


def _open_then_write(db_url: str, worker: int, barrier: Any, out: Any) -> None:
    """Open the fresh database at the same moment as the others (so every process runs the
    migrations); then, at the same moment again, write the first value of the same keys;
    then, all at once, add one edge each of a dependency ring (which would close a cycle)."""
    try:
        barrier.wait(timeout=TIMEOUT)
        with SQLAlchemyMetadataStore(db_url) as store:
            revision = migrate.current_revision(store.engine)
            store.put("/shared.json")
            store.put(f"/ring/{worker}")
            barrier.wait(timeout=TIMEOUT)
            store.set_file_metadata("/shared.json", "owner", f"worker-{worker}")
            store.set_file_metadata("/shared.json", "status", "ready")
            store.set_file_metadata("/shared.json", "priority", worker)
            barrier.wait(timeout=TIMEOUT)
            try:
                store.set_file_metadata(
                    f"/ring/{worker}", "depends_on", f"/ring/{(worker + 1) % N_PROCESSES}"
                )
                closed_cycle = False
            except DependencyCycleError:
                closed_cycle = True
            out.put(("ok", revision, closed_cycle))
    except BaseException as exc:  # report every failure to the parent
        out.put(("error", f"{type(exc).__name__}: {exc}", None))


def _run(target: Any, args_for: Any) -> list[tuple[Any, ...]]:
    barrier = SPAWN.Barrier(N_PROCESSES)
    out = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=target, args=(*args_for(k), barrier, out)) for k in range(N_PROCESSES)
    ]
    for proc in procs:
        proc.start()
    try:
        results = [out.get(timeout=TIMEOUT * 2) for _ in procs]
    except queue.Empty:  # pragma: no cover - a hung child
        results = []
    for proc in procs:
        proc.join(timeout=TIMEOUT)
        if proc.is_alive():  # pragma: no cover
            proc.kill()
            proc.join()
    assert len(results) == N_PROCESSES, "a process hung"
    assert all(proc.exitcode == 0 for proc in procs)
    return results


def test_processes_opening_a_fresh_database_and_writing_the_same_keys(
    fresh_db_url: str,
) -> None:
    results = _run(_open_then_write, lambda k: (fresh_db_url, k))
    assert [status for status, _, _ in results] == ["ok"] * N_PROCESSES, results
    head = migrate.head_revision()
    assert {revision for _, revision, _ in results} == {head}
    # Cycle checks are serialised: exactly the last writer of the ring was refused.
    assert sum(closed for _, _, closed in results) == 1
    engine = sa.create_engine(fresh_db_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
            views = set(sa.inspect(conn).get_view_names())
            paths = conn.execute(sa.text("SELECT path_id FROM file_paths")).scalars().all()
            keys = conn.execute(
                sa.text(
                    "SELECT m.key, count(*) FROM file_metadata m JOIN file_paths p"
                    " ON p.path_id = m.path_id WHERE p.virtual_path = '/shared.json'"
                    " GROUP BY m.key ORDER BY m.key"
                )
            ).all()
    finally:
        engine.dispose()
    # Migrated exactly once, to head; the views exist.
    assert [row[0] for row in versions] == [head]
    assert set(VIEW_NAMES) <= views
    # put() is idempotent across processes, and each key's first write made one row.
    assert len(paths) == 1 + N_PROCESSES
    assert [tuple(row) for row in keys] == [("owner", 1), ("priority", 1), ("status", 1)]
    with SQLAlchemyMetadataStore(fresh_db_url) as store:
        assert store.get_file_metadata("/shared.json", "owner") in {
            f"worker-{k}" for k in range(N_PROCESSES)
        }
        [row] = store.get_work_by_priority()
        assert row["path_id"] == store.get_path_id("/shared.json")
        assert row["priority"] == store.get_file_metadata("/shared.json", "priority")
