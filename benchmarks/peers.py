"""The peer queues nexus is compared with, measured on the same machine in the same run.

    python benchmarks/peers.py --db sqlite --items 20000 --workers 1,4 --json peers-sqlite.json
    python benchmarks/peers.py --db postgresql --items 20000 --workers 1,4 --batch 10

On SQLite (a throwaway directory, ``--db`` as in benchmarks/common.py):

* **huey** (``SqliteHuey``, its own file, huey's defaults: WAL, SQLite's default
  ``synchronous``; only the busy timeout is raised to 30 s so four contending processes never
  fail on a lock):

  - enqueue-one: ``noop(i, priority=p)`` for each of ``--items`` no-op tasks (one transaction
    each, as huey always does);
  - enqueue-bulk: huey has no bulk API (``Task.map()`` is a loop of ``enqueue()``), so this is
    the fastest route through huey's own code: every task serialized by
    ``huey.serialize_task`` and written with ``SqliteStorage``'s INSERT in one
    ``storage.db(commit=True)`` transaction;
  - drain: ``W`` spawned processes each looping ``huey.dequeue()`` + ``huey.execute()`` -- the
    body of huey's consumer ``Worker.loop`` without its empty-queue sleep -- until dequeue
    returns nothing; exactly-once = the task ids the processes executed are each id once and
    the queue is empty.

* **bare-sqlite3**: a ``jobs`` table; enqueue-one = an INSERT + COMMIT per item, enqueue-bulk
  = one ``executemany`` transaction; drain = ``BEGIN IMMEDIATE; UPDATE jobs SET
  status='running' ... WHERE id IN (SELECT ... ORDER BY priority, id LIMIT :batch) RETURNING
  id; COMMIT`` then the completion UPDATE + COMMIT (WAL, synchronous=NORMAL); exactly-once =
  every row done with ``claims = 1`` and the returned ids distinct.

On PostgreSQL (a throwaway ``nexus_peer_<random>`` database, dropped at the end):

* **pgqueuer** (asyncpg driver, uvloop as ``pgq run`` uses it, ``Queries.install()`` schema at
  its default durability):
  enqueue-one = ``queries.enqueue(entrypoint, payload, priority)`` per item; enqueue-bulk =
  one ``queries.enqueue([...], [...], [...])`` list call; drain = ``W`` spawned processes,
  each running a ``QueueManager`` (``batch_size=--batch``, ``mode=drain``) with a no-op async
  entrypoint; the processes add up their executions in a shared counter and every manager is
  shut down once it reaches ``--items`` (so no process idles out a dequeue timeout); the drain
  ends when the last ``QueueManager.run()`` returns, i.e. after its buffered completion log
  is written.
  Exactly-once = each job has one 'picked' and one 'successful' row in ``pgqueuer_log``, the
  queue table is empty and the entrypoint saw every payload once.
* **procrastinate** (``App`` on its ``PsycopgConnector``, its defaults; schema by
  ``schema_manager.apply_schema_async()``, as ``procrastinate schema --apply`` does):
  enqueue-one = ``noop.configure(priority=p).defer_async(i=i)`` per item; enqueue-bulk = the
  one ``procrastinate_defer_jobs_v1`` statement ``Task.batch_defer_async`` runs, called through
  ``app.job_manager.batch_defer_jobs_async`` because ``batch_defer`` takes one priority per call;
  drain = ``W`` spawned processes each running ``app.run_worker_async(wait=False)`` at its
  defaults (concurrency 1, LISTEN/NOTIFY, finished jobs kept) with a no-op async task, until
  the worker finds nothing to fetch. Exactly-once = every job ``succeeded`` with
  ``attempts = 1`` and one 'started' and one 'succeeded' row in ``procrastinate_events``, and
  the task saw every argument once.
* **awa** (``awa-pg``, its Python SDK on its Rust engine): ``AsyncClient.migrate()`` (its own
  migrations; on a fresh database awa 0.6.x leaves the *canonical* storage engine active --
  the queue-storage engine is a separate, staged transition) and its defaults otherwise.
  awa priorities are 1-4, so 0-99 map to 1 + p // 25 (the same order). enqueue-one =
  ``client.insert(NexusPeersNoop(i=i), priority=...)`` per item; enqueue-bulk =
  ``insert_many_copy`` (COPY; ``enqueue_many_copy`` needs the queue-storage engine), one call
  per priority level because its priority is per call; drain = ``W`` spawned processes each
  calling ``client.start()`` without queue configs (the registered queue with its default 10
  workers, shown as the batch column) with a no-op async handler; as for pgqueuer, the
  processes add up their executions in a shared counter and each calls ``client.shutdown()``
  (which waits for in-flight handlers and writes their completions) once all items ran; the
  drain ends when the last shutdown returns. Exactly-once = every row of ``awa.jobs``
  ``completed`` at ``attempt = 1`` and the handler saw every argument once.
* **bare-psycopg**: the bare loop with ``FOR UPDATE SKIP LOCKED``.

The bare loops drain at batch 1 and at ``--batch``; huey and procrastinate (at its default
concurrency) take one job at a time; awa runs at its default concurrency.
Every step runs in spawned child processes released together by a barrier (so start-up and
imports are not timed) and is killed after ``--timeout`` seconds. A drain's time runs from
the barrier to the moment the last process finds the queue empty. Every drain uses the same
priorities (0-99, fixed seed). The enqueue rows' exactly-once column says whether the queue
then holds exactly ``--items`` items. ``measure_peers()`` is the entry point for other scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import json
import logging
import multiprocessing
import queue
import random
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from common import BenchDB, bench_database, header, log, table

SPAWN = multiprocessing.get_context("spawn")
SEED = 20240611
PEER_GROUPS = ("huey", "pgqueuer", "procrastinate", "awa", "bare")
DEFAULT_TIMEOUT = 600.0
BARRIER_TIMEOUT = 120.0  # spawning + importing pgqueuer on a loaded 2-core machine
HUEY_QUEUE = "nexus_peers"
HUEY_TASK = "nexus_peers_noop"
PGQ_ENTRYPOINT = "noop"
PROC_TASK = "nexus_peers_noop"
PROC_QUEUE = "nexus_peers"
AWA_QUEUE = "nexus_peers"
AWA_PRIORITIES = 4
AWA_DEFAULT_WORKERS = 10  # awa start() without queue configs: max_workers per queue

Row = dict[str, Any]
Params = dict[str, Any]


def priorities(n: int) -> list[int]:
    """The same 0-99 priorities for every system, so the claim orders are comparable."""
    rng = random.Random(SEED)
    return [rng.randint(0, 99) for _ in range(n)]


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


# ------------------------------------------------------------------------------------ huey

# Task ids executed in this process; a drain worker returns it for the exactly-once check.
_HUEY_EXECUTED: list[int] = []


def _huey(path: str) -> tuple[Any, Any]:
    from huey import SqliteHuey

    huey = SqliteHuey(HUEY_QUEUE, filename=path, timeout=30)

    def run(i: int) -> None:
        _HUEY_EXECUTED.append(i)

    # huey registers a task as "<module>.<name>", and this module is __main__ in the parent,
    # __mp_main__ in spawned children and peers when imported: pin the module so every
    # process can run what any other enqueued.
    run.__module__ = "nexus_peers"
    noop = huey.task(name=HUEY_TASK)(run)
    huey.storage.conn  # noqa: B018 -- open the connection before the clock starts
    return huey, noop


def _huey_enqueue_one(p: Params, barrier: Any, shared: Any) -> Row:
    _, noop = _huey(p["path"])
    barrier.wait()
    start = time.perf_counter()
    for i, prio in enumerate(p["priorities"]):
        noop(i, priority=prio)
    return {"seconds": time.perf_counter() - start}


_HUEY_INSERT = "insert into task (queue, data, priority) values (?, ?, ?)"  # SqliteStorage's


def _huey_bulk_insert(huey: Any, noop: Any, prios: list[int]) -> None:
    storage = huey.storage
    rows = [
        (storage.name, storage.to_blob(huey.serialize_task(noop.s(i, priority=prio))), prio)
        for i, prio in enumerate(prios)
    ]
    with storage.db(commit=True) as cursor:
        cursor.executemany(_HUEY_INSERT, rows)


def _huey_enqueue_bulk(p: Params, barrier: Any, shared: Any) -> Row:
    huey, noop = _huey(p["path"])
    barrier.wait()
    start = time.perf_counter()
    _huey_bulk_insert(huey, noop, p["priorities"])
    return {"seconds": time.perf_counter() - start}


def _huey_drain(p: Params, barrier: Any, shared: Any) -> Row:
    huey, _ = _huey(p["path"])
    barrier.wait()
    while (task := huey.dequeue()) is not None:
        huey.execute(task)
    return {"end": time.monotonic(), "executed": list(_HUEY_EXECUTED)}


# -------------------------------------------------------------------------------- pgqueuer


async def _pgq_connect(dsn: str) -> tuple[Any, Any]:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(dsn)
    return conn, Queries(AsyncpgDriver(conn))


def _payloads(n: int) -> list[bytes | None]:
    return [str(i).encode() for i in range(n)]


async def _pgq_enqueue_one_async(p: Params, barrier: Any) -> Row:
    conn, queries = await _pgq_connect(p["dsn"])
    payloads = _payloads(len(p["priorities"]))
    barrier.wait()
    start = time.perf_counter()
    for payload, prio in zip(payloads, p["priorities"], strict=True):
        await queries.enqueue(PGQ_ENTRYPOINT, payload, prio)
    seconds = time.perf_counter() - start
    await conn.close()
    return {"seconds": seconds}


async def _pgq_bulk(queries: Any, prios: list[int]) -> None:
    await queries.enqueue([PGQ_ENTRYPOINT] * len(prios), _payloads(len(prios)), list(prios))


async def _pgq_enqueue_bulk_async(p: Params, barrier: Any) -> Row:
    conn, queries = await _pgq_connect(p["dsn"])
    barrier.wait()
    start = time.perf_counter()
    await _pgq_bulk(queries, p["priorities"])
    seconds = time.perf_counter() - start
    await conn.close()
    return {"seconds": seconds}


async def _pgq_drain_async(p: Params, barrier: Any, done: Any) -> Row:
    from pgqueuer.models import Job
    from pgqueuer.qm import QueueManager
    from pgqueuer.types import QueueExecutionMode

    conn, queries = await _pgq_connect(p["dsn"])
    qm = QueueManager(queries)
    n = p["items"]
    executed: list[int] = []

    @qm.entrypoint(PGQ_ENTRYPOINT)
    async def noop(job: Job) -> None:
        executed.append(int(job.payload or b"-1"))

    # In drain mode a manager whose last jobs are still running when the queue empties waits
    # for a NOTIFY or its dequeue timeout; a count shared by all processes lets every manager
    # stop as soon as all items ran. It is published every 5 ms rather than per job, which
    # would cost a cross-process lock per job (~3% of pgqueuer's time in a profile).
    async def watch() -> None:
        published = 0
        while not qm.shutdown.is_set():
            with done.get_lock():
                done.value += len(executed) - published
                total = done.value
            published = len(executed)
            if total >= n:
                qm.shutdown.set()
                return
            await asyncio.sleep(0.005)

    barrier.wait()
    watcher = asyncio.create_task(watch())
    await qm.run(batch_size=p["batch"], mode=QueueExecutionMode.drain)
    end = time.monotonic()
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await conn.close()
    return {"end": end, "executed": executed}


def _aio_run(coro: Coroutine[Any, Any, Row]) -> Row:
    """Run on uvloop when it is installed, as ``pgq run`` does (pgqueuer depends on it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _pgq_enqueue_one(p: Params, barrier: Any, shared: Any) -> Row:
    return _aio_run(_pgq_enqueue_one_async(p, barrier))


def _pgq_enqueue_bulk(p: Params, barrier: Any, shared: Any) -> Row:
    return _aio_run(_pgq_enqueue_bulk_async(p, barrier))


def _pgq_drain(p: Params, barrier: Any, shared: Any) -> Row:
    return _aio_run(_pgq_drain_async(p, barrier, shared))


# --------------------------------------------------------------------------- procrastinate

# Job ids executed in this process (the task's ``i`` argument), for the exactly-once check.
_PROC_EXECUTED: list[int] = []


def _procrastinate(dsn: str) -> tuple[Any, Any]:
    """A procrastinate ``App`` on its psycopg connector (its defaults) and the no-op task."""
    import procrastinate

    # Its warning that the App lives in the __main__ module (where it cannot import tasks
    # by path) does not apply: every process registers the task by name.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    async def run(i: int) -> None:
        _PROC_EXECUTED.append(i)

    task = app.task(name=PROC_TASK, queue=PROC_QUEUE)(run)
    return app, task


def _proc_jobs(task: Any, prios: list[int]) -> list[Any]:
    """One procrastinate ``Job`` per item, each with its own priority."""
    return [task.configure(priority=prio).make_new_job(i=i) for i, prio in enumerate(prios)]


async def _proc_enqueue_one_async(p: Params, barrier: Any) -> Row:
    app, task = _procrastinate(p["dsn"])
    async with app.open_async():
        barrier.wait()
        start = time.perf_counter()
        for i, prio in enumerate(p["priorities"]):
            await task.configure(priority=prio).defer_async(i=i)
        return {"seconds": time.perf_counter() - start}


async def _proc_bulk(app: Any, task: Any, prios: list[int]) -> None:
    # Task.batch_defer_async takes one configuration (so one priority) per call; this is the
    # one-statement JobManager method it calls, given jobs with their own priorities.
    await app.job_manager.batch_defer_jobs_async(_proc_jobs(task, prios))


async def _proc_enqueue_bulk_async(p: Params, barrier: Any) -> Row:
    app, task = _procrastinate(p["dsn"])
    async with app.open_async():
        barrier.wait()
        start = time.perf_counter()
        await _proc_bulk(app, task, p["priorities"])
        return {"seconds": time.perf_counter() - start}


async def _proc_drain_async(p: Params, barrier: Any) -> Row:
    app, _ = _procrastinate(p["dsn"])
    async with app.open_async():
        barrier.wait()
        # Its defaults (concurrency 1, LISTEN/NOTIFY, finished jobs kept); wait=False ends
        # the worker when it finds no job to fetch.
        await app.run_worker_async(queues=[PROC_QUEUE], wait=False, install_signal_handlers=False)
        end = time.monotonic()
    return {"end": end, "executed": list(_PROC_EXECUTED)}


def _proc_enqueue_one(p: Params, barrier: Any, shared: Any) -> Row:
    return asyncio.run(_proc_enqueue_one_async(p, barrier))


def _proc_enqueue_bulk(p: Params, barrier: Any, shared: Any) -> Row:
    return asyncio.run(_proc_enqueue_bulk_async(p, barrier))


def _proc_drain(p: Params, barrier: Any, shared: Any) -> Row:
    return asyncio.run(_proc_drain_async(p, barrier))


# ------------------------------------------------------------------------------------- awa


@dataclasses.dataclass
class NexusPeersNoop:
    """The awa job's arguments (awa derives the kind ``nexus_peers_noop`` from the name)."""

    i: int


def awa_priority(prio: int) -> int:
    """awa accepts priorities 1-4 (1 runs first): 0-24 -> 1, ..., 75-99 -> 4."""
    return 1 + prio * AWA_PRIORITIES // 100


async def _awa_client(dsn: str) -> Any:
    """An ``awa.AsyncClient`` (its default pool) with a connection open before the clock."""
    import awa

    client = awa.AsyncClient(dsn)
    tx = await client.transaction()
    await tx.fetch_one("SELECT 1 AS one")
    await tx.rollback()
    return client


async def _awa_enqueue_one_async(p: Params, barrier: Any) -> Row:
    client = await _awa_client(p["dsn"])
    barrier.wait()
    start = time.perf_counter()
    for i, prio in enumerate(p["priorities"]):
        await client.insert(NexusPeersNoop(i=i), queue=AWA_QUEUE, priority=awa_priority(prio))
    seconds = time.perf_counter() - start
    await client.close()
    return {"seconds": seconds}


async def _awa_bulk(client: Any, prios: list[int]) -> None:
    # insert_many_copy is awa's bulk insert on its canonical storage (enqueue_many_copy needs
    # the queue-storage engine); its priority is per call, so one COPY per priority level.
    by_prio: dict[int, list[NexusPeersNoop]] = {}
    for i, prio in enumerate(prios):
        by_prio.setdefault(awa_priority(prio), []).append(NexusPeersNoop(i=i))
    for prio, jobs in sorted(by_prio.items()):
        await client.insert_many_copy(jobs, queue=AWA_QUEUE, priority=prio)


async def _awa_enqueue_bulk_async(p: Params, barrier: Any) -> Row:
    client = await _awa_client(p["dsn"])
    barrier.wait()
    start = time.perf_counter()
    await _awa_bulk(client, p["priorities"])
    seconds = time.perf_counter() - start
    await client.close()
    return {"seconds": seconds}


async def _awa_drain_async(p: Params, barrier: Any, done: Any) -> Row:
    client = await _awa_client(p["dsn"])
    n = p["items"]
    executed: list[int] = []

    @client.task(NexusPeersNoop, queue=AWA_QUEUE)
    async def noop(job: Any) -> None:
        executed.append(job.args.i)

    barrier.wait()
    # Its defaults: start() with no queue configs runs the registered queue with 10 workers.
    await client.start()
    # The awa runtime never idles out; as for pgqueuer, the processes add up their executions
    # in a shared count (every 5 ms) and each shuts its runtime down once all items ran.
    published = 0
    while True:
        with done.get_lock():
            done.value += len(executed) - published
            total = done.value
        published = len(executed)
        if total >= n:
            break
        await asyncio.sleep(0.005)
    # Waits for in-flight handlers and writes their completions.
    await client.shutdown()
    end = time.monotonic()
    await client.close()
    return {"end": end, "executed": executed}


def _awa_enqueue_one(p: Params, barrier: Any, shared: Any) -> Row:
    return asyncio.run(_awa_enqueue_one_async(p, barrier))


def _awa_enqueue_bulk(p: Params, barrier: Any, shared: Any) -> Row:
    return asyncio.run(_awa_enqueue_bulk_async(p, barrier))


def _awa_drain(p: Params, barrier: Any, shared: Any) -> Row:
    return asyncio.run(_awa_drain_async(p, barrier, shared))


# ---------------------------------------------------------------------------- bare loops

_SQLITE_CLAIM = (
    "UPDATE jobs SET status = 'running', claims = claims + 1 "
    "WHERE id IN (SELECT id FROM jobs WHERE status = 'ready' ORDER BY priority, id LIMIT ?) "
    "RETURNING id"
)
_PG_CLAIM = (
    "UPDATE jobs SET status = 'running', claims = claims + 1 "
    "WHERE id IN (SELECT id FROM jobs WHERE status = 'ready' ORDER BY priority, id "
    "LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id"
)


def _sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def _bare_sqlite_enqueue_one(p: Params, barrier: Any, shared: Any) -> Row:
    conn = _sqlite_connect(p["path"])
    barrier.wait()
    start = time.perf_counter()
    for i, prio in enumerate(p["priorities"]):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO jobs (id, priority) VALUES (?, ?)", (i, prio))
        conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    conn.close()
    return {"seconds": seconds}


def _bare_sqlite_enqueue_bulk(p: Params, barrier: Any, shared: Any) -> Row:
    conn = _sqlite_connect(p["path"])
    barrier.wait()
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO jobs (id, priority) VALUES (?, ?)", enumerate(p["priorities"]))
    conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    conn.close()
    return {"seconds": seconds}


def _bare_sqlite_drain(p: Params, barrier: Any, shared: Any) -> Row:
    conn = _sqlite_connect(p["path"])
    claimed: list[int] = []
    barrier.wait()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        ids = [row[0] for row in conn.execute(_SQLITE_CLAIM, (p["batch"],)).fetchall()]
        conn.execute("COMMIT")
        if not ids:
            break
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"UPDATE jobs SET status = 'done' WHERE id IN ({','.join('?' * len(ids))})", ids
        )
        conn.execute("COMMIT")
        claimed += ids
    end = time.monotonic()
    conn.close()
    return {"end": end, "executed": claimed}


def _bare_pg_enqueue_one(p: Params, barrier: Any, shared: Any) -> Row:
    import psycopg

    with psycopg.connect(p["dsn"]) as conn:
        barrier.wait()
        start = time.perf_counter()
        for i, prio in enumerate(p["priorities"]):
            conn.execute("INSERT INTO jobs (id, priority) VALUES (%s, %s)", (i, prio))
            conn.commit()
        return {"seconds": time.perf_counter() - start}


def _bare_pg_enqueue_bulk(p: Params, barrier: Any, shared: Any) -> Row:
    import psycopg

    with psycopg.connect(p["dsn"]) as conn:
        barrier.wait()
        start = time.perf_counter()
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO jobs (id, priority) VALUES (%s, %s)", list(enumerate(p["priorities"]))
            )
        conn.commit()
        return {"seconds": time.perf_counter() - start}


def _bare_pg_drain(p: Params, barrier: Any, shared: Any) -> Row:
    import psycopg

    claimed: list[int] = []
    with psycopg.connect(p["dsn"]) as conn:
        barrier.wait()
        while True:
            with conn.cursor() as cur:
                cur.execute(_PG_CLAIM, (p["batch"],))
                ids = [row[0] for row in cur.fetchall()]
            conn.commit()
            if not ids:
                break
            with conn.cursor() as cur:
                cur.execute("UPDATE jobs SET status = 'done' WHERE id = ANY(%s)", (ids,))
            conn.commit()
            claimed += ids
    return {"end": time.monotonic(), "executed": claimed}


CHILD_STEPS: dict[str, Callable[[Params, Any, Any], Row]] = {
    "huey/enqueue-one": _huey_enqueue_one,
    "huey/enqueue-bulk": _huey_enqueue_bulk,
    "huey/drain": _huey_drain,
    "pgqueuer/enqueue-one": _pgq_enqueue_one,
    "pgqueuer/enqueue-bulk": _pgq_enqueue_bulk,
    "pgqueuer/drain": _pgq_drain,
    "procrastinate/enqueue-one": _proc_enqueue_one,
    "procrastinate/enqueue-bulk": _proc_enqueue_bulk,
    "procrastinate/drain": _proc_drain,
    "awa/enqueue-one": _awa_enqueue_one,
    "awa/enqueue-bulk": _awa_enqueue_bulk,
    "awa/drain": _awa_drain,
    "bare-sqlite3/enqueue-one": _bare_sqlite_enqueue_one,
    "bare-sqlite3/enqueue-bulk": _bare_sqlite_enqueue_bulk,
    "bare-sqlite3/drain": _bare_sqlite_drain,
    "bare-psycopg/enqueue-one": _bare_pg_enqueue_one,
    "bare-psycopg/enqueue-bulk": _bare_pg_enqueue_bulk,
    "bare-psycopg/drain": _bare_pg_drain,
}


# -------------------------------------------------------------------------- child runner


class StepFailed(Exception):
    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


def _child_main(step: str, params: Params, barrier: Any, shared: Any, out: Any) -> None:
    try:
        result = CHILD_STEPS[step](params, barrier, shared)
    except BaseException as exc:
        # Abort first: the parent and the sibling processes must not wait at the barrier.
        barrier.abort()
        traceback.print_exc()
        out.put({"error": f"{type(exc).__name__}: {exc}"})
        return
    out.put(result)


def _kill(procs: list[Any]) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    for proc in procs:
        proc.join(timeout=10)


def run_children(
    step: str, params: Params, workers: int, timeout: float, shared: Any = None
) -> tuple[float, list[Row]]:
    """Run ``step`` in ``workers`` spawned processes; (barrier release time, their results).

    The processes are killed if they have not all reported within ``timeout`` seconds of the
    barrier (or if one fails).
    """
    barrier = SPAWN.Barrier(workers + 1)
    out = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=_child_main, args=(step, params, barrier, shared, out), daemon=True)
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    start = time.monotonic()
    results: list[Row] = []
    try:
        barrier.wait(timeout=BARRIER_TIMEOUT)
        start = time.monotonic()
        deadline = start + timeout
        for _ in procs:
            results.append(out.get(timeout=max(0.1, deadline - time.monotonic())))
    except threading.BrokenBarrierError:
        with contextlib.suppress(queue.Empty):
            results.append(out.get(timeout=5))
        _kill(procs)
        errors = [r["error"] for r in results if "error" in r] or ["barrier broken"]
        raise StepFailed(f"{step}: {errors}", time.monotonic() - start) from None
    except queue.Empty:
        _kill(procs)
        raise StepFailed(f"{step}: timed out after {timeout:g} s", timeout) from None
    for proc in procs:
        proc.join(timeout=60)
    _kill(procs)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise StepFailed(f"{step}: {errors}", time.monotonic() - start)
    return start, results


# ------------------------------------------------------------------------------- systems


class Peer:
    """One measured system: how to empty, fill, count and check its queue from the parent."""

    name = ""
    drain_batches: list[int] = [1]
    bulk_note = ""

    def __init__(self, items: int, prios: list[int]) -> None:
        self.items = items
        self.prios = prios

    def params(self) -> Params:
        raise NotImplementedError

    def setup(self) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def fill(self) -> None:
        raise NotImplementedError

    def queued(self) -> int:
        raise NotImplementedError

    def check_drain(self, executed: list[int]) -> tuple[bool, str]:
        raise NotImplementedError

    def shared(self) -> Any:
        return None

    def notes(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        pass


def _ids_once(executed: list[int], n: int) -> bool:
    return len(executed) == n and set(executed) == set(range(n))


class HueyPeer(Peer):
    name = "huey"
    bulk_note = (
        "no bulk API in huey: huey.serialize_task + SqliteStorage's INSERT, executemany in one "
        "storage.db(commit=True) transaction"
    )

    def __init__(self, items: int, prios: list[int], path: Path) -> None:
        super().__init__(items, prios)
        self.path = str(path)

    def params(self) -> Params:
        return {"path": self.path, "priorities": self.prios}

    def setup(self) -> None:
        self.huey, self.noop = _huey(self.path)

    def clear(self) -> None:
        self.huey.storage.flush_queue()

    def fill(self) -> None:
        _huey_bulk_insert(self.huey, self.noop, self.prios)

    def queued(self) -> int:
        return int(self.huey.storage.queue_size())

    def check_drain(self, executed: list[int]) -> tuple[bool, str]:
        left = self.queued()
        ok = _ids_once(executed, self.items) and left == 0
        return ok, f"{len(executed)} executions, {len(set(executed))} distinct, {left} left"

    def notes(self) -> dict[str, str]:
        conn = self.huey.storage.conn
        sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
            conn.execute("PRAGMA synchronous").fetchone()[0], "?"
        )
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        return {
            "huey": f"{_version('huey')}: SqliteHuey, journal_mode={mode}, synchronous={sync} "
            "(huey's defaults), busy timeout 30 s; enqueue-bulk = one storage transaction "
            "(huey has no bulk API)"
        }

    def close(self) -> None:
        self.huey.storage.close()


class BareSqlitePeer(Peer):
    name = "bare-sqlite3"

    def __init__(self, items: int, prios: list[int], path: Path, batch: int) -> None:
        super().__init__(items, prios)
        self.path = str(path)
        self.drain_batches = sorted({1, batch})

    def params(self) -> Params:
        return {"path": self.path, "priorities": self.prios}

    def setup(self) -> None:
        conn = _sqlite_connect(self.path)
        conn.executescript(
            """CREATE TABLE jobs (id INTEGER PRIMARY KEY, priority INTEGER NOT NULL,
                   status TEXT NOT NULL DEFAULT 'ready', claims INTEGER NOT NULL DEFAULT 0);
               CREATE INDEX jobs_ready ON jobs (priority, id) WHERE status = 'ready';"""
        )
        conn.close()

    def _exec(self, sql: str, rows: Any = None) -> list[Any]:
        conn = _sqlite_connect(self.path)
        try:
            if rows is None:
                return conn.execute(sql).fetchall()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
            return []
        finally:
            conn.close()

    def clear(self) -> None:
        self._exec("DELETE FROM jobs")

    def fill(self) -> None:
        self._exec("INSERT INTO jobs (id, priority) VALUES (?, ?)", enumerate(self.prios))

    def queued(self) -> int:
        return int(self._exec("SELECT count(*) FROM jobs WHERE status = 'ready'")[0][0])

    def check_drain(self, executed: list[int]) -> tuple[bool, str]:
        total, good = self._exec(
            "SELECT count(*), coalesce(sum(status = 'done' AND claims = 1), 0) FROM jobs"
        )[0]
        ok = _ids_once(executed, self.items) and total == good == self.items
        return ok, f"{len(executed)} claims returned, {good}/{total} rows done once"

    def notes(self) -> dict[str, str]:
        return {"bare-sqlite3": f"sqlite3 {sqlite3.sqlite_version}, WAL, synchronous=NORMAL"}


class PgPeer(Peer):
    """Shared plumbing of the PostgreSQL systems (psycopg for the parent's queries)."""

    def __init__(self, items: int, prios: list[int], dsn: str) -> None:
        super().__init__(items, prios)
        self.dsn = dsn

    def params(self) -> Params:
        return {"dsn": self.dsn, "priorities": self.prios, "items": self.items}

    def sql(self, sql: str, args: Any = None) -> list[Any]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(sql, args)
            return cur.fetchall() if cur.description else []


class PgqueuerPeer(PgPeer):
    name = "pgqueuer"

    def __init__(self, items: int, prios: list[int], dsn: str, batch: int) -> None:
        super().__init__(items, prios, dsn)
        self.drain_batches = [batch]

    def setup(self) -> None:
        async def install() -> None:
            conn, queries = await _pgq_connect(self.dsn)
            await queries.install()
            await conn.close()

        asyncio.run(install())

    def clear(self) -> None:
        # The log goes too, so a drain's exactly-once check sees only that drain's jobs.
        self.sql("TRUNCATE pgqueuer, pgqueuer_log")

    def fill(self) -> None:
        async def fill() -> None:
            conn, queries = await _pgq_connect(self.dsn)
            await _pgq_bulk(queries, self.prios)
            await conn.close()

        asyncio.run(fill())
        # What autovacuum would have done by the time a real queue holds this backlog.
        self.sql("ANALYZE pgqueuer")

    def queued(self) -> int:
        return int(self.sql("SELECT count(*) FROM pgqueuer WHERE status = 'queued'")[0][0])

    def shared(self) -> Any:
        return SPAWN.Value("q", 0)

    def check_drain(self, executed: list[int]) -> tuple[bool, str]:
        once = self.sql(
            """SELECT count(*) FROM (
                   SELECT job_id FROM pgqueuer_log GROUP BY job_id
                   HAVING count(*) FILTER (WHERE status = 'picked') = 1
                      AND count(*) FILTER (WHERE status = 'successful') = 1
                      AND count(*) FILTER (WHERE status NOT IN ('queued', 'picked',
                                                                 'successful')) = 0) s"""
        )[0][0]
        left = self.sql("SELECT count(*) FROM pgqueuer")[0][0]
        ok = _ids_once(executed, self.items) and once == self.items and left == 0
        return ok, (
            f"{len(executed)} executions, {len(set(executed))} distinct, {once} jobs logged "
            f"picked+successful once, {left} rows left"
        )

    def notes(self) -> dict[str, str]:
        return {
            "pgqueuer": f"{_version('pgqueuer')} (asyncpg {_version('asyncpg')}), "
            f"uvloop {_version('uvloop')}, durability=durable (default), QueueManager mode=drain"
        }


class ProcrastinatePeer(PgPeer):
    name = "procrastinate"
    bulk_note = (
        "app.job_manager.batch_defer_jobs_async: the one statement Task.batch_defer_async "
        "runs, given jobs with their own priorities (batch_defer takes one priority per call)"
    )

    def setup(self) -> None:
        async def install() -> None:
            app, _ = _procrastinate(self.dsn)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()

        asyncio.run(install())

    def clear(self) -> None:
        # Events (and periodic defers) reference the jobs: a drain's check sees only its own.
        self.sql("TRUNCATE procrastinate_jobs CASCADE")

    def fill(self) -> None:
        async def fill() -> None:
            app, task = _procrastinate(self.dsn)
            async with app.open_async():
                await _proc_bulk(app, task, self.prios)

        asyncio.run(fill())
        self.sql("ANALYZE procrastinate_jobs")

    def queued(self) -> int:
        return int(self.sql("SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")[0][0])

    def check_drain(self, executed: list[int]) -> tuple[bool, str]:
        total, good = self.sql(
            """SELECT count(*), count(*) FILTER (WHERE status = 'succeeded' AND attempts = 1)
               FROM procrastinate_jobs"""
        )[0]
        once = self.sql(
            """SELECT count(*) FROM (
                   SELECT job_id FROM procrastinate_events GROUP BY job_id
                   HAVING count(*) FILTER (WHERE type = 'started') = 1
                      AND count(*) FILTER (WHERE type = 'succeeded') = 1
                      AND count(*) FILTER (WHERE type NOT IN ('deferred', 'started',
                                                               'succeeded')) = 0) s"""
        )[0][0]
        ok = _ids_once(executed, self.items) and total == good == once == self.items
        return ok, (
            f"{len(executed)} executions, {len(set(executed))} distinct, {good}/{total} jobs "
            f"succeeded at attempt 1, {once} with one started+succeeded event"
        )

    def notes(self) -> dict[str, str]:
        return {
            "procrastinate": f"{_version('procrastinate')} (psycopg {_version('psycopg')}, "
            f"psycopg-pool {_version('psycopg-pool')}), schema_manager.apply_schema, "
            "PsycopgConnector and worker defaults (concurrency 1, LISTEN/NOTIFY), "
            "run_worker(wait=False); enqueue-one = configure(priority).defer_async per item"
        }


class AwaPeer(PgPeer):
    name = "awa"
    drain_batches = [AWA_DEFAULT_WORKERS]
    bulk_note = (
        "insert_many_copy, one COPY call per awa priority level (1-4; its priority is per call)"
    )

    def _run(self, coro: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
        async def main() -> Any:
            client = await _awa_client(self.dsn)
            try:
                return await coro(client)
            finally:
                await client.close()

        return asyncio.run(main())

    def setup(self) -> None:
        # awa's own migrations; on a fresh database 0.6.x leaves the canonical engine active.
        self._run(lambda client: client.migrate())
        status = json.loads(self._run(lambda client: client.storage_status()))
        self.engine = str(status.get("active_engine") or status.get("current_engine"))

    def clear(self) -> None:
        # What awa's own benchmark (awa-python/scripts/benchmark_runtime.py) resets.
        self.sql(
            "TRUNCATE awa.jobs_hot, awa.scheduled_jobs, awa.queue_meta, awa.job_unique_claims "
            "RESTART IDENTITY CASCADE"
        )

    def fill(self) -> None:
        self._run(lambda client: _awa_bulk(client, self.prios))
        self.sql("ANALYZE awa.jobs_hot")

    def queued(self) -> int:
        return int(self.sql("SELECT count(*) FROM awa.jobs WHERE state = 'available'")[0][0])

    def shared(self) -> Any:
        return SPAWN.Value("q", 0)

    def check_drain(self, executed: list[int]) -> tuple[bool, str]:
        total, good = self.sql(
            """SELECT count(*), count(*) FILTER (WHERE state = 'completed' AND attempt = 1)
               FROM awa.jobs"""
        )[0]
        ok = _ids_once(executed, self.items) and total == good == self.items
        return ok, (
            f"{len(executed)} executions, {len(set(executed))} distinct, {good}/{total} jobs "
            "completed at attempt 1"
        )

    def notes(self) -> dict[str, str]:
        return {
            "awa": f"awa-pg {_version('awa-pg')}: AsyncClient.migrate(), {self.engine} storage "
            f"engine (what migrate leaves), start() defaults ({AWA_DEFAULT_WORKERS} workers "
            "per process = the batch column); priorities 0-99 mapped to its 1-4"
        }


class BarePsycopgPeer(PgPeer):
    name = "bare-psycopg"

    def __init__(self, items: int, prios: list[int], dsn: str, batch: int) -> None:
        super().__init__(items, prios, dsn)
        self.drain_batches = sorted({1, batch})

    def setup(self) -> None:
        self.sql(
            """CREATE TABLE jobs (id bigint PRIMARY KEY, priority integer NOT NULL,
                   status text NOT NULL DEFAULT 'ready', claims integer NOT NULL DEFAULT 0)"""
        )
        self.sql("CREATE INDEX jobs_ready ON jobs (priority, id) WHERE status = 'ready'")

    def clear(self) -> None:
        self.sql("TRUNCATE jobs")

    def fill(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO jobs (id, priority) VALUES (%s, %s)", list(enumerate(self.prios))
                )
            conn.commit()
        self.sql("ANALYZE jobs")

    def queued(self) -> int:
        return int(self.sql("SELECT count(*) FROM jobs WHERE status = 'ready'")[0][0])

    def check_drain(self, executed: list[int]) -> tuple[bool, str]:
        total, good = self.sql(
            "SELECT count(*), count(*) FILTER (WHERE status = 'done' AND claims = 1) FROM jobs"
        )[0]
        ok = _ids_once(executed, self.items) and total == good == self.items
        return ok, f"{len(executed)} claims returned, {good}/{total} rows done once"

    def notes(self) -> dict[str, str]:
        return {"bare-psycopg": f"psycopg {_version('psycopg')}, FOR UPDATE SKIP LOCKED"}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def make_peers(
    db: BenchDB, items: int, batch: int, wanted: list[str]
) -> tuple[list[Peer], list[str]]:
    """The systems to measure on ``db``, and the reasons for those skipped."""
    prios = priorities(items)
    peers: list[Peer] = []
    skipped: list[str] = []
    if db.kind == "sqlite":
        assert db.sqlite_path is not None
        base = str(db.sqlite_path)
        for peer_name in ("pgqueuer", "procrastinate", "awa"):
            if peer_name in wanted:
                skipped.append(f"{peer_name}: PostgreSQL only (run with --db postgresql)")
        if "huey" in wanted:
            if missing := _missing("huey"):
                skipped.append(
                    f"huey: not installed ({', '.join(missing)}); "
                    "pip install -r benchmarks/requirements-peers.txt"
                )
            else:
                peers.append(HueyPeer(items, prios, Path(base + ".huey")))
        if "bare" in wanted:
            peers.append(BareSqlitePeer(items, prios, Path(base + ".bare"), batch))
        return peers, skipped
    dsn = db.raw_dsn()
    if "huey" in wanted:
        skipped.append("huey: measured on SQLite only (run with --db sqlite)")
    if "pgqueuer" in wanted:
        if missing := _missing("pgqueuer", "asyncpg"):
            skipped.append(
                f"pgqueuer: not installed ({', '.join(missing)}); "
                "pip install -r benchmarks/requirements-peers.txt"
            )
        else:
            peers.append(PgqueuerPeer(items, prios, dsn, batch))
    for peer_name, cls, modules, package in (
        ("procrastinate", ProcrastinatePeer, ("procrastinate",), "procrastinate"),
        ("awa", AwaPeer, ("awa",), "awa-pg"),
    ):
        if peer_name not in wanted:
            continue
        if _missing(*modules):
            skipped.append(
                f"{peer_name}: not installed ({package}); "
                "pip install -r benchmarks/requirements-peers.txt"
            )
        else:
            peers.append(cls(items, prios, dsn))
    if "bare" in wanted:
        if _missing("psycopg"):
            skipped.append("bare-psycopg: psycopg not installed")
        else:
            peers.append(BarePsycopgPeer(items, prios, dsn, batch))
    return peers, skipped


# ---------------------------------------------------------------------------- measuring


def _row(peer: Peer, step: str, workers: int, batch: int, seconds: float, ok: bool | None) -> Row:
    return {
        "system": peer.name,
        "step": step,
        "workers": workers,
        "batch": batch,
        "items": peer.items,
        "seconds": round(seconds, 4),
        "rate": round(rate(peer.items, seconds), 1),
        "exactly_once": ok,
    }


def _failed(peer: Peer, step: str, workers: int, batch: int, exc: StepFailed) -> Row:
    log(f"  {peer.name} {step} FAILED: {exc}")
    row = _row(peer, step, workers, batch, exc.seconds, False)
    row["rate"] = 0.0
    row["error"] = str(exc)
    return row


def _enqueue_step(peer: Peer, step: str, timeout: float) -> Row:
    batch = 1 if step == "enqueue-one" else peer.items
    try:
        _, results = run_children(f"{peer.name}/{step}", peer.params(), 1, timeout)
    except StepFailed as exc:
        return _failed(peer, step, 1, batch, exc)
    queued = peer.queued()
    row = _row(peer, step, 1, batch, results[0]["seconds"], queued == peer.items)
    if step == "enqueue-bulk" and peer.bulk_note:
        row["note"] = peer.bulk_note
    if queued != peer.items:
        row["error"] = f"{queued} queued after enqueueing {peer.items}"
    log(f"  {peer.name} {step}: {row['seconds']:.2f} s, {row['rate']:,.0f}/s, {queued} queued")
    return row


def _drain_step(peer: Peer, workers: int, batch: int, timeout: float) -> Row:
    params = {**peer.params(), "batch": batch}
    shared = peer.shared()
    try:
        start, results = run_children(f"{peer.name}/drain", params, workers, timeout, shared)
    except StepFailed as exc:
        return _failed(peer, "drain", workers, batch, exc)
    seconds = max(r["end"] for r in results) - start
    executed = [i for r in results for i in r["executed"]]
    ok, detail = peer.check_drain(executed)
    row = _row(peer, "drain", workers, batch, seconds, ok)
    row["per_worker"] = [len(r["executed"]) for r in results]
    if not ok:
        row["error"] = detail
    log(
        f"  {peer.name} drain w={workers} b={batch}: {seconds:.2f} s, {row['rate']:,.0f}/s, "
        f"{detail}, per worker {row['per_worker']}"
    )
    return row


def measure_in(
    db: BenchDB,
    items: int,
    workers: list[int],
    batch: int,
    peers: list[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    notes: dict[str, str] | None = None,
) -> list[Row]:
    """Measure the peers on an existing throwaway database; ``notes`` collects settings."""
    systems, skipped = make_peers(db, items, batch, list(peers or PEER_GROUPS))
    for reason in skipped:
        print(f"skipped {reason}", flush=True)
    rows: list[Row] = []
    for peer in systems:
        log(f"{peer.name}: {items} items")
        peer.setup()
        try:
            if notes is not None:
                notes.update(peer.notes())
            for step in ("enqueue-one", "enqueue-bulk"):
                peer.clear()
                rows.append(_enqueue_step(peer, step, timeout))
            first = rows[-1]["exactly_once"] is True
            for b in peer.drain_batches:
                for w in workers:
                    # The first drain takes over the queue the timed bulk enqueue left.
                    if not first:
                        peer.clear()
                        peer.fill()
                    first = False
                    rows.append(_drain_step(peer, w, b, timeout))
        finally:
            peer.close()
    return rows


def measure_peers(
    db_kind: str,
    server_url: str | None,
    items: int,
    workers: list[int],
    batch: int,
    peers: list[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Row]:
    """Measure the peers on a new throwaway database and return one dict per figure.

    ``db_kind`` is "sqlite" or "postgresql"; ``server_url`` is the PostgreSQL server (None:
    the local default or $NEXUS_BENCH_POSTGRES_URL) or, for SQLite, an optional new file path
    (None: a temporary directory). Each dict: system, step, workers, batch, items, seconds,
    rate (items/s), exactly_once (plus per_worker, error, note where they apply).
    """
    if db_kind not in ("sqlite", "postgresql"):
        raise ValueError(f"db_kind must be 'sqlite' or 'postgresql', not {db_kind!r}")
    with bench_database(server_url or db_kind, tag="peer") as db:
        return measure_in(db, items, workers, batch, peers, timeout)


@contextlib.contextmanager
def _peer_files_removed(db: BenchDB) -> Iterator[None]:
    """Remove the peers' side files when the benchmark made the directory itself."""
    try:
        yield
    finally:
        if db.kind == "sqlite" and db.sqlite_path is not None:
            for suffix in (".huey", ".bare"):
                for extra in ("", "-wal", "-shm"):
                    with contextlib.suppress(OSError):
                        Path(str(db.sqlite_path) + suffix + extra).unlink()


# -------------------------------------------------------------------------------- main


def _int_list(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 1,4")
    return values


def _peer_list(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(names) - set(PEER_GROUPS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown peers {unknown}; choose from {PEER_GROUPS}")
    return names


def _fmt_ok(value: bool | None) -> str:
    return "-" if value is None else ("OK" if value else "FAILED")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--db", default="sqlite", help="sqlite | new file | postgresql | URL")
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--workers", type=_int_list, default=[1, 4], help="e.g. 1,4")
    parser.add_argument(
        "--batch", type=int, default=10, help="pgqueuer batch_size and bare-loop claim batch"
    )
    parser.add_argument("--peers", type=_peer_list, default=list(PEER_GROUPS))
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="s per step")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database")
    args = parser.parse_args(argv)
    if args.items < 1 or args.batch < 1:
        parser.error("--items and --batch must be positive")

    notes: dict[str, str] = {}
    with bench_database(args.db, keep=args.keep, tag="peer") as db:
        cleanup = contextlib.nullcontext() if args.keep else _peer_files_removed(db)
        with cleanup:
            title = "peer queues (huey, pgqueuer, procrastinate, awa, bare drivers)"
            head = header(
                title,
                db,
                {
                    "workload": f"{args.items} no-op items, priorities 0-99, workers "
                    f"{args.workers}, batch {args.batch}, timeout {args.timeout:g} s/step"
                },
            )
            print(head, flush=True)
            rows = measure_in(
                db, args.items, args.workers, args.batch, args.peers, args.timeout, notes
            )
    print()
    for key, value in notes.items():
        print(f"{key + ':':<14} {value}")
    print()
    print(
        table(
            ["system", "step", "workers", "batch", "seconds", "items/s", "exactly-once"],
            [
                [
                    r["system"],
                    r["step"],
                    str(r["workers"]),
                    str(r["batch"]),
                    f"{r['seconds']:.2f}",
                    f"{r['rate']:,.0f}",
                    _fmt_ok(r["exactly_once"]),
                ]
                for r in rows
            ],
            "llrrrrl",
        )
    )
    if args.json:
        payload = {
            "header": head,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "notes": notes,
            "results": rows,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0 if all(r["exactly_once"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
