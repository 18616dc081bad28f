"""Concurrency claims of the work queue, proven with real processes on SQLite and PostgreSQL:
N claimers never get the same item, a SIGKILLed worker's item is reclaimed and finished by
another, the Worker runner stops gracefully on SIGTERM, and the seed's worker loop rewritten
on claim_ready_work processes everything exactly once. A child that dies fails its test at
once, with the child's exit code, instead of leaving the test waiting for its result."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
import sqlalchemy as sa

import nexus
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue
from nexus.work import queue as queue_module

pytestmark = pytest.mark.slow
SPAWN = multiprocessing.get_context("spawn")
# Children that exited 0 have put their result; the queue's feeder may need a moment more.
RESULT_GRACE_SECONDS = 5.0


def _died(procs: Sequence[Any]) -> str:
    return ", ".join(f"{proc.name} exited with {proc.exitcode}" for proc in procs if proc.exitcode)


def _fail(procs: Sequence[Any], message: str) -> None:
    """Fail the test, after stopping the children still running (they would outlive it)."""
    for proc in procs:
        if proc.exitcode is None:
            proc.terminate()
            proc.join(10)
    pytest.fail(message, pytrace=False)


def results_of(
    procs: Sequence[Any],
    out: multiprocessing.Queue,
    timeout: float,  # type: ignore[type-arg]
) -> list[Any]:
    """One result per child from ``out``; fails as soon as a child has died without one."""
    results: list[Any] = []
    deadline = time.monotonic() + timeout
    all_exited_at: float | None = None
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=0.2))
            continue
        except Empty:
            pass
        if _died(procs):
            _fail(procs, f"{_died(procs)} before reporting its result")
        if all(proc.exitcode is not None for proc in procs):
            all_exited_at = all_exited_at or time.monotonic()
            if time.monotonic() - all_exited_at > RESULT_GRACE_SECONDS:
                _fail(procs, "every child exited, some without a result")
        if time.monotonic() > deadline:
            _fail(procs, f"no result from every child after {timeout} s")
    return results


def _claimer(db_url: str, worker_id: str, batch: int, out: multiprocessing.Queue) -> None:
    claimed: list[str] = []
    with SQLAlchemyMetadataStore(db_url, run_migrations=False) as store:
        queue = WorkQueue(store)
        while True:
            items = queue.claim_ready_work(worker_id, limit=batch, lease_seconds=120)
            if not items:
                break
            claimed += [item["virtual_path"] for item in items]
            queue.complete_work_many([(i["virtual_path"], i["lease_token"]) for i in items])
        queue.close()
    out.put(claimed)


@pytest.mark.timeout(240)
def test_concurrent_claimers_get_each_item_exactly_once(db_url: str) -> None:
    n_items, n_workers = 2000, 4
    with SQLAlchemyMetadataStore(db_url) as store:
        WorkQueue(store).enqueue_many(
            [{"path": f"/once/{i:05d}", "priority": i % 10} for i in range(n_items)]
        )
    out = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=_claimer, args=(db_url, f"w{k}", 1 + k % 3, out))
        for k in range(n_workers)
    ]
    for proc in procs:
        proc.start()
    results = results_of(procs, out, timeout=200)
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    everything = [path for claimed in results for path in claimed]
    assert len(everything) == n_items
    assert len(set(everything)) == n_items
    assert sum(1 for claimed in results if claimed) >= 2, "work was not shared"
    with SQLAlchemyMetadataStore(db_url) as store:
        assert WorkQueue(store).work_stats()["by_status"]["completed"] == n_items
        with store.engine.connect() as conn:
            events = Counter(
                conn.execute(sa.text("SELECT event FROM work_history")).scalars().all()
            )
    assert events["claimed"] == events["completed"] == n_items


def _hold_forever(db_url: str, ready: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    with SQLAlchemyMetadataStore(db_url, run_migrations=False) as store:
        [item] = WorkQueue(store).claim_ready_work("doomed", lease_seconds=1)
        assert item["virtual_path"] == "/kill/a"
        ready.set()
        time.sleep(600)


@pytest.mark.timeout(120)
def test_sigkilled_workers_item_is_reclaimed_and_finished(db_url: str) -> None:
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        queue.enqueue("/kill/a")
        ready = SPAWN.Event()
        proc = SPAWN.Process(target=_hold_forever, args=(db_url, ready))
        proc.start()
        deadline = time.monotonic() + 60
        while not ready.wait(0.2):
            if proc.exitcode is not None:
                pytest.fail(f"the worker exited with {proc.exitcode} before claiming")
            assert time.monotonic() < deadline, "the worker never claimed its item"
        os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
        proc.join(10)
        assert queue.claim_ready_work("rescuer") == []  # the lease is still valid
        # Past the lease, and past the queue's reclaim interval since that claim looked.
        time.sleep(max(1.2, queue_module.RECLAIM_INTERVAL + 0.2))
        [item] = queue.claim_ready_work("rescuer")
        assert item["virtual_path"] == "/kill/a" and item["attempts"] == 2
        queue.complete_work("/kill/a", item["lease_token"])
        history = queue.get_work_history("/kill/a")
        assert [(e["event"], e["worker_id"]) for e in history] == [
            ("enqueued", None),
            ("claimed", "doomed"),
            ("reclaimed", "doomed"),
            ("claimed", "rescuer"),
            ("completed", "rescuer"),
        ]


WORKER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from nexus.storage.metadata_store import SQLAlchemyMetadataStore
    from nexus.work import Worker, WorkQueue

    def handler(item):
        print("started", item["virtual_path"], flush=True)
        time.sleep(1.0)
        return {"ok": True}

    with SQLAlchemyMetadataStore(sys.argv[1], run_migrations=False) as store:
        queue = WorkQueue(store)
        stats = Worker(queue, handler, worker_id="graceful", lease_seconds=30).run()
        queue.close()
        print("stopped", stats.completed, flush=True)
    """
)


@pytest.mark.timeout(120)
def test_worker_stops_gracefully_on_sigterm(db_url: str, tmp_path: Path) -> None:
    with SQLAlchemyMetadataStore(db_url) as store:
        WorkQueue(store).enqueue_many([{"path": f"/g/{i}", "priority": i} for i in range(3)])
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), db_url], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "" at once if the worker died
    if not first:
        pytest.fail(f"the worker exited with {proc.wait(timeout=30)} before starting an item")
    assert first.split() == ["started", "/g/0"]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out.split() == ["stopped", "1"]
    with SQLAlchemyMetadataStore(db_url) as store:
        assert store.get_file_metadata("/g/0", "status") == "completed"
        assert [r["virtual_path"] for r in store.get_ready_work()] == ["/g/1", "/g/2"]
        assert store.get_in_progress_work() == []


def _seed_worker_loop(
    data_dir: str, db_url: str, worker_id: str, out: multiprocessing.Queue
) -> None:
    """The seed's worker loop, rewritten on claim_ready_work."""
    processed = []
    with nexus.connect(config={"data_dir": data_dir, "database_url": db_url}) as nx:
        queue = nx.queue
        idle = 0
        while idle < 3:
            ready_work = queue.claim_ready_work(worker_id, limit=1)
            if ready_work:
                idle = 0
                item = ready_work[0]
                processed.append(nx.read(item["virtual_path"]).decode())  # process_work_item
                queue.complete_work(item["virtual_path"], item["lease_token"])
            else:
                idle += 1
                queue.wait_for_ready_work(0.2)
    out.put(processed)


@pytest.mark.timeout(180)
def test_seed_worker_loop_on_claims(db_url: str, tmp_path: Path) -> None:
    with nexus.connect(config={"data_dir": str(tmp_path), "database_url": db_url}) as nx:
        for i in range(60):
            nx.write(f"/jobs/{i}.json", f"job-{i}".encode())
            nx.metadata.set_file_metadata(f"/jobs/{i}.json", "status", "ready")
    out = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=_seed_worker_loop, args=(str(tmp_path), db_url, f"w{k}", out))
        for k in range(3)
    ]
    for proc in procs:
        proc.start()
    processed = [job for jobs in results_of(procs, out, timeout=120) for job in jobs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert sorted(processed) == sorted(f"job-{i}" for i in range(60))
