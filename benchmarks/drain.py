"""Benchmark of the work queue: enqueue, bulk enqueue, multi-process drains, peers, history.

    python benchmarks/drain.py --db sqlite --items 20000 --workers 1 --batch 1
    python benchmarks/drain.py --db postgresql --items 20000 --workers 4 --batch 10
    python benchmarks/drain.py --db sqlite --items 20000 --compare            # + huey, bare
    python benchmarks/drain.py --db postgresql --items 20000 --compare        # + pgqueuer, bare
    python benchmarks/drain.py --db sqlite --items 20000 --history 1000000    # claims at 1M

Everything goes through the ``nexus.work`` API (``WorkQueue(store)``, ``Worker(queue, ...)``)
on throwaway databases (``--db`` as in benchmarks/common.py):

a. ``queue.enqueue`` one call per item for ``--single`` items (status ``pending``) -> items/s
   and p50/p95 per call; then ``set_file_metadata`` one call per write on those items, for a
   plain key and for a work key (``priority``) -> calls/s;
b. ``queue.enqueue_many`` of ``--items`` ready items (priorities 0-99, fixed seed) into a
   fresh database, in calls of ``--enqueue-chunk`` (default: one call) -> items/s; the same
   with 20 % of the items depending on 1-3 earlier ones (``--compare``);
c. drains: for every ``--workers`` x ``--batch`` pair, a fresh database is filled as in b and
   drained by that many spawned processes, each looping ``claim_ready_work(limit=batch)`` +
   ``complete_work_many(...)`` (no-op handler) until nothing is ready -> items/s, and the
   claim/complete calls' p50/p95; with ``--compare`` (or ``--runner``) also through the
   ``Worker`` runner: ``Worker(queue, no-op, concurrency=batch).run(stop_when_idle=True)``
   per process. Every drain is checked for exactly-once: each item has exactly one 'claimed'
   and one 'completed' event in work_history, status completed, the claims the processes
   returned are ``--items`` distinct paths and ``work_stats()`` counts them completed;
d. the same workload as a minimal raw driver loop on a bare ``jobs`` table (skipped with
   ``--compare``, where peers.py's bare loops are measured instead);
e. ``--compare``: ``peers.measure_peers`` in the same run: huey (SQLite) or pgqueuer
   (PostgreSQL) and the bare sqlite3/psycopg loop, printed side by side with nexus, with the
   ratios nexus/peer and nexus/bare;
f. ``--history N``: a database pre-loaded with N completed items (``enqueue_many(...,
   status="completed")`` in calls of ``--history-chunk``), then the same drains on ``--items``
   fresh ready items, reported as a ratio to the empty-table drains; ``work_stats()`` p50/p95
   there and on a fresh database.

Every step has a time limit (``--timeout`` per drain, ``--history-timeout`` for the pre-load).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import multiprocessing
import os
import queue as std_queue
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import (
    BenchDB,
    bench_database,
    fmt_ms,
    header,
    log,
    nexus_version,
    percentile,
    table,
    timed,
)

nexus_version()  # record the code's version before importing it

from nexus.storage.metadata_store import SQLAlchemyMetadataStore  # noqa: E402
from nexus.storage.security import enable_row_level_security  # noqa: E402
from nexus.work import Worker, WorkItem, WorkQueue  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")

# Issue 4 targets.
TARGET_SQLITE_DRAIN = 10_000
TARGET_PG_DRAIN_4 = 8_000
TARGET_BULK_ENQUEUE_SQLITE = 50_000
TARGET_SET_METADATA_SQLITE = 5_000
PEER_NAME = {"sqlite": "huey", "postgresql": "pgqueuer"}
BARE_NAME = {"sqlite": "bare-sqlite3", "postgresql": "bare-psycopg"}
DEFAULT_HISTORY_CHUNK = {"sqlite": 50_000, "postgresql": 2_000}


# ---------------------------------------------------------------------------------- workers


def _profiled(profile_dir: str | None, name: str, fn: Any, *args: Any) -> Any:
    if not profile_dir:
        return fn(*args)
    profiler = cProfile.Profile()
    try:
        return profiler.runcall(fn, *args)
    finally:
        profiler.dump_stats(os.path.join(profile_dir, f"{name}.prof"))


def _nexus_drain(db_url: str, worker_id: str, batch: int, barrier: Any) -> dict[str, Any]:
    """claim_ready_work + complete_work_many until nothing is ready (no-op handler)."""
    claimed: list[str] = []
    claim_ms: list[float] = []
    complete_ms: list[float] = []
    clock = time.perf_counter
    with SQLAlchemyMetadataStore(db_url, run_migrations=False) as store:
        queue = WorkQueue(store)
        queue.work_stats()  # open a connection before the clock starts
        barrier.wait()
        while True:
            t0 = clock()
            items = queue.claim_ready_work(worker_id, limit=batch, lease_seconds=300)
            t1 = clock()
            claim_ms.append((t1 - t0) * 1000)
            if not items:
                break
            # the no-op handler
            queue.complete_work_many([(i["virtual_path"], str(i["lease_token"])) for i in items])
            complete_ms.append((clock() - t1) * 1000)
            claimed += [i["virtual_path"] for i in items]
        end = time.monotonic()
        queue.close()
    return {
        "worker": worker_id,
        "claimed": claimed,
        "end": end,
        "claim_ms": claim_ms,
        "complete_ms": complete_ms,
    }


def _nexus_worker_drain(db_url: str, worker_id: str, batch: int, barrier: Any) -> dict[str, Any]:
    """The Worker runner: Worker(queue, no-op, concurrency=batch).run(stop_when_idle=True)."""
    handled: list[str] = []
    lock = threading.Lock()

    def noop(item: WorkItem) -> None:
        with lock:
            handled.append(item["virtual_path"])

    with SQLAlchemyMetadataStore(db_url, run_migrations=False) as store:
        queue = WorkQueue(store)
        queue.work_stats()  # open a connection before the clock starts
        runner = Worker(queue, noop, worker_id=worker_id, concurrency=batch, lease_seconds=300)
        barrier.wait()
        stats = runner.run(stop_when_idle=True)
        end = time.monotonic()
        queue.close()
    return {
        "worker": worker_id,
        "claimed": handled,
        "end": end,
        "stats": {
            "claimed": stats.claimed,
            "completed": stats.completed,
            "failed": stats.failed,
            "lost": stats.lost,
        },
    }


def _sqlite_bare_drain(path: str, worker_id: str, batch: int, barrier: Any) -> dict[str, Any]:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 30000")
    claim = (
        "UPDATE jobs SET state = 'running', claims = claims + 1, worker = ? "
        "WHERE id IN (SELECT id FROM jobs WHERE state = 'ready' ORDER BY priority, id LIMIT ?) "
        "RETURNING id"
    )
    claimed: list[int] = []
    barrier.wait()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        ids = [row[0] for row in conn.execute(claim, (worker_id, batch)).fetchall()]
        conn.execute("COMMIT")
        if not ids:
            break
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"UPDATE jobs SET state = 'done' WHERE id IN ({','.join('?' * len(ids))})", ids
        )
        conn.execute("COMMIT")
        claimed += ids
    end = time.monotonic()
    conn.close()
    return {"worker": worker_id, "claimed": claimed, "end": end}


def _pg_bare_drain(dsn: str, worker_id: str, batch: int, barrier: Any) -> dict[str, Any]:
    import psycopg

    claim = (
        "UPDATE jobs SET state = 'running', claims = claims + 1, worker = %s "
        "WHERE id IN (SELECT id FROM jobs WHERE state = 'ready' ORDER BY priority, id "
        "LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id"
    )
    claimed: list[int] = []
    with psycopg.connect(dsn) as conn:
        barrier.wait()
        while True:
            with conn.cursor() as cur:
                cur.execute(claim, (worker_id, batch))
                ids = [row[0] for row in cur.fetchall()]
            conn.commit()
            if not ids:
                break
            with conn.cursor() as cur:
                cur.execute("UPDATE jobs SET state = 'done' WHERE id = ANY(%s)", (ids,))
            conn.commit()
            claimed += ids
    return {"worker": worker_id, "claimed": claimed, "end": time.monotonic()}


DRAINS = {
    "nexus": _nexus_drain,
    "nexus-worker": _nexus_worker_drain,
    "sqlite-bare": _sqlite_bare_drain,
    "pg-bare": _pg_bare_drain,
}


class DrainFailed(Exception):
    pass


def _worker_main(
    kind: str,
    target: str,
    worker_id: str,
    batch: int,
    barrier: Any,
    out: Any,
    profile_dir: str | None,
) -> None:
    try:
        result = _profiled(
            profile_dir, f"{kind}-{worker_id}", DRAINS[kind], target, worker_id, batch, barrier
        )
    except BaseException as exc:  # report instead of hanging the parent
        barrier.abort()
        out.put({"worker": worker_id, "error": f"{type(exc).__name__}: {exc}"[:2000]})
        return
    out.put(result)


def _kill(procs: list[Any]) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    for proc in procs:
        proc.join(timeout=10)


def run_drain(
    kind: str, target: str, workers: int, batch: int, profile_dir: str | None, timeout: float
) -> dict[str, Any]:
    """Drain in ``workers`` spawned processes; killed after ``timeout`` s (DrainFailed)."""
    barrier = SPAWN.Barrier(workers + 1)
    out = SPAWN.Queue()
    procs = [
        SPAWN.Process(
            target=_worker_main,
            args=(kind, target, f"w{k}", batch, barrier, out, profile_dir),
            daemon=True,
        )
        for k in range(workers)
    ]
    for proc in procs:
        proc.start()
    results: list[dict[str, Any]] = []
    try:
        barrier.wait(timeout=120)
        start = time.monotonic()
        deadline = start + timeout
        for _ in procs:
            results.append(out.get(timeout=max(0.1, deadline - time.monotonic())))
    except threading.BrokenBarrierError:
        with contextlib.suppress(std_queue.Empty):
            results.append(out.get(timeout=5))
        _kill(procs)
        errors = [r["error"] for r in results if "error" in r] or ["barrier broken"]
        raise DrainFailed(f"{kind} drain failed: {errors}") from None
    except std_queue.Empty:
        _kill(procs)
        raise DrainFailed(f"{kind} drain timed out after {timeout:g} s") from None
    for proc in procs:
        proc.join(timeout=60)
    _kill(procs)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise DrainFailed(f"{kind} drain failed: {errors}")
    end = max(r["end"] for r in results)
    return {
        "seconds": end - start,
        "claimed": [c for r in results for c in r["claimed"]],
        "per_worker": [len(r["claimed"]) for r in results],
        "claim_ms": [x for r in results for x in r.get("claim_ms", [])],
        "complete_ms": [x for r in results for x in r.get("complete_ms", [])],
        "runner_stats": [r["stats"] for r in results if "stats" in r],
        "exitcodes": [p.exitcode for p in procs],
    }


# ---------------------------------------------------------------------------------- steps


@contextlib.contextmanager
def opened(url: str) -> Iterator[WorkQueue]:
    """A store and a WorkQueue over it; both closed afterwards."""
    store = SQLAlchemyMetadataStore(url)
    queue = WorkQueue(store)
    try:
        yield queue
    finally:
        queue.close()
        store.close()


def single_enqueue(queue: WorkQueue, n: int) -> tuple[list[float], list[str]]:
    """queue.enqueue one call per item; per-call durations (ms) and the paths."""
    paths = [f"/single/item-{i:06d}.job" for i in range(n)]
    durations: list[float] = []
    clock = time.perf_counter
    for i, path in enumerate(paths):
        t0 = clock()
        queue.enqueue(path, priority=i % 100, status="pending")
        durations.append((clock() - t0) * 1000)
    return durations, paths


def single_set_metadata(queue: WorkQueue, paths: list[str], key: str) -> float:
    store = queue.store
    start = time.perf_counter()
    for i, path in enumerate(paths):
        store.set_file_metadata(path, key, (i * 7) % 100 if key == "priority" else f"v{i}")
    return time.perf_counter() - start


def bulk_items(
    n: int, seed: int, prefix: str = "/bulk", deps: float = 0.0, status: str | None = None
) -> list[dict[str, Any]]:
    """``n`` items, priorities 0-99; a ``deps`` fraction depends on 1-3 earlier items."""
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    for i in range(n):
        item: dict[str, Any] = {
            "path": f"{prefix}/q{i % 100:02d}/item-{i:07d}.job",
            "priority": rng.randint(0, 99),
        }
        if status is not None:
            item["status"] = status
        if deps and i > 10 and rng.random() < deps:
            refs = sorted({rng.randrange(i) for _ in range(rng.randint(1, 3))})
            item["depends_on"] = [items[j]["path"] for j in refs]
        items.append(item)
    return items


def bulk_enqueue(queue: WorkQueue, items: list[dict[str, Any]], chunk: int) -> float:
    start = time.perf_counter()
    for base in range(0, len(items), chunk):
        queue.enqueue_many(items[base : base + chunk])
    return time.perf_counter() - start


def verify_nexus(
    queue: WorkQueue, prefix: str, n: int, drain: dict[str, Any], completed_before: int
) -> dict[str, Any]:
    """Exactly-once: per path one 'claimed' and one 'completed' event, all completed."""
    like = prefix + "/%"
    with queue.store.engine.connect() as conn:
        per_path = conn.execute(
            sa.text(
                """SELECT p.virtual_path,
                          sum(CASE WHEN h.event = 'claimed' THEN 1 ELSE 0 END) AS claimed,
                          sum(CASE WHEN h.event = 'completed' THEN 1 ELSE 0 END) AS completed
                   FROM file_paths p LEFT JOIN work_history h ON h.path_id = p.path_id
                   WHERE p.virtual_path LIKE :like
                   GROUP BY p.virtual_path"""
            ),
            {"like": like},
        ).all()
        statuses = dict(
            conn.execute(
                sa.text(
                    """SELECT w.status, count(*) FROM work_items w
                       JOIN file_paths p ON p.path_id = w.path_id
                       WHERE p.virtual_path LIKE :like GROUP BY w.status"""
                ),
                {"like": like},
            ).all()
        )
    counted = queue.work_stats()["by_status"]["completed"] - completed_before
    bad = [row for row in per_path if row.claimed != 1 or row.completed != 1]
    claimed = drain["claimed"]
    runner_ok = all(
        s["failed"] == 0 and s["lost"] == 0 and s["completed"] == s["claimed"]
        for s in drain["runner_stats"]
    )
    ok = (
        len(per_path) == n
        and not bad
        and statuses == {"completed": n}
        and len(claimed) == n
        and len(set(claimed)) == n
        and counted == n
        and runner_ok
    )
    return {
        "ok": ok,
        "paths": len(per_path),
        "bad_paths": len(bad),
        "statuses": statuses,
        "claims_returned": len(claimed),
        "distinct_claims": len(set(claimed)),
        "work_stats_completed": counted,
        "runner_stats": drain["runner_stats"],
    }


def stats_timing(queue: WorkQueue, reps: int) -> dict[str, float]:
    queue.work_stats()
    durations, _ = timed(queue.work_stats, reps)
    return {"p50": percentile(durations, 0.5), "p95": percentile(durations, 0.95), "reps": reps}


def prepare_bare(db: BenchDB, n: int, seed: int) -> str:
    """The bare jobs table, filled with the same priorities; returns the drain target."""
    rng = random.Random(seed)
    rows = [(i, rng.randint(0, 99)) for i in range(n)]
    if db.kind == "sqlite":
        assert db.sqlite_path is not None
        path = str(db.sqlite_path) + ".bare"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(
            """CREATE TABLE jobs (id INTEGER PRIMARY KEY, priority INTEGER NOT NULL,
                   state TEXT NOT NULL DEFAULT 'ready', worker TEXT,
                   claims INTEGER NOT NULL DEFAULT 0);
               CREATE INDEX jobs_ready ON jobs (priority, id) WHERE state = 'ready';"""
        )
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO jobs (id, priority) VALUES (?, ?)", rows)
        conn.execute("COMMIT")
        conn.close()
        return path
    import psycopg

    dsn = db.raw_dsn()
    with psycopg.connect(dsn) as conn:
        conn.execute("DROP TABLE IF EXISTS jobs")
        conn.execute(
            """CREATE TABLE jobs (id bigint PRIMARY KEY, priority integer NOT NULL,
                   state text NOT NULL DEFAULT 'ready', worker text,
                   claims integer NOT NULL DEFAULT 0)"""
        )
        conn.execute("CREATE INDEX jobs_ready ON jobs (priority, id) WHERE state = 'ready'")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO jobs (id, priority) VALUES (%s, %s)", rows)
        conn.commit()
        conn.execute("ANALYZE jobs")
        conn.commit()
    return dsn


def verify_bare(db: BenchDB, target: str, n: int, drain: dict[str, Any]) -> dict[str, Any]:
    sql = (
        "SELECT count(*), sum(CASE WHEN state = 'done' AND claims = 1 THEN 1 ELSE 0 END) FROM jobs"
    )
    if db.kind == "sqlite":
        conn = sqlite3.connect(target)
        total, good = conn.execute(sql).fetchone()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(target) as conn:
            total, good = conn.execute(sql).fetchone()
    claimed = drain["claimed"]
    ok = total == n and good == n and len(claimed) == n and len(set(claimed)) == n
    return {"ok": ok, "rows": total, "done_once": good, "claims_returned": len(claimed)}


# ---------------------------------------------------------------------------------- main


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


def _int_list(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 1,4")
    return values


def _is_postgres(text: str) -> bool:
    return text == "postgresql" or text.startswith(("postgresql:", "postgresql+", "postgres:"))


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _analyze(url: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


#: The role the drains run as with --rls: neither superuser nor owner, so the policies bind it.
RLS_ROLE = "nexus_bench_rls"


@contextlib.contextmanager
def _rls_role(admin_url: str | None) -> Iterator[None]:
    """--rls: the drains' role exists on the server for the run, and is dropped afterwards."""
    engine = sa.create_engine(admin_url or "", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {RLS_ROLE}")
            conn.exec_driver_sql(f"CREATE ROLE {RLS_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS")
        yield
    finally:
        with engine.connect() as conn, contextlib.suppress(sa.exc.DBAPIError):
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {RLS_ROLE}")  # fails with --keep
        engine.dispose()


def _rls_drain_url(url: str) -> str:
    """Row-level security on for this database (docs/security.md's grants); the URL of the role
    the drain then runs as."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {RLS_ROLE}"
            )
            conn.exec_driver_sql(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {RLS_ROLE}")
        enable_row_level_security(engine)
    finally:
        engine.dispose()
    return sa.engine.make_url(url).set(username=RLS_ROLE, password=None).render_as_string(False)


def _calls(values: list[float]) -> str:
    return f"{fmt_ms(percentile(values, 0.5))} / {fmt_ms(percentile(values, 0.95))}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--db", default="sqlite", help="sqlite | PATH | postgresql | postgresql://server"
    )
    parser.add_argument("--items", type=int, default=20_000, help="items enqueued and drained")
    parser.add_argument(
        "--workers",
        type=_int_list,
        default=None,
        help="worker processes per drain, e.g. 1,4 (default 1; 1,4 with --compare)",
    )
    parser.add_argument(
        "--batch",
        type=_int_list,
        default=None,
        help="claim_ready_work(limit=...) per call, e.g. 1,10 (default 1; 1,10 with --compare)",
    )
    parser.add_argument(
        "--single",
        type=int,
        default=2_000,
        help="items for one-at-a-time enqueue / set_file_metadata (at most --items)",
    )
    parser.add_argument(
        "--enqueue-chunk",
        type=int,
        default=None,
        help="items per enqueue_many call in the bulk steps (default: all in one call)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also measure huey (SQLite) / pgqueuer (PostgreSQL) and the bare driver loop "
        "(benchmarks/peers.py) in this run, the Worker runner, and bulk enqueue with 20 %% "
        "dependencies; print them side by side",
    )
    parser.add_argument(
        "--runner", action="store_true", help="also drain through the Worker runner"
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="also drain with this many completed items already in the tables (e.g. 1000000)",
    )
    parser.add_argument(
        "--history-chunk", type=int, default=None, help="items per pre-load enqueue_many call"
    )
    parser.add_argument(
        "--history-timeout",
        type=float,
        default=600,
        help="seconds the pre-load may take (it stops there and says how many it loaded)",
    )
    parser.add_argument("--stats-reps", type=int, default=200, help="work_stats() calls timed")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-driver loop")
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="PostgreSQL: run ANALYZE after the bulk enqueue, before each drain",
    )
    parser.add_argument(
        "--rls",
        action="store_true",
        help="PostgreSQL: switch row-level security on for each drain's database and drain as "
        "a role it binds (not the owner): what the policies and the tenant setting cost",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=900, help="seconds a drain may take")
    parser.add_argument(
        "--profile",
        type=Path,
        help="write cProfile stats (bulk enqueue, each drain worker) to this dir",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    args = parser.parse_args(argv)
    workers: list[int] = args.workers or ([1, 4] if args.compare else [1])
    batches: list[int] = args.batch or ([1, 10] if args.compare else [1])
    if args.items < 1 or args.stats_reps < 1:
        parser.error("--items and --stats-reps must be positive")
    if args.rls and not _is_postgres(args.db):
        parser.error("--rls needs PostgreSQL (SQLite has no row-level security)")
    n = args.items
    n_single = max(0, min(args.single, n))
    runner = args.compare or args.runner
    with_bare = not args.no_bare and not args.compare
    profile_dir = None
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        profile_dir = str(args.profile.resolve())
    # Where the extra throwaway databases go (one per drain: every drain starts empty).
    extra = args.db if _is_postgres(args.db) else "sqlite"
    load_start = _loadavg()
    started = time.monotonic()
    ok = True
    out: dict[str, Any] = {"drains": [], "history": []}

    with contextlib.ExitStack() as run:
        db = run.enter_context(bench_database(args.db, keep=args.keep, tag="bench"))
        if args.rls:
            run.enter_context(_rls_role(db.pg_admin_url))
        kind = db.kind
        chunk = args.enqueue_chunk or n
        log(f"queue benchmark on {db.label}")
        with opened(db.url) as q:
            log(f"a. enqueue x{n_single}, set_file_metadata x{n_single} x2")
            single_ms, single_paths = single_enqueue(q, n_single)
            t_meta_plain = single_set_metadata(q, single_paths, "note")
            t_meta_work = single_set_metadata(q, single_paths, "priority")
        t_single = sum(single_ms) / 1000
        t_deps = None
        if args.compare:
            log(f"b. enqueue_many x{n}, 20 % with dependencies (fresh database)")
            with bench_database(extra, keep=args.keep, tag="bench") as ddb, opened(ddb.url) as q:
                t_deps = bulk_enqueue(q, bulk_items(n, args.seed, deps=0.2), chunk)
                deps_stats = q.work_stats()
            out["deps_work_stats"] = deps_stats

        # c. drains, each on a fresh database filled by one timed bulk enqueue
        bulk_seconds: list[float] = []
        stats_fresh: dict[str, float] | None = None
        kinds = ["nexus"] + (["nexus-worker"] if runner else [])
        for drain_kind in kinds:
            for b in batches:
                for w in workers:
                    case: dict[str, Any] = {"kind": drain_kind, "workers": w, "batch": b}
                    out["drains"].append(case)
                    with bench_database(extra, keep=args.keep, tag="bench") as ddb:
                        with opened(ddb.url) as q:
                            seconds = _profiled(
                                profile_dir,
                                f"bulk-{drain_kind}-w{w}-b{b}",
                                bulk_enqueue,
                                q,
                                bulk_items(n, args.seed),
                                chunk,
                            )
                            bulk_seconds.append(seconds)
                            if stats_fresh is None:
                                stats_fresh = stats_timing(q, args.stats_reps)
                        if args.analyze and kind == "postgresql":
                            _analyze(ddb.url)
                        drain_url = _rls_drain_url(ddb.url) if args.rls else ddb.url
                        log(f"c. {drain_kind}: {w} process(es), batch {b}")
                        try:
                            drain = run_drain(
                                drain_kind, drain_url, w, b, profile_dir, args.timeout
                            )
                        except DrainFailed as exc:
                            log(f"   FAILED: {exc}")
                            case["error"] = str(exc)[:1000]
                            ok = False
                            continue
                        with opened(ddb.url) as q:
                            check = verify_nexus(q, "/bulk", n, drain, 0)
                    ok = ok and check["ok"]
                    case.update(
                        seconds=drain["seconds"],
                        rate=rate(n, drain["seconds"]),
                        per_worker=drain["per_worker"],
                        claim_ms=drain["claim_ms"],
                        complete_ms=drain["complete_ms"],
                        exactly_once=check,
                    )
                    log(f"   {case['rate']:,.0f} items/s, exactly-once {check['ok']}")

        # d. the bare loop of this script (with --compare peers.py measures it instead)
        bare_cases: list[dict[str, Any]] = []
        if with_bare:
            for b in batches:
                for w in workers:
                    log(f"d. bare-driver loop: {w} process(es), batch {b}")
                    target = prepare_bare(db, n, args.seed)
                    bare_kind = "sqlite-bare" if kind == "sqlite" else "pg-bare"
                    bare = run_drain(bare_kind, target, w, b, profile_dir, args.timeout)
                    bare_check = verify_bare(db, target, n, bare)
                    ok = ok and bare_check["ok"]
                    bare_cases.append(
                        {
                            "workers": w,
                            "batch": b,
                            "seconds": bare["seconds"],
                            "rate": rate(n, bare["seconds"]),
                            "per_worker": bare["per_worker"],
                            "exactly_once": bare_check,
                        }
                    )
                    if kind == "sqlite":
                        for suffix in ("", "-wal", "-shm"):
                            if os.path.exists(target + suffix) and not args.keep:
                                os.remove(target + suffix)

        # f. history: the same loop drains with N completed items in the tables
        history: dict[str, Any] = {}
        if args.history:
            hchunk = args.history_chunk or DEFAULT_HISTORY_CHUNK[kind]
            with bench_database(extra, keep=args.keep, tag="hist") as hdb:
                with opened(hdb.url) as q:
                    log(f"f. pre-loading {args.history:,} completed items (calls of {hchunk:,})")
                    loaded, t0 = 0, time.perf_counter()
                    deadline = t0 + args.history_timeout
                    while loaded < args.history and time.perf_counter() < deadline:
                        size = min(hchunk, args.history - loaded)
                        q.enqueue_many(
                            {
                                "path": f"/history/h{(loaded + i) % 1000:03d}/"
                                f"item-{loaded + i:08d}.job",
                                "status": "completed",
                                "priority": (loaded + i) % 100,
                            }
                            for i in range(size)
                        )
                        loaded += size
                        if loaded % (hchunk * 10) == 0:
                            log(f"   {loaded:,} ({rate(loaded, time.perf_counter() - t0):,.0f}/s)")
                    t_load = time.perf_counter() - t0
                    history.update(loaded=loaded, seconds=t_load, chunk=hchunk)
                    history["stats"] = stats_timing(q, args.stats_reps)
                k = 0
                for b in batches:
                    for w in workers:
                        prefix = f"/bulk/d{k}"
                        k += 1
                        case = {"workers": w, "batch": b}
                        out["history"].append(case)
                        with opened(hdb.url) as q:
                            bulk_enqueue(q, bulk_items(n, args.seed, prefix=prefix), chunk)
                            before = q.work_stats()["by_status"]["completed"]
                        if args.analyze and kind == "postgresql":
                            _analyze(hdb.url)
                        log(f"f. drain with {loaded:,} completed: {w} process(es), batch {b}")
                        try:
                            drain = run_drain("nexus", hdb.url, w, b, profile_dir, args.timeout)
                        except DrainFailed as exc:
                            log(f"   FAILED: {exc}")
                            case["error"] = str(exc)[:1000]
                            ok = False
                            continue
                        with opened(hdb.url) as q:
                            check = verify_nexus(q, prefix, n, drain, before)
                        ok = ok and check["ok"]
                        case.update(
                            seconds=drain["seconds"],
                            rate=rate(n, drain["seconds"]),
                            per_worker=drain["per_worker"],
                            claim_ms=drain["claim_ms"],
                            complete_ms=drain["complete_ms"],
                            exactly_once=check,
                        )
                        log(f"   {case['rate']:,.0f} items/s, exactly-once {check['ok']}")
            out["history_load"] = history

        # e. the peers, in the same run
        peer_rows: list[dict[str, Any]] = []
        if args.compare:
            from peers import measure_peers

            server = args.db if kind == "postgresql" and args.db != "postgresql" else None
            top = max(batches)
            log(f"e. peers (benchmarks/peers.py), batch {top}")
            # Only the peers this report compares with (peers.py also has procrastinate, awa).
            peer_rows = measure_peers(
                kind, server, n, workers, top, [PEER_NAME[kind], "bare"], args.timeout
            )
            for b in batches:
                wanted = []
                if b not in (1, top):
                    wanted.append("bare")
                if kind == "postgresql" and b != top:
                    wanted.append("pgqueuer")
                if wanted:
                    log(f"e. peers {wanted}, batch {b}")
                    more = measure_peers(kind, server, n, workers, b, wanted, args.timeout)
                    peer_rows += [r for r in more if r["step"] == "drain" and r["batch"] == b]
            ok = ok and all(r["exactly_once"] is not False for r in peer_rows)
        out["peers"] = peer_rows
        elapsed = time.monotonic() - started

        # ------------------------------------------------------------------ report
        sqlite_db = kind == "sqlite"

        def mark(good: bool | None, value: float, target: float) -> str:
            if good is None:
                return ""
            return "ok" if good else f"MISS ({value / target:.0%} of target)"

        bulk_rate = rate(n, percentile(bulk_seconds, 0.5)) if bulk_seconds else None
        single_rate = rate(n_single, t_single)
        meta_plain = rate(n_single, t_meta_plain)
        meta_work = rate(n_single, t_meta_work)
        chunk_note = "one call" if chunk >= n else f"calls of {chunk:,}"
        rows = [
            ["enqueue (one call per item)", f"{n_single:,}", f"{t_single:.2f}",
             fmt_rate(single_rate), "-", ""],
            ["set_file_metadata, plain key", f"{n_single:,}", f"{t_meta_plain:.2f}",
             fmt_rate(meta_plain), f">= {TARGET_SET_METADATA_SQLITE:,}" if sqlite_db else "-",
             mark(meta_plain >= TARGET_SET_METADATA_SQLITE if sqlite_db else None, meta_plain,
                  TARGET_SET_METADATA_SQLITE)],
            ["set_file_metadata, priority", f"{n_single:,}", f"{t_meta_work:.2f}",
             fmt_rate(meta_work), f">= {TARGET_SET_METADATA_SQLITE:,}" if sqlite_db else "-",
             mark(meta_work >= TARGET_SET_METADATA_SQLITE if sqlite_db else None, meta_work,
                  TARGET_SET_METADATA_SQLITE)],
        ]  # fmt: skip
        if bulk_seconds:
            rows.append(
                [f"enqueue_many ({chunk_note}), p50 of {len(bulk_seconds)}", f"{n:,}",
                 f"{percentile(bulk_seconds, 0.5):.2f}", fmt_rate(bulk_rate),
                 f">= {TARGET_BULK_ENQUEUE_SQLITE:,}" if sqlite_db else "-",
                 mark((bulk_rate or 0) >= TARGET_BULK_ENQUEUE_SQLITE if sqlite_db else None,
                      bulk_rate or 0, TARGET_BULK_ENQUEUE_SQLITE)]
            )  # fmt: skip
        if t_deps is not None:
            rows.append(
                [f"enqueue_many ({chunk_note}), 20 % with dependencies", f"{n:,}",
                 f"{t_deps:.2f}", fmt_rate(rate(n, t_deps)), "-", ""]
            )  # fmt: skip
        for case in out["drains"]:
            w, b = case["workers"], case["batch"]
            label = "drain nexus" if case["kind"] == "nexus" else "drain nexus Worker runner"
            label = f"{label}: {w} proc, batch {b}"
            if "rate" not in case:
                reason = case.get("skipped") or case.get("error", "")
                rows.append([label, f"{n:,}", "-", "-", "-", reason[:90]])
                continue
            if sqlite_db:
                target, tval = f">= {TARGET_SQLITE_DRAIN:,}", TARGET_SQLITE_DRAIN
            elif w >= 4:
                target, tval = f">= {TARGET_PG_DRAIN_4:,} (4 proc)", TARGET_PG_DRAIN_4
            else:
                target, tval = "-", 0
            good = case["rate"] >= tval if tval else None
            rows.append([label, f"{n:,}", f"{case['seconds']:.2f}", fmt_rate(case["rate"]),
                         target, mark(good, case["rate"], tval)])  # fmt: skip
        for bare_case in bare_cases:
            nexus_rate = next(
                (c.get("rate") for c in out["drains"] if c["kind"] == "nexus"
                 and c["workers"] == bare_case["workers"] and c["batch"] == bare_case["batch"]),
                None,
            )  # fmt: skip
            rows.append(
                [f"drain bare {'sqlite3' if sqlite_db else 'psycopg'}: "
                 f"{bare_case['workers']} proc, batch {bare_case['batch']}", f"{n:,}",
                 f"{bare_case['seconds']:.2f}", fmt_rate(bare_case["rate"]), "-",
                 f"nexus = {nexus_rate / bare_case['rate']:.0%} of bare" if nexus_rate else ""]
            )  # fmt: skip
        extra_head = {
            "workload": f"{n:,} items, workers {workers}, claim batch {batches}, no-op "
            f"handler, spawn, a fresh database per drain"
            + ("; ANALYZE before each drain" if args.analyze and not sqlite_db else "")
            + ("; row-level security on, drains as a non-owner role" if args.rls else ""),
            "load start": f"{load_start} (load average 1/5/15 min when the run began)",
            "elapsed": f"{elapsed:.0f} s",
        }
        print(header("nexus queue benchmark", db, extra_head))
        print()
        print(table(["step", "items", "seconds", "items/s", "target", ""], rows, "lrrrll"))
        print()

        # per-call latencies
        call_rows = [["enqueue()", f"{len(single_ms):,}", _calls(single_ms)]]
        if stats_fresh:
            call_rows.append(
                [f"work_stats(), {n:,} ready items", str(stats_fresh["reps"]),
                 f"{fmt_ms(stats_fresh['p50'])} / {fmt_ms(stats_fresh['p95'])}"]
            )  # fmt: skip
        if history.get("stats"):
            hs = history["stats"]
            call_rows.append(
                [f"work_stats(), {history['loaded']:,} completed items", str(hs["reps"]),
                 f"{fmt_ms(hs['p50'])} / {fmt_ms(hs['p95'])}"]
            )  # fmt: skip
        for label, cases in (("", out["drains"]), (" [history]", out["history"])):
            for case in cases:
                if case.get("kind", "nexus") != "nexus" or "claim_ms" not in case:
                    continue
                w, b = case["workers"], case["batch"]
                call_rows.append(
                    [f"claim_ready_work(limit={b}), {w} proc{label}",
                     f"{len(case['claim_ms']):,}", _calls(case["claim_ms"])]
                )  # fmt: skip
                call_rows.append(
                    [f"complete_work_many({b} items), {w} proc{label}",
                     f"{len(case['complete_ms']):,}", _calls(case["complete_ms"])]
                )  # fmt: skip
        print(table(["call", "calls", "p50 / p95 ms"], call_rows, "lrr"))
        print()

        if args.compare:
            print(compare_table(kind, n, n_single, workers, batches, out, peer_rows,
                                single_rate, bulk_rate, t_deps))  # fmt: skip
            print()
        if args.history:
            print(history_table(n, workers, batches, out, history))
            print()

        for case in out["drains"] + [dict(c, kind="nexus [history]") for c in out["history"]]:
            check = case.get("exactly_once")
            if not check:
                continue
            tag = "nexus" if case["kind"] == "nexus" else case["kind"]
            print(
                f"exactly-once ({tag}): {'OK' if check['ok'] else 'FAILED'} -- "
                f"{check['paths']:,} items, {check['bad_paths']} with claimed/completed events "
                f"!= 1, statuses {check['statuses']}, {check['claims_returned']:,} claims "
                f"returned ({check['distinct_claims']:,} distinct), work_stats completed "
                f"+{check['work_stats_completed']:,}, {case['workers']} proc, batch "
                f"{case['batch']}, per worker {case['per_worker']}"
            )
        for bare_case in bare_cases:
            bc = bare_case["exactly_once"]
            print(
                f"exactly-once (bare):  {'OK' if bc['ok'] else 'FAILED'} -- "
                f"{bc['done_once']:,}/{bc['rows']:,} rows done with one claim, "
                f"{bare_case['workers']} proc, batch {bare_case['batch']}, "
                f"per worker {bare_case['per_worker']}"
            )
        for r in peer_rows:
            if r["step"] == "drain":
                print(
                    f"exactly-once ({r['system']}): "
                    f"{'OK' if r['exactly_once'] else 'FAILED'} -- {r['workers']} proc, batch "
                    f"{r['batch']}, per worker {r.get('per_worker')}"
                    + (f", {r['error']}" if r.get("error") else "")
                )
        print(f"load avg at the end: {_loadavg()}")
        if args.json:
            for case in out["drains"] + out["history"]:
                for key in ("claim_ms", "complete_ms"):
                    if key in case:
                        values = case.pop(key)
                        case[key + "_p50_p95"] = [
                            percentile(values, 0.5),
                            percentile(values, 0.95),
                        ]
            args.json.write_text(
                json.dumps(
                    {
                        "db": kind,
                        "items": n,
                        "workers": workers,
                        "batches": batches,
                        "analyze": args.analyze,
                        "single": {
                            "n": n_single,
                            "enqueue_per_s": single_rate,
                            "enqueue_ms_p50_p95": [
                                percentile(single_ms, 0.5),
                                percentile(single_ms, 0.95),
                            ],
                            "set_plain_per_s": meta_plain,
                            "set_priority_per_s": meta_work,
                        },
                        "bulk_enqueue_seconds": bulk_seconds,
                        "bulk_deps_seconds": t_deps,
                        "work_stats_fresh": stats_fresh,
                        **out,
                    },
                    indent=1,
                    default=str,
                )
            )
    return 0 if ok else 1


def compare_table(
    kind: str,
    n: int,
    n_single: int,
    workers: list[int],
    batches: list[int],
    out: dict[str, Any],
    peer_rows: list[dict[str, Any]],
    single_rate: float,
    bulk_rate: float | None,
    t_deps: float | None,
) -> str:
    peer, bare = PEER_NAME[kind], BARE_NAME[kind]

    def peer_rate(system: str, step: str, w: int = 1, b: int | None = None) -> tuple[Any, str]:
        for r in peer_rows:
            if (
                r["system"] == system
                and r["step"] == step
                and (step != "drain" or (r["workers"] == w and r["batch"] == b))
            ):
                return (r["rate"] if r["exactly_once"] is not False else None), ""
        if system == "huey" and step == "drain" and b != 1:
            # huey dequeues one task at a time: its only figure is batch 1.
            value, _ = peer_rate(system, step, w, 1)
            return value, "*"
        return None, ""

    def nexus_rate(drain_kind: str, w: int, b: int) -> float | None:
        for c in out["drains"]:
            if c["kind"] == drain_kind and c["workers"] == w and c["batch"] == b:
                return c.get("rate")
        return None

    rows: list[list[str]] = []
    for b in batches:
        for w in workers:
            loop, runner = nexus_rate("nexus", w, b), nexus_rate("nexus-worker", w, b)
            p, star = peer_rate(peer, "drain", w, b)
            br, _ = peer_rate(bare, "drain", w, b)
            rows.append(
                [f"drain, {w} proc, batch {b}", fmt_rate(loop), fmt_rate(runner),
                 fmt_rate(p) + star, fmt_rate(br), fmt_ratio(loop, p), fmt_ratio(loop, br),
                 fmt_ratio(runner, p)]
            )  # fmt: skip
    p1, _ = peer_rate(peer, "enqueue-one")
    b1, _ = peer_rate(bare, "enqueue-one")
    rows.append(
        [f"enqueue one by one (nexus {n_single:,}, peers {n:,})", fmt_rate(single_rate), "-",
         fmt_rate(p1), fmt_rate(b1), fmt_ratio(single_rate, p1), fmt_ratio(single_rate, b1),
         "-"]
    )  # fmt: skip
    pb, _ = peer_rate(peer, "enqueue-bulk")
    bb, _ = peer_rate(bare, "enqueue-bulk")
    rows.append(
        [f"bulk enqueue {n:,}, no dependencies", fmt_rate(bulk_rate), "-", fmt_rate(pb),
         fmt_rate(bb), fmt_ratio(bulk_rate, pb), fmt_ratio(bulk_rate, bb), "-"]
    )  # fmt: skip
    deps_rate = rate(n, t_deps) if t_deps else None
    rows.append(
        [f"bulk enqueue {n:,}, 20 % with dependencies", fmt_rate(deps_rate), "-",
         "- (no deps)", "- (no deps)", "-", "-", "-"]
    )  # fmt: skip
    text = table(
        ["items/s, same run", "nexus loop", "nexus Worker", peer, bare, "loop/peer",
         "loop/bare", "Worker/peer"],
        rows,
        "lrrrrrrr",
    )  # fmt: skip
    notes = [
        "nexus loop = claim_ready_work(limit=batch) + complete_work_many per process; "
        "nexus Worker = Worker(queue, no-op, concurrency=batch).run(stop_when_idle=True)",
    ]
    if kind == "sqlite":
        notes.append("* huey dequeues one task at a time: its batch-1 figure")
    else:
        notes.append("pgqueuer: QueueManager(batch_size=batch), see benchmarks/peers.py")
    return text + "\n" + "\n".join(notes)


def history_table(
    n: int, workers: list[int], batches: list[int], out: dict[str, Any], history: dict[str, Any]
) -> str:
    loaded = history.get("loaded", 0)
    rows: list[list[str]] = []
    for case in out["history"]:
        w, b = case["workers"], case["batch"]
        empty = next(
            (c for c in out["drains"] if c["kind"] == "nexus" and c["workers"] == w
             and c["batch"] == b), {},
        )  # fmt: skip
        rows.append(
            [f"drain, {w} proc, batch {b}", fmt_rate(empty.get("rate")),
             fmt_rate(case.get("rate")), fmt_ratio(case.get("rate"), empty.get("rate")),
             _calls(empty["claim_ms"]) if "claim_ms" in empty else "-",
             _calls(case["claim_ms"]) if "claim_ms" in case else case.get("error", "-")[:60]]
        )  # fmt: skip
    load = (
        f"pre-load: {loaded:,} completed items by enqueue_many(status='completed') in calls of "
        f"{history.get('chunk', 0):,}, {history.get('seconds', 0):.0f} s "
        f"({rate(loaded, history.get('seconds', 0)):,.0f} items/s)"
    )
    return (
        table(
            [
                "items/s",
                "empty tables",
                f"{loaded:,} completed",
                "ratio",
                "claim p50/p95 ms empty",
                f"claim p50/p95 ms {loaded:,}",
            ],
            rows,
            "lrrrrr",
        )
        + "\n"
        + load
    )


if __name__ == "__main__":
    raise SystemExit(main())
