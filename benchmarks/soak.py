"""Soak of the work queue under faults, checked from the history afterwards.

    python benchmarks/soak.py --db sqlite --workers 8 --items 50000 --minutes 10
    python benchmarks/soak.py --db postgresql --workers 8 --items 50000 --minutes 10
    python benchmarks/soak.py --db postgresql --minutes 3 --restart-postgres    # as root

``--db`` as in benchmarks/common.py (a throwaway SQLite file, or a PostgreSQL database created
and dropped on the server the URL names).

The run
-------
* ``--workers`` worker processes (spawned), alternately ``nexus.work.Worker`` (concurrency 2,
  heartbeats) and a plain claim loop over the public ``WorkQueue`` calls
  (``claim_ready_work`` / ``complete_work`` / ``fail_work``, retrying a write that gets a
  ``NexusDatabaseError``, as docs/work-queue.md tells a claim loop to).
* A producer thread enqueues ``--items`` items in batches, paced over the first 3/4 of
  ``--minutes``. Item ``i`` is ``/soak/NNNNNN``; everything about it is decided from ``i``
  alone, so the checker knows what must happen: about 20 % depend on 1-2 earlier items (half
  enqueued ``blocked``, to be promoted; half ``ready`` with unresolved dependencies), about 5 %
  have a handler that fails at its first attempt, about 1 % one that always fails
  (``max_attempts`` 3).
* With ``--chaos`` (the default), while the producer runs, a chaos thread SIGKILLs a random
  worker every ``--kill-every`` seconds (the parent starts a replacement) and, on PostgreSQL,
  terminates 1-2 of the workers' backends every ``--terminate-every`` seconds
  (``pg_terminate_backend`` on a separate admin connection, only backends of the soak
  database whose ``application_name`` is the workers').
* ``--restart-postgres`` (as root only): restarts the PostgreSQL server once, half way
  through production (``pg_ctlcluster --skip-systemctl-redirect <version> main restart``).
* The run ends when production is over and nothing is ready or in progress for a while (or
  at ``--minutes`` plus ``--drain-seconds``); the workers get SIGTERM.

The check (from ``work_items``, ``work_history``, the stored results and a ledger every
handler call appends to)
--------------------------------------------------------------------------------------
* **none lost**: every enqueued path is a work item with its ``enqueued`` event;
* **one lease at a time**: replaying each item's history (in id order), a claim only ever
  follows a state where the item was ``ready``; every completion/failure is the current
  claimer's; a lease is reclaimed only after its expiry (the claim's or the last heartbeat's
  time plus the lease);
* **exactly-once effects**: a completed item's stored result names the worker and the
  attempt of its last claim; no two handler runs of an item overlap in time in two workers;
  a handler run recorded in the ledger belongs to a claim of that worker and attempt;
* **the retry rules**: an attempt whose handler succeeds ends ``completed`` (or ``reclaimed``
  when its worker died), never ``retried``/``failed``; a failing one ends ``retried`` while
  ``attempts < max_attempts``, else ``failed``; a reclaim goes to ``failed`` exactly when no
  attempt is left; the final status and attempts in ``work_items`` match the replay;
* **finished**: every item is ``completed`` or ``failed`` (dead letter), except dependents of
  a dead letter, which must never have been claimed;
* **dependencies**: a dependent's first claim comes after (in history order) the completion
  of each of its dependencies;
* no worker process died except those the chaos thread killed.

It prints a summary table (items/s, p50/p95 claim-to-complete latency, kills, terminated
backends, restarts, violations) and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import itertools
import json
import logging
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from common import BenchDB, bench_database, header, log, nexus_version, percentile, table

nexus_version()  # record the code's version before importing it

from nexus.errors import LeaseLostError, NexusDatabaseError, NexusError  # noqa: E402
from nexus.storage import schema  # noqa: E402
from nexus.storage.metadata_store import SQLAlchemyMetadataStore  # noqa: E402
from nexus.work import RetryPolicy, Worker, WorkItem, WorkQueue  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")
T = TypeVar("T")

PREFIX = "/soak/"
MAX_ATTEMPTS = 3
WORKER_APP = "nexus-soak-worker"
PRODUCER_BATCH = 50
# Short back-offs keep a run short; the rules checked are the same.
RETRY_POLICY = RetryPolicy(base_seconds=0.2, max_seconds=1.0)
WRITE_RETRY_SECONDS = 90.0


# ---------------------------------------------------------------------- the plan


def path_of(index: int) -> str:
    return f"{PREFIX}{index:06d}"


def index_of(path: str) -> int:
    return int(path[len(PREFIX) :])


def kind_of(index: int) -> str:
    """``always`` (the handler always fails), ``once`` (fails at attempt 1) or ``ok``."""
    bucket = zlib.crc32(f"soak-kind-{index}".encode()) % 100
    return "always" if bucket < 1 else "once" if bucket < 6 else "ok"


def handler_fails(index: int, attempt: int) -> bool:
    kind = kind_of(index)
    return kind == "always" or (kind == "once" and attempt == 1)


def dependencies_of(index: int) -> list[int]:
    """About 20 % of items depend on 1-2 recent earlier items (never on an always-failing
    one, so dependents are held only when chaos dead-letters an item)."""
    rng = random.Random(index)
    if index < 10 or rng.random() >= 0.2:
        return []
    candidates = [j for j in range(max(0, index - 300), index) if kind_of(j) != "always"]
    return sorted(rng.sample(candidates, min(len(candidates), rng.choice((1, 2)))))


def item_spec(index: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "path": path_of(index),
        "priority": random.Random(-index).randint(0, 9),
        "max_attempts": MAX_ATTEMPTS,
    }
    deps = dependencies_of(index)
    if deps:
        spec["depends_on"] = [path_of(j) for j in deps]
        spec["status"] = "blocked" if index % 2 else "ready"
    return spec


class PlannedFailure(Exception):
    """The failure a handler is planned to raise."""


# ---------------------------------------------------------------------- worker processes


class Ledger:
    """One JSON line per handler run, flushed at once (it must survive a SIGKILL)."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", buffering=1)
        self._lock = threading.Lock()

    def record(self, **entry: Any) -> None:
        line = json.dumps(entry, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")


def make_handler(worker_id: str, ledger: Ledger, work_seconds: float) -> Callable[[WorkItem], Any]:
    def handler(item: WorkItem) -> Any:
        path, attempt = item["virtual_path"], item["attempts"]
        start = time.time()
        if work_seconds:
            time.sleep(work_seconds)
        fails = handler_fails(index_of(path), attempt)
        ledger.record(
            path=path, worker=worker_id, attempt=attempt, start=start, end=time.time(), ok=not fails
        )
        if fails:
            raise PlannedFailure(f"planned failure of {path} at attempt {attempt}")
        return {"by": worker_id, "attempt": attempt}

    return handler


def retry_write(write: Callable[[], T], stop_after: float = WRITE_RETRY_SECONDS) -> T | None:
    """A claim loop's write, retried on NexusDatabaseError. A LeaseLostError after a failed try
    means the earlier try may have landed: returns None (the checker judges the outcome)."""
    deadline = time.monotonic() + stop_after
    delay, tried = 0.05, False
    while True:
        try:
            return write()
        except LeaseLostError:
            if not tried:
                raise
            return None
        except NexusDatabaseError:
            if time.monotonic() > deadline:
                raise
            tried = True
            time.sleep(delay)
            delay = min(2.0, delay * 2)


def claim_loop(
    queue: WorkQueue,
    worker_id: str,
    handler: Callable[[WorkItem], Any],
    lease_seconds: float,
    stop: threading.Event,
) -> None:
    """The documented claim loop, with the retries docs/work-queue.md asks for."""
    while not stop.is_set():
        try:
            items = queue.claim_ready_work(worker_id, limit=2, lease_seconds=lease_seconds)
        except NexusDatabaseError:
            stop.wait(0.1)
            continue
        if not items:
            with contextlib.suppress(NexusDatabaseError):
                queue.wait_for_ready_work(0.5)
            continue
        for item in items:
            handle_one(queue, item, handler)


def handle_one(queue: WorkQueue, item: WorkItem, handler: Callable[[WorkItem], Any]) -> None:
    path, token = item["virtual_path"], str(item["lease_token"])
    try:
        result = handler(item)
    except PlannedFailure as exc:
        message = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(LeaseLostError):
            retry_write(lambda: queue.fail_work(path, token, message))
    else:
        with contextlib.suppress(LeaseLostError):
            retry_write(lambda: queue.complete_work(path, token, result=result))


def open_store(url: str, patience: float = 120.0) -> SQLAlchemyMetadataStore:
    """Open a store, waiting while the server is away (a restart)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return SQLAlchemyMetadataStore(url, run_migrations=False)
        except NexusError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def worker_main(
    url: str, worker_id: str, mode: str, ledger_dir: str, lease_seconds: float, work_seconds: float
) -> None:
    # Planned failures and retried writes are the point here; log only what is worse.
    logging.getLogger("nexus").setLevel(logging.ERROR)
    stop = threading.Event()
    if mode == "loop":  # before anything slow, so a SIGTERM while opening is a clean stop
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        ledger = Ledger(Path(ledger_dir) / f"ledger-{worker_id}.jsonl")
        store = open_store(url)
        queue = WorkQueue(store, retry_policy=RETRY_POLICY)
        handler = make_handler(worker_id, ledger, work_seconds)
        if mode == "runner":
            Worker(
                queue,
                handler,
                worker_id=worker_id,
                concurrency=2,
                lease_seconds=lease_seconds,
                poll_interval=0.5,
                write_retry_seconds=WRITE_RETRY_SECONDS,
            ).run()
        else:
            claim_loop(queue, worker_id, handler, lease_seconds, stop)
        queue.close()
        store.close()
    except BaseException:
        (Path(ledger_dir) / f"crash-{worker_id}.txt").write_text(traceback.format_exc())
        raise


# ---------------------------------------------------------------------- the parent


@dataclass
class Counters:
    kills: int = 0
    terminated: int = 0
    restarts: int = 0
    restart_downtime: list[float] = field(default_factory=list)
    chaos_errors: int = 0
    producer_retries: int = 0
    enqueued: int = 0


class Soak:
    def __init__(self, db: BenchDB, args: argparse.Namespace, ledger_dir: Path) -> None:
        self.db = db
        self.args = args
        self.ledger_dir = ledger_dir
        self.counters = Counters()
        self.stop = threading.Event()
        self.production_done = threading.Event()
        self.workers: dict[int, Any] = {}
        self.incarnation: dict[int, int] = defaultdict(int)
        self.killed: set[str] = set()
        self.crashed: list[str] = []
        self.names: dict[int, str] = {}
        self.lock = threading.Lock()
        url = sa.engine.make_url(db.url)
        if db.kind == "postgresql":
            url = url.update_query_dict({"application_name": WORKER_APP})
        self.worker_url = url.render_as_string(hide_password=False)

    # workers ---------------------------------------------------------------

    def start_worker(self, slot: int) -> None:
        self.incarnation[slot] += 1
        mode = "runner" if slot % 2 == 0 else "loop"
        worker_id = f"{mode}{slot}.{self.incarnation[slot]}"
        proc = SPAWN.Process(
            target=worker_main,
            args=(
                self.worker_url,
                worker_id,
                mode,
                str(self.ledger_dir),
                self.args.lease,
                self.args.work_ms / 1000,
            ),
            daemon=True,
        )
        proc.start()
        self.workers[slot] = proc
        self.names[slot] = worker_id

    def supervise(self) -> None:
        """Restart workers that died: killed by chaos (expected) or crashed (a violation)."""
        with self.lock:
            for slot, proc in list(self.workers.items()):
                if proc.is_alive():
                    continue
                proc.join()
                name = self.names[slot]
                if name not in self.killed:
                    self.crashed.append(f"{name} exited with {proc.exitcode}")
                if not self.stop.is_set():
                    self.start_worker(slot)

    def stop_workers(self) -> None:
        with self.lock:
            for proc in self.workers.values():
                if proc.is_alive() and proc.pid:
                    os.kill(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            for slot, proc in self.workers.items():
                proc.join(max(0.1, deadline - time.monotonic()))
                if proc.is_alive():
                    self.crashed.append(f"{self.names[slot]} did not stop on SIGTERM")
                    proc.kill()
                    proc.join()
                elif proc.exitcode != 0 and self.names[slot] not in self.killed:
                    self.crashed.append(f"{self.names[slot]} exited with {proc.exitcode}")

    # producer --------------------------------------------------------------

    def produce(self) -> None:
        try:
            store = open_store(self.db.url)
            queue = WorkQueue(store, retry_policy=RETRY_POLICY)
            total = self.args.items
            span = max(1.0, self.args.minutes * 60 * 0.75)
            started = time.monotonic()
            # Paced over 3/4 of the run; a producer that falls behind stops at its end.
            ends = started + self.args.minutes * 60
            for first in range(0, total, PRODUCER_BATCH):
                if self.stop.is_set() or time.monotonic() > ends:
                    break
                due = started + span * first / total
                time.sleep(max(0.0, due - time.monotonic()))
                batch = [item_spec(i) for i in range(first, min(total, first + PRODUCER_BATCH))]
                while not self.stop.is_set():
                    try:
                        # A batch is one transaction and enqueuing is idempotent, so a retry
                        # after a lost acknowledgement changes nothing.
                        queue.enqueue_many(batch)
                        break
                    except NexusDatabaseError as exc:
                        self.counters.producer_retries += 1
                        log(f"producer: retrying a batch: {str(exc)[:120]}")
                        time.sleep(0.5)
                else:
                    break
                self.counters.enqueued = min(total, first + PRODUCER_BATCH)
            queue.close()
            store.close()
        finally:
            self.production_done.set()

    # chaos -----------------------------------------------------------------

    def chaos(self) -> None:
        rng = random.Random(7)
        admin = None
        if self.db.kind == "postgresql":
            assert self.db.pg_admin_url is not None
            admin = sa.create_engine(
                self.db.pg_admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True
            )
        next_kill = time.monotonic() + self.args.kill_every
        next_terminate = time.monotonic() + self.args.terminate_every / 2
        try:
            while not self.stop.is_set() and not self.production_done.is_set():
                now = time.monotonic()
                if self.args.kill_every > 0 and now >= next_kill:
                    self.kill_one(rng)
                    next_kill = now + self.args.kill_every * rng.uniform(0.5, 1.5)
                if admin is not None and self.args.terminate_every > 0 and now >= next_terminate:
                    self.terminate_backends(admin, rng)
                    next_terminate = now + self.args.terminate_every * rng.uniform(0.5, 1.5)
                self.stop.wait(0.05)
        finally:
            if admin is not None:
                admin.dispose()

    def kill_one(self, rng: random.Random) -> None:
        with self.lock:
            alive = [slot for slot, proc in self.workers.items() if proc.is_alive()]
            if not alive:
                return
            slot = rng.choice(alive)
            proc = self.workers[slot]
            self.killed.add(self.names[slot])
            os.kill(proc.pid, signal.SIGKILL)
            self.counters.kills += 1

    def terminate_backends(self, admin: sa.Engine, rng: random.Random) -> None:
        try:
            with admin.connect() as conn:
                pids = (
                    conn.execute(
                        sa.text(
                            "SELECT pid FROM pg_stat_activity WHERE datname = :db"
                            " AND application_name = :app AND pid <> pg_backend_pid()"
                        ),
                        {"db": self.db.pg_name, "app": WORKER_APP},
                    )
                    .scalars()
                    .all()
                )
                for pid in rng.sample(list(pids), min(len(pids), rng.choice((1, 2)))):
                    if conn.execute(
                        sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}
                    ).scalar():
                        self.counters.terminated += 1
        except sa.exc.SQLAlchemyError as exc:  # the server restarting, say
            self.counters.chaos_errors += 1
            log(f"chaos: cannot terminate backends now: {str(exc)[:120]}")

    def restart_postgres(self) -> None:
        """Restart the server once, half way through production."""
        if self.stop.wait(self.args.minutes * 60 * 0.75 / 2):
            return
        versions = os.listdir("/etc/postgresql")
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "restart"]
        log(f"restarting PostgreSQL: {' '.join(command)}")
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log(f"restart failed: {done.stderr.strip()}")
            self.counters.chaos_errors += 1
            return
        engine = sa.create_engine(self.db.url)
        try:
            while True:
                try:
                    with engine.connect() as conn:
                        conn.execute(sa.text("SELECT 1"))
                    break
                except sa.exc.OperationalError:
                    time.sleep(0.1)
        finally:
            engine.dispose()
        self.counters.restarts += 1
        self.counters.restart_downtime.append(time.monotonic() - started)
        log(f"PostgreSQL is back after {time.monotonic() - started:.1f} s")

    # the run ---------------------------------------------------------------

    def quiet(self, store: SQLAlchemyMetadataStore) -> bool:
        try:
            stats = WorkQueue(store).work_stats()
        except NexusError:
            return False
        by_status = stats["by_status"]
        # A ready item waiting for its back-off is in by_status but in no view yet.
        return stats["ready"] == 0 and by_status["in_progress"] == 0

    def run(self) -> float:
        for slot in range(self.args.workers):
            self.start_worker(slot)
        threads = [threading.Thread(target=self.produce, name="producer", daemon=True)]
        if self.args.chaos:
            threads.append(threading.Thread(target=self.chaos, name="chaos", daemon=True))
        if self.args.restart_postgres:
            threads.append(
                threading.Thread(target=self.restart_postgres, name="restart", daemon=True)
            )
        started = time.monotonic()
        for thread in threads:
            thread.start()
        hard_stop = started + self.args.minutes * 60 + self.args.drain_seconds
        quiet_since: float | None = None
        store = open_store(self.db.url)
        last_report = started
        try:
            while time.monotonic() < hard_stop:
                self.supervise()
                if self.production_done.is_set() and self.quiet(store):
                    quiet_since = quiet_since or time.monotonic()
                    # Longer than the longest back-off, so no retry is still waiting.
                    if time.monotonic() - quiet_since > RETRY_POLICY.max_seconds * 2 + 0.5:
                        break
                else:
                    quiet_since = None
                if time.monotonic() - last_report > 10:
                    last_report = time.monotonic()
                    log(
                        f"{last_report - started:5.0f} s: enqueued {self.counters.enqueued},"
                        f" kills {self.counters.kills}, terminated {self.counters.terminated}"
                    )
                time.sleep(0.2)
            else:
                log("hard stop: the queue did not drain in time")
        finally:
            elapsed = time.monotonic() - started
            self.stop.set()
            for thread in threads:
                thread.join(150)
            self.stop_workers()
            store.close()
        return elapsed


# ---------------------------------------------------------------------- the check


@dataclass
class Event:
    id: int
    event: str
    at: datetime
    worker: str | None
    detail: dict[str, Any]


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    completed: int = 0
    dead_lettered: int = 0
    held: int = 0
    retried: int = 0
    reclaimed: int = 0
    handler_runs: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None

    def violate(self, message: str) -> None:
        self.violations.append(message)


def load(db: BenchDB) -> tuple[dict[str, dict[str, Any]], dict[str, list[Event]], dict[str, Any]]:
    """Work rows by path, history by path_id (in id order), stored results by path_id."""
    wi, fp, wh = schema.work_items, schema.file_paths, schema.work_history
    engine = sa.create_engine(db.url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    fp.c.virtual_path,
                    wi.c.path_id,
                    wi.c.status,
                    wi.c.attempts,
                    wi.c.max_attempts,
                    wi.c.last_error,
                ).join(fp, fp.c.path_id == wi.c.path_id)
            ).mappings()
            items = {row["virtual_path"]: dict(row) for row in rows}
            history: dict[str, list[Event]] = defaultdict(list)
            for row in conn.execute(
                sa.select(
                    wh.c.id, wh.c.path_id, wh.c.event, wh.c.at, wh.c.worker_id, wh.c.detail
                ).order_by(wh.c.id)
            ):
                detail = row.detail
                if isinstance(detail, str):
                    detail = json.loads(detail)
                history[row.path_id].append(
                    Event(row.id, row.event, row.at, row.worker_id, detail or {})
                )
            pm = schema.path_metadata
            results = {
                row.path_id: json.loads(row.value) if isinstance(row.value, str) else row.value
                for row in conn.execute(
                    sa.select(pm.c.path_id, pm.c.value).where(pm.c.key == "result")
                )
            }
    finally:
        engine.dispose()
    return items, history, results


def load_ledger(ledger_dir: Path) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name in glob.glob(str(ledger_dir / "ledger-*.jsonl")):
        with open(name) as handle:
            for line in handle:
                if line.endswith("\n"):  # a line cut by SIGKILL is no run record
                    entry = json.loads(line)
                    runs[entry["path"]].append(entry)
    return runs


@dataclass
class Replay:
    """The outcome of one item's history."""

    state: str | None = None
    attempts: int = 0
    claims: list[Event] = field(default_factory=list)
    completed_id: int | None = None
    last_claim: Event | None = None


def replay(path: str, events: list[Event], lease: float, report: Report) -> Replay:
    index = index_of(path)
    out = Replay()
    expires: datetime | None = None
    slack = timedelta(milliseconds=2)
    for e in events:
        where = f"{path} event {e.id} {e.event}"
        if e.event == "enqueued":
            if out.state is not None:
                report.violate(f"{where}: enqueued again")
            out.state = e.detail.get("status", "ready")
        elif e.event == "promoted":
            if out.state != "blocked":
                report.violate(f"{where}: promoted from {out.state}")
            out.state = "ready"
        elif e.event == "claimed":
            if out.state != "ready":
                report.violate(
                    f"{where}: claimed by {e.worker} while {out.state}"
                    f" (held by {out.last_claim.worker if out.last_claim else None})"
                )
            out.attempts += 1
            if e.detail.get("attempt") != out.attempts:
                report.violate(
                    f"{where}: attempt {e.detail.get('attempt')}, replay says {out.attempts}"
                )
            out.state, out.last_claim = "in_progress", e
            out.claims.append(e)
            expires = e.at + timedelta(seconds=lease)
        elif e.event == "heartbeat":
            if (
                out.state != "in_progress"
                or out.last_claim is None
                or e.worker != out.last_claim.worker
            ):
                report.violate(f"{where}: heartbeat by {e.worker} of a lease it does not hold")
            expires = e.at + timedelta(seconds=float(e.detail.get("lease_seconds", lease)))
        elif e.event in ("completed", "retried", "failed", "reclaimed"):
            claim = out.last_claim
            if out.state != "in_progress" or claim is None:
                report.violate(f"{where}: while {out.state}")
                continue
            if e.event != "reclaimed" and e.worker != claim.worker:
                report.violate(f"{where}: by {e.worker}, but {claim.worker} holds the lease")
            fails = handler_fails(index, out.attempts)
            if e.event == "completed":
                if fails:
                    report.violate(
                        f"{where}: completed, but the handler fails at attempt {out.attempts}"
                    )
                out.state, out.completed_id = "completed", e.id
            elif e.event in ("retried", "failed"):
                report.retried += e.event == "retried"
                error = str(e.detail.get("error", ""))
                if not fails or not error.startswith("PlannedFailure"):
                    report.violate(
                        f"{where}: {e.event} at attempt {out.attempts} with {error[:100]!r},"
                        " but its handler succeeds"
                        if not fails
                        else f"{where}: {e.event} with an unplanned error {error[:100]!r}"
                    )
                want = "retried" if out.attempts < MAX_ATTEMPTS else "failed"
                if e.event != want:
                    report.violate(
                        f"{where}: attempt {out.attempts} of {MAX_ATTEMPTS} should be {want}"
                    )
                out.state = "ready" if e.event == "retried" else "failed"
            else:
                report.reclaimed += 1
                if expires is not None and e.at + slack < expires:
                    report.violate(f"{where}: reclaimed at {e.at}, lease held until {expires}")
                to = e.detail.get("to")
                if to != ("failed" if out.attempts >= MAX_ATTEMPTS else "ready"):
                    report.violate(f"{where}: reclaimed to {to} at attempt {out.attempts}")
                out.state = str(to)
            expires = None
        else:
            report.violate(f"{where}: unexpected event")
    return out


def check(db: BenchDB, total: int, lease: float, ledger_dir: Path, crashed: list[str]) -> Report:
    report = Report()
    items, history, results = load(db)
    runs = load_ledger(ledger_dir)
    for crash in crashed:
        report.violate(f"worker process: {crash}")
    for name in sorted(glob.glob(str(ledger_dir / "crash-*.txt"))):
        trace = Path(name).read_text().strip().splitlines()
        frames = [line.strip() for line in trace if line.strip().startswith("File ")]
        report.violate(f"worker crash: {trace[-1]} at {' <- '.join(reversed(frames[-3:]))}")
    replays: dict[int, Replay] = {}
    for index in range(total):
        path = path_of(index)
        row = items.get(path)
        if row is None:
            report.violate(f"{path}: lost (no work item)")
            continue
        events = history.get(row["path_id"], [])
        if not events or events[0].event != "enqueued":
            report.violate(f"{path}: no enqueued event")
        result = replay(path, events, lease, report)
        replays[index] = result
        if (result.state, result.attempts) != (row["status"], row["attempts"]):
            report.violate(
                f"{path}: history says {result.state}/{result.attempts},"
                f" the row {row['status']}/{row['attempts']}"
            )
        if events:
            first, last = events[0].at, events[-1].at
            report.first_at = min(report.first_at or first, first)
            report.last_at = max(report.last_at or last, last)
        if result.state == "completed" and result.last_claim is not None:
            claim = result.last_claim
            completed = next(e for e in events if e.id == result.completed_id)
            report.latencies_ms.append((completed.at - claim.at).total_seconds() * 1000)
            want = {"by": claim.worker, "attempt": result.attempts}
            if results.get(row["path_id"]) != want:
                report.violate(
                    f"{path}: result {results.get(row['path_id'])}, the last lease was {want}"
                )
        check_runs(path, runs.get(path, []), result, history.get(row["path_id"], []), report)
    dead = {i for i, r in replays.items() if r.state == "failed"}
    for index, result in replays.items():
        deps = dependencies_of(index)
        path = path_of(index)
        held_by = [j for j in deps if blocked_forever(j, replays, dead)]
        if result.state == "completed":
            report.completed += 1
        elif result.state == "failed":
            report.dead_lettered += 1
        elif held_by and not result.claims:
            report.held += 1
        else:
            report.violate(f"{path}: unfinished ({result.state}, {result.attempts} attempts)")
        if held_by and result.claims:
            report.violate(f"{path}: claimed although {path_of(held_by[0])} never completed")
        if result.claims:
            first_claim = result.claims[0].id
            for j in deps:
                done = replays.get(j)
                if done is None or done.completed_id is None or done.completed_id > first_claim:
                    report.violate(f"{path}: claimed before its dependency {path_of(j)} completed")
    return report


def blocked_forever(index: int, replays: dict[int, Replay], dead: set[int]) -> bool:
    """Whether the item never completes: dead-lettered, or (transitively) held by one."""
    if index in dead:
        return True
    result = replays.get(index)
    if result is None or result.state == "completed":
        return False
    return any(blocked_forever(j, replays, dead) for j in dependencies_of(index))


def check_runs(
    path: str, runs: list[dict[str, Any]], result: Replay, events: list[Event], report: Report
) -> None:
    """The ledger against the history: each run belongs to a claim, none overlaps another
    worker's, and a successful run never ends as a failure."""
    report.handler_runs += len(runs)
    claims = {e.detail.get("attempt"): e for e in result.claims}
    endings: dict[int, str] = {}
    attempt = 0
    for e in events:
        if e.event == "claimed":
            attempt += 1
        elif e.event in ("completed", "retried", "failed", "reclaimed"):
            endings[attempt] = e.event
    seen: set[int] = set()
    for run in runs:
        claim = claims.get(run["attempt"])
        if claim is None or claim.worker != run["worker"]:
            report.violate(
                f"{path}: {run['worker']} ran attempt {run['attempt']} without its claim"
            )
        if run["attempt"] in seen:
            report.violate(f"{path}: attempt {run['attempt']} ran twice")
        seen.add(run["attempt"])
        if run["ok"] and endings.get(run["attempt"]) in ("retried", "failed"):
            report.violate(
                f"{path}: attempt {run['attempt']} succeeded in {run['worker']} but was counted"
                f" {endings[run['attempt']]}"
            )
    ordered = sorted(runs, key=lambda r: r["start"])
    for before, after in itertools.pairwise(ordered):
        if after["worker"] != before["worker"] and after["start"] < before["end"]:
            report.violate(f"{path}: runs in {before['worker']} and {after['worker']} overlap")


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--items", type=int, default=50000)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--chaos", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--restart-postgres", action="store_true")
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between SIGKILLs")
    parser.add_argument(
        "--terminate-every", type=float, default=2.0, help="seconds between backend terminations"
    )
    parser.add_argument("--lease", type=float, default=5.0, help="lease seconds")
    parser.add_argument("--work-ms", type=float, default=10.0, help="handler time per item")
    parser.add_argument("--drain-seconds", type=float, default=120.0)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if args.restart_postgres and (os.geteuid() != 0 or not os.path.isdir("/etc/postgresql")):
        log("--restart-postgres needs root and a local cluster in /etc/postgresql: not restarting")
        args.restart_postgres = False

    with (
        bench_database(args.db, keep=args.keep, tag="soak") as db,
        tempfile.TemporaryDirectory(prefix="nexus_soak_ledger_") as ledger,
    ):
        if db.kind != "postgresql":
            args.restart_postgres = False
        SQLAlchemyMetadataStore(db.url).close()  # migrate once, before the workers open it
        print(
            header(
                "nexus soak",
                db,
                {
                    "run": f"{args.workers} workers, {args.items} items, {args.minutes} min,"
                    f" chaos {'on' if args.chaos else 'off'},"
                    f" restart {'on' if args.restart_postgres else 'off'}, lease {args.lease} s",
                },
            )
        )
        soak = Soak(db, args, Path(ledger))
        elapsed = soak.run()
        log("checking...")
        # The items the producer saw committed (all of them unless it fell behind).
        report = check(db, soak.counters.enqueued, args.lease, Path(ledger), soak.crashed)
        print(summary(db, args, soak.counters, report, elapsed))
        for violation in report.violations[:30]:
            print(f"VIOLATION {violation}")
        if len(report.violations) > 30:
            print(f"... and {len(report.violations) - 30} more")
    return 1 if report.violations else 0


def summary(db: BenchDB, args: argparse.Namespace, c: Counters, r: Report, elapsed: float) -> str:
    span = (r.last_at - r.first_at).total_seconds() if r.first_at and r.last_at else elapsed
    finished = r.completed + r.dead_lettered
    rows = [
        ["database", db.kind],
        ["workers (Worker + claim loop)", str(args.workers)],
        ["items enqueued", f"{c.enqueued} of {args.items}"],
        ["run seconds (first enqueue to last event)", f"{span:.1f}"],
        ["items/s (finished / run seconds)", f"{finished / span:.0f}" if span else "-"],
        ["claim-to-complete p50 ms", f"{percentile(r.latencies_ms, 0.5):.1f}"],
        ["claim-to-complete p95 ms", f"{percentile(r.latencies_ms, 0.95):.1f}"],
        ["completed", str(r.completed)],
        ["dead-lettered (failed)", str(r.dead_lettered)],
        ["held behind a dead letter", str(r.held)],
        ["retries (retried events)", str(r.retried)],
        ["leases reclaimed", str(r.reclaimed)],
        ["handler runs (ledger)", str(r.handler_runs)],
        ["workers SIGKILLed", str(c.kills)],
        ["backends terminated", str(c.terminated)],
        [
            "PostgreSQL restarts (downtime s)",
            f"{c.restarts} ({', '.join(f'{d:.1f}' for d in c.restart_downtime) or '-'})",
        ],
        ["producer batch retries", str(c.producer_retries)],
        ["violations", str(len(r.violations))],
    ]
    return table(["soak", "value"], rows, "lr")


if __name__ == "__main__":
    sys.exit(main())
