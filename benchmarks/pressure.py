"""The work queue under pressure on PostgreSQL: a held transaction, then snapshot-holding readers.

    python benchmarks/pressure.py                       # the issue-13 run: ~4.5 minutes
    python benchmarks/pressure.py --quick               # a few seconds, tiny rate (smoke test)
    python benchmarks/pressure.py --scale 0.25 --json pressure.json

It mirrors the phases of the public PostgreSQL job-queue benchmark
(hardbyte/postgresql-job-queue-benchmarking, ``bench_harness/phases.py`` and ``hooks.py``):
its ``idle_in_tx_saturation`` scenario (clean -> idle-in-tx -> recovery) followed by the
readers phase of its ``active_readers`` scenario, at this issue's durations. On a throwaway
database (``--db`` as in benchmarks/common.py; PostgreSQL only) these processes run at once:

* a **producer** enqueuing ``--rate`` items/s (default 2,000): every ``--tick`` seconds one
  ``enqueue_many`` call with the items due by then (paced on the cumulative count, so a slow
  call is caught up, at most one second's worth per call);
* ``--workers`` (2) **worker processes**, each a claim loop in batches of ``--batch`` (10):
  ``claim_ready_work(limit=10)`` then ``complete_work_many`` (no-op handler), waiting with
  ``wait_for_ready_work`` when nothing is ready (``--mode claim``, the default: the documented
  claim loop and benchmarks/drain.py's drain); ``--mode combined`` completes and claims in one
  ``complete_and_claim`` call, as the ``Worker`` runner does;
* a **vacuum** process running ``VACUUM (ANALYZE)`` on the database every ``--vacuum-every``
  seconds (10) through every phase. This machine's server runs with ``autovacuum = off`` (the
  script prints the setting), so the process stands in for autovacuum; with autovacuum on it
  still runs, as a floor;
* the **XID holder** (held phase only): ``BEGIN; SELECT txid_current();`` then idle in that
  transaction, so the xmin horizon is pinned and vacuum cannot reclaim anything dead since;
* the **readers** (readers phase only): ``--readers`` (4) connections, each one
  ``REPEATABLE READ`` transaction held for the whole phase (as the harness's readers: they
  never commit), scanning ``SELECT count(*)`` of each of the five work views, then sleeping
  ``--reader-pause`` (0.1 s), over and over. ``--reader-tx scan`` gives each round its own
  transaction instead.

Phases (seconds; ``--scale`` multiplies them and the vacuum interval, kept >= 1 s): warmup 5 (not
reported against the targets), clean 40, held 120, recovery 40, readers 60; then the producer
stops and the workers drain what is left (at most ``--drain-timeout`` s), and the run is
checked for exactly-once: every enqueued path is a work item; every completed one has exactly
one ``claimed`` and one ``completed`` event in ``work_history``; the rest (only when the drain
ran out of time: a machine that cannot keep up) are ``ready`` and were never claimed; the
completions the workers counted equal the completed items. The exit code is 1 if that fails
(a run that did not drain says so, with how many items it left).

Per phase it reports: completed/s (the completions committed in the phase), the enqueue rate
achieved, the claim call's p50/p95 (every call, including those that found nothing), the
completion call's p50/p95, the end-to-end latency (enqueue call start to completion commit)
p50/p95, the backlog (enqueued - completed, from shared counters sampled every 0.25 s) at the
phase's end and how long after the phase's end it took to fall back to the clean level (the
clean phase's p95 backlog, at least two ticks of the producer); the ratios to the clean phase
and whether the issue-13 targets hold; ``VACUUM`` durations; and, for the profile, at each
phase's end ``n_live_tup``/``n_dead_tup`` of the queue's tables, index scans and index tuples
read per scan on ``work_items`` in the phase, and (unless ``--no-explain``) an
``EXPLAIN (ANALYZE, BUFFERS)`` of the claim's row picking (the ready-index scan ``FOR UPDATE
SKIP LOCKED LIMIT batch``, in a transaction rolled back) and of the completion statement (as
``complete_work_many`` sends it, for items in progress but with a wrong token, so it changes
nothing) a few seconds before the phase ends.

Everything is bounded in time (``--timeout``; every child also stops at a hard deadline) and
talks only to the database server given; Ctrl-C or an error stops the children and drops the
database (unless ``--keep``).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import json
import multiprocessing
import queue as std_queue
import signal
import sys
import threading
import time
from typing import Any

import sqlalchemy as sa
from common import (
    bench_database,
    fmt_ms,
    header,
    log,
    nexus_version,
    percentile,
    table,
)

nexus_version()  # record the code's version before importing it

from nexus.storage.metadata_store import SQLAlchemyMetadataStore  # noqa: E402
from nexus.work import WorkQueue  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")

PHASES = ("warmup", "clean", "held", "recovery", "readers")
DEFAULT_SECONDS = {"warmup": 5.0, "clean": 40.0, "held": 120.0, "recovery": 40.0, "readers": 60.0}
VIEWS = (
    "ready_work_items",
    "pending_work_items",
    "blocked_work_items",
    "work_by_priority",
    "in_progress_work",
)
PREFIX = "/pressure/"

# Issue 13 targets.
TARGET_HELD_RATIO = 0.70
TARGET_HELD_P95_RATIO = 3.0
TARGET_DRAIN_SECONDS = 30.0
TARGET_READERS_RATIO = 0.70


# ------------------------------------------------------------------------------- children


def _child_setup() -> None:
    # Ctrl-C reaches the whole process group: the parent alone decides how children stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _phase_index(bounds: list[float], t0: float, now: float) -> int:
    """0..len(PHASES)-1 for the phases, len(PHASES) for the drain after them."""
    return bisect.bisect_right(bounds, now - t0)


def _wait_start(start: Any, t0: Any, deadline: float) -> float:
    while not start.wait(0.5):
        if time.time() > deadline:
            raise TimeoutError("never started")
    return float(t0.value)


def _producer(
    url: str,
    rate: float,
    tick: float,
    bounds: list[float],
    ready: Any,
    start: Any,
    t0v: Any,
    stop: Any,
    enqueued: Any,
    deadline: float,
    out: Any,
) -> None:
    _child_setup()
    try:
        calls: list[list[float]] = [[] for _ in range(len(PHASES) + 1)]
        counts = [0] * (len(PHASES) + 1)
        seq = 0
        with SQLAlchemyMetadataStore(url, run_migrations=False) as store:
            queue = WorkQueue(store)
            queue.work_stats()  # connect before the clock starts
            ready.put("producer")
            t0 = _wait_start(start, t0v, deadline)
            while not stop.is_set() and time.time() < deadline:
                now = time.time()
                due = int(rate * (now - t0)) - seq
                if due > 0:
                    due = min(due, max(1, int(rate)))  # catch up at most 1 s per call
                    stamp = int(now * 1000)
                    items = [{"path": f"{PREFIX}{stamp}-{seq + k:09d}"} for k in range(due)]
                    c0 = time.perf_counter()
                    queue.enqueue_many(items)
                    ms = (time.perf_counter() - c0) * 1000
                    seq += due
                    with enqueued.get_lock():
                        enqueued.value += due
                    phase = _phase_index(bounds, t0, time.time())
                    calls[phase].append(ms)
                    counts[phase] += due
                next_at = t0 + (int((time.time() - t0) / tick) + 1) * tick
                stop.wait(max(0.0, next_at - time.time()))
            queue.close()
        out.put({"role": "producer", "enqueued": seq, "counts": counts, "call_ms": calls})
    except BaseException as exc:  # report instead of hanging the parent
        out.put({"role": "producer", "error": f"{type(exc).__name__}: {exc}"[:2000]})


def _worker(
    url: str,
    worker_id: str,
    batch: int,
    mode: str,
    bounds: list[float],
    ready: Any,
    start: Any,
    t0v: Any,
    stop: Any,
    completed: Any,
    deadline: float,
    out: Any,
) -> None:
    _child_setup()
    n = len(PHASES) + 1
    claim_ms: list[list[float]] = [[] for _ in range(n)]
    complete_ms: list[list[float]] = [[] for _ in range(n)]
    e2e_ms: list[list[float]] = [[] for _ in range(n)]
    empty = [0] * n
    done = [0] * n
    clock = time.perf_counter
    try:
        with SQLAlchemyMetadataStore(url, run_migrations=False) as store:
            queue = WorkQueue(store)
            queue.work_stats()
            ready.put(worker_id)
            t0 = _wait_start(start, t0v, deadline)
            held: list[dict[str, Any]] = []  # claimed, not yet completed (combined mode)

            def finished(items: list[dict[str, Any]], at: float) -> None:
                phase = _phase_index(bounds, t0, at)
                done[phase] += len(items)
                with completed.get_lock():
                    completed.value += len(items)
                for item in items:
                    stamp = int(item["virtual_path"][len(PREFIX) :].split("-", 1)[0])
                    e2e_ms[phase].append(at * 1000 - stamp)

            while time.time() < deadline:
                if stop.is_set() and held:  # combined mode: finish what is held, then stop
                    queue.complete_work_many(
                        [(i["virtual_path"], str(i["lease_token"])) for i in held]
                    )
                    finished(held, time.time())
                    held = []
                if stop.is_set():
                    break
                phase = _phase_index(bounds, t0, time.time())
                c0 = clock()
                if mode == "combined" and held:
                    _, items = queue.complete_and_claim(
                        [(i["virtual_path"], str(i["lease_token"])) for i in held],
                        worker_id,
                        limit=batch,
                        lease_seconds=300,
                    )
                    claim_ms[phase].append((clock() - c0) * 1000)
                    finished(held, time.time())
                    held = []
                else:
                    items = queue.claim_ready_work(worker_id, limit=batch, lease_seconds=300)
                    claim_ms[phase].append((clock() - c0) * 1000)
                if not items:
                    empty[phase] += 1
                    if stop.is_set():
                        break
                    queue.wait_for_ready_work(timeout=0.2)
                    continue
                if mode == "combined":
                    held = list(items)
                    continue
                c1 = clock()
                queue.complete_work_many(
                    [(i["virtual_path"], str(i["lease_token"])) for i in items]
                )
                complete_ms[phase].append((clock() - c1) * 1000)
                finished(list(items), time.time())
            queue.close()
        out.put(
            {
                "role": worker_id,
                "claim_ms": claim_ms,
                "complete_ms": complete_ms,
                "e2e_ms": e2e_ms,
                "empty": empty,
                "done": done,
            }
        )
    except BaseException as exc:
        out.put({"role": worker_id, "error": f"{type(exc).__name__}: {exc}"[:2000]})


def _vacuum(
    dsn: str,
    every: float,
    bounds: list[float],
    ready: Any,
    start: Any,
    t0v: Any,
    stop: Any,
    deadline: float,
    out: Any,
) -> None:
    _child_setup()
    import psycopg

    runs: list[tuple[int, float]] = []
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            ready.put("vacuum")
            t0 = _wait_start(start, t0v, deadline)
            k = 1
            while not stop.wait(max(0.0, t0 + k * every - time.time())):
                if time.time() > deadline:
                    break
                c0 = time.perf_counter()
                conn.execute("VACUUM (ANALYZE)")
                runs.append(
                    (_phase_index(bounds, t0, time.time()), (time.perf_counter() - c0) * 1000)
                )
                k = max(k + 1, int((time.time() - t0) / every) + 1)
        out.put({"role": "vacuum", "runs": runs})
    except BaseException as exc:
        out.put({"role": "vacuum", "error": f"{type(exc).__name__}: {exc}"[:2000]})


def _holder(dsn: str, ready: Any, begin: Any, stop: Any, deadline: float, out: Any) -> None:
    """BEGIN; SELECT txid_current(); then idle in the transaction until told to stop."""
    _child_setup()
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=False) as conn:
            ready.put("holder")
            while not begin.wait(0.5):
                if time.time() > deadline or stop.is_set():
                    out.put({"role": "holder", "xid": None})
                    return
            xid = conn.execute("SELECT txid_current()").fetchone()[0]
            out.put({"role": "holder-began", "xid": int(xid), "at": time.time()})
            while not stop.wait(0.5):
                if time.time() > deadline:
                    break
            conn.rollback()
        out.put({"role": "holder", "xid": int(xid)})
    except BaseException as exc:
        out.put({"role": "holder", "error": f"{type(exc).__name__}: {exc}"[:2000]})


def _readers(
    dsn: str,
    count: int,
    pause: float,
    tx: str,
    statements: list[str],
    ready: Any,
    begin: Any,
    stop: Any,
    deadline: float,
    out: Any,
) -> None:
    """``count`` REPEATABLE READ connections scanning the views until told to stop."""
    _child_setup()
    import psycopg

    scans: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    conns = []
    try:
        for _ in range(count):
            conns.append(psycopg.connect(dsn, autocommit=False))
        ready.put("readers")
        while not begin.wait(0.5):
            if time.time() > deadline or stop.is_set():
                out.put({"role": "readers", "scans": [], "errors": []})
                return

        def loop(conn: Any) -> None:
            mine: list[float] = []
            try:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                while not stop.is_set() and time.time() < deadline:
                    c0 = time.perf_counter()
                    for sql in statements:
                        conn.execute(sql).fetchall()
                    mine.append((time.perf_counter() - c0) * 1000)
                    if tx == "scan":
                        conn.commit()
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    stop.wait(pause)
                conn.rollback()
            except Exception as exc:  # keep the others scanning; report it
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:500])
            with lock:
                scans.extend(mine)

        threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in conns]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(1.0, deadline - time.time()))
        out.put({"role": "readers", "scans": scans, "errors": errors})
    except BaseException as exc:
        out.put({"role": "readers", "error": f"{type(exc).__name__}: {exc}"[:2000]})
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()


# --------------------------------------------------------------------------- observation


def _table_stats(conn: Any) -> dict[str, Any]:
    tables = {
        row[0]: {"live": int(row[1]), "dead": int(row[2]), "bytes": int(row[3])}
        for row in conn.execute(
            "SELECT relname, n_live_tup, n_dead_tup, pg_total_relation_size(relid) "
            "FROM pg_stat_user_tables"
        ).fetchall()
    }
    indexes = {
        row[0]: {"scans": int(row[1]), "tup_read": int(row[2]), "bytes": int(row[3])}
        for row in conn.execute(
            "SELECT indexrelname, idx_scan, idx_tup_read, pg_relation_size(indexrelid) "
            "FROM pg_stat_user_indexes WHERE relname = 'work_items'"
        ).fetchall()
    }
    return {"tables": tables, "indexes": indexes}


def _explain_pick(conn: Any, tenant: str, batch: int) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of the claim's row picking, rolled back."""
    sql = """
        EXPLAIN (ANALYZE, BUFFERS)
        SELECT w.path_id FROM work_items w
        WHERE w.status = 'ready' AND w.unresolved_count = 0
          AND (w.run_after IS NULL OR w.run_after <= now())
          AND w.tenant_id = %s
        ORDER BY w.priority ASC NULLS LAST, w.created_at, w.path_id
        LIMIT %s
        FOR UPDATE SKIP LOCKED"""
    try:
        lines = [row[0] for row in conn.execute(sql, (tenant, batch)).fetchall()]
    finally:
        conn.rollback()
    execution = next((line for line in lines if line.startswith("Execution Time")), "")
    return {"plan": lines, "execution": execution}


def _explain_complete(conn: Any, tenant: str, batch: int) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of the completion statement as complete_work_many sends it,
    for up to ``batch`` items in progress now but with a wrong lease token: the statement
    looks the items up as it would (same plan, same index reads) and changes nothing."""
    from nexus.work.drivers import driver_for

    try:
        paths = [
            row[0]
            for row in conn.execute(
                "SELECT p.virtual_path FROM work_items w JOIN file_paths p USING (path_id) "
                "WHERE w.status = 'in_progress' LIMIT %s",
                (batch,),
            ).fetchall()
        ] or [PREFIX + "0-000000000"]
        params = {
            "ids": [None] * len(paths),
            "paths": paths,
            "tokens": ["0" * 32] * len(paths),
            "n": len(paths),
            "now": time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime()),
            "tenant": tenant,
        }
        sql = "EXPLAIN (ANALYZE, BUFFERS) " + driver_for("postgresql").sql("complete")
        lines = [row[0] for row in conn.execute(sql, params).fetchall()]
    finally:
        conn.rollback()
    execution = next((line for line in lines if line.startswith("Execution Time")), "")
    return {"plan": lines, "execution": execution}


def _fmt_rate(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:,.0f}"


def _fmt_vacuum(runs: list[int]) -> str:
    if not runs:
        return "-"
    return f"{len(runs)}: p50 {percentile([float(r) for r in runs], 0.5):,.0f}, max {max(runs):,}"


def _p(values: list[float], q: float) -> float:
    return percentile(values, q) if values else float("nan")


# ---------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="postgresql", help="postgresql or a server URL")
    parser.add_argument("--rate", type=float, default=2000.0, help="items enqueued per second")
    parser.add_argument("--tick", type=float, default=0.1, help="producer call interval (s)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument(
        "--mode",
        choices=("claim", "combined"),
        default="claim",
        help="claim: claim_ready_work + complete_work_many; combined: complete_and_claim",
    )
    for phase in PHASES:
        parser.add_argument(
            f"--{phase}", type=float, default=DEFAULT_SECONDS[phase], help=f"{phase} phase (s)"
        )
    parser.add_argument("--vacuum-every", type=float, default=10.0, help="0 = no VACUUM process")
    parser.add_argument("--readers-count", dest="readers_count", type=int, default=4)
    parser.add_argument("--reader-pause", type=float, default=0.1)
    parser.add_argument("--reader-tx", choices=("phase", "scan"), default="phase")
    parser.add_argument(
        "--reader-sql",
        action="append",
        help="a reader statement (repeatable); default: count(*) of each of the five views",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply phase durations and vacuum interval"
    )
    parser.add_argument(
        "--quick", action="store_true", help="--scale 0.05 --rate 300: a few seconds"
    )
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=None, help="hard limit of the run (s)")
    parser.add_argument("--no-explain", action="store_true")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale = min(args.scale, 0.05)
        args.rate = min(args.rate, 300.0)
    seconds = {phase: getattr(args, phase) * args.scale for phase in PHASES}
    vacuum_every = max(args.vacuum_every * args.scale, 1.0) if args.vacuum_every > 0 else 0.0
    if args.db not in ("postgresql",) and not args.db.startswith(("postgresql", "postgres:")):
        parser.error("pressure.py measures PostgreSQL only (--db postgresql or a server URL)")
    bounds: list[float] = []
    total = 0.0
    for phase in PHASES:
        total += seconds[phase]
        bounds.append(total)
    timeout = args.timeout or total + args.drain_timeout + 180
    hard_deadline = time.time() + timeout + 30

    with bench_database(args.db, keep=args.keep, tag="pressure") as db:
        with SQLAlchemyMetadataStore(db.url) as store:  # migrations
            tenant = store.tenant_id if hasattr(store, "tenant_id") else "default"
        import psycopg

        dsn = db.raw_dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            autovacuum = conn.execute("SHOW autovacuum").fetchone()[0]
        print(
            header(
                "nexus pressure benchmark (PostgreSQL)",
                db,
                {
                    "workload": f"producer {args.rate:,.0f} items/s (enqueue_many every "
                    f"{args.tick:g} s); {args.workers} worker processes, batch {args.batch}, "
                    + (
                        "claim_ready_work + complete_work_many"
                        if args.mode == "claim"
                        else "complete_and_claim"
                    ),
                    "phases": ", ".join(f"{p} {seconds[p]:g} s" for p in PHASES)
                    + f"; then drain (<= {args.drain_timeout:g} s)",
                    "vacuum": (
                        f"VACUUM (ANALYZE) every {vacuum_every:g} s by this script; "
                        f"server autovacuum = {autovacuum}"
                        + (" (the script stands in for it)" if autovacuum == "off" else "")
                        if vacuum_every > 0
                        else f"none by this script; server autovacuum = {autovacuum}"
                    ),
                    "readers": f"{args.readers_count} REPEATABLE READ connections, one "
                    + (
                        "transaction for the whole phase"
                        if args.reader_tx == "phase"
                        else "transaction per round"
                    )
                    + f", count(*) of the five views, pause {args.reader_pause:g} s",
                },
            ),
            flush=True,
        )
        result = run(
            args, db.url, dsn, tenant, seconds, bounds, vacuum_every, timeout, hard_deadline
        )
        result["autovacuum"] = autovacuum
        result["database"] = db.server_version()
        result["nexus"] = nexus_version()
    print(report(result, args))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2, default=str)
    return 0 if result["exactly_once"]["ok"] else 1


def run(
    args: argparse.Namespace,
    url: str,
    dsn: str,
    tenant: str,
    seconds: dict[str, float],
    bounds: list[float],
    vacuum_every: float,
    timeout: float,
    hard_deadline: float,
) -> dict[str, Any]:
    import psycopg

    ready = SPAWN.Queue()
    out = SPAWN.Queue()
    start = SPAWN.Event()
    stop_producer = SPAWN.Event()
    stop_workers = SPAWN.Event()
    stop_side = SPAWN.Event()
    hold_begin, hold_stop = SPAWN.Event(), SPAWN.Event()
    read_begin, read_stop = SPAWN.Event(), SPAWN.Event()
    t0v = SPAWN.Value("d", 0.0)
    enqueued = SPAWN.Value("q", 0)
    completed = SPAWN.Value("q", 0)
    statements = args.reader_sql or [f"SELECT count(*) FROM {view}" for view in VIEWS]
    procs: list[Any] = [
        SPAWN.Process(
            target=_producer,
            args=(
                url,
                args.rate,
                args.tick,
                bounds,
                ready,
                start,
                t0v,
                stop_producer,
                enqueued,
                hard_deadline,
                out,
            ),
            daemon=True,
        ),
        *(
            SPAWN.Process(
                target=_worker,
                args=(
                    url,
                    f"w{k}",
                    args.batch,
                    args.mode,
                    bounds,
                    ready,
                    start,
                    t0v,
                    stop_workers,
                    completed,
                    hard_deadline,
                    out,
                ),
                daemon=True,
            )
            for k in range(args.workers)
        ),
        SPAWN.Process(
            target=_holder,
            args=(dsn, ready, hold_begin, hold_stop, hard_deadline, out),
            daemon=True,
        ),
        SPAWN.Process(
            target=_readers,
            args=(
                dsn,
                args.readers_count,
                args.reader_pause,
                args.reader_tx,
                statements,
                ready,
                read_begin,
                read_stop,
                hard_deadline,
                out,
            ),
            daemon=True,
        ),
    ]
    if vacuum_every > 0:
        procs.append(
            SPAWN.Process(
                target=_vacuum,
                args=(dsn, vacuum_every, bounds, ready, start, t0v, stop_side, hard_deadline, out),
                daemon=True,
            )
        )
    results: dict[str, Any] = {}
    samples: list[tuple[float, int, int]] = []
    snapshots: dict[str, Any] = {}
    explains: dict[str, Any] = {}
    run_start = time.monotonic()

    def collect(block: float) -> None:
        with contextlib.suppress(std_queue.Empty):
            while True:
                msg = out.get(timeout=block)
                block = 0.0
                if "error" in msg:
                    raise RuntimeError(f"{msg['role']} failed: {msg['error']}")
                results[msg["role"]] = msg

    def check_time() -> None:
        if time.monotonic() - run_start > timeout:
            raise TimeoutError(f"the run took more than --timeout {timeout:g} s")

    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            try:
                ready.get(timeout=120)
            except std_queue.Empty:
                collect(0.5)
                raise RuntimeError("a child did not get ready in 120 s") from None
        obs = psycopg.connect(dsn, autocommit=False)
        snapshots["start"] = _table_stats(obs)
        obs.commit()
        t0 = time.time() + 0.2
        t0v.value = t0
        start.set()
        log(f"phases start; total {bounds[-1]:g} s")

        def sample() -> None:
            samples.append((time.time() - t0, int(enqueued.value), int(completed.value)))

        for index, phase in enumerate(PHASES):
            end_at = t0 + bounds[index]
            if seconds[phase] <= 0:
                continue
            if phase == "held":
                hold_begin.set()
            if phase == "readers":
                read_begin.set()
            explain_at = end_at - min(3.0, seconds[phase] / 4)
            explained = args.no_explain or phase == "warmup"
            log(f"{phase}: {seconds[phase]:g} s")
            while time.time() < end_at:
                sample()
                collect(0.0)
                check_time()
                if not explained and time.time() >= explain_at:
                    explains[phase] = _explain_pick(obs, tenant, args.batch)
                    explains[f"{phase}, completion"] = _explain_complete(obs, tenant, args.batch)
                    explained = True
                time.sleep(max(0.0, min(0.25, end_at - time.time())))
            sample()
            snapshots[phase] = _table_stats(obs)
            obs.commit()
            if phase == "held":
                hold_stop.set()
            if phase == "readers":
                read_stop.set()
        stop_producer.set()
        producer_wait = time.monotonic()
        while "producer" not in results and time.monotonic() - producer_wait < 30:
            collect(0.25)
        if "producer" not in results:
            raise RuntimeError("the producer did not stop in 30 s")
        final_enqueued = results["producer"]["enqueued"]
        log(f"drain: {final_enqueued - int(completed.value)} items left")
        drain_end = time.time() + args.drain_timeout
        while int(completed.value) < final_enqueued and time.time() < drain_end:
            sample()
            collect(0.0)
            check_time()
            time.sleep(0.25)
        sample()
        drained = int(completed.value) >= final_enqueued
        snapshots["drain"] = _table_stats(obs)
        obs.commit()
        obs.close()
        stop_workers.set()
        stop_side.set()
        hold_stop.set()
        read_stop.set()
        roles = {"producer", "holder", "readers", *(f"w{k}" for k in range(args.workers))}
        if vacuum_every > 0:
            roles.add("vacuum")
        wait_until = time.monotonic() + 60
        while not roles <= set(results) and time.monotonic() < wait_until:
            collect(0.5)
        missing = roles - set(results)
        if missing:
            raise RuntimeError(f"no result from {sorted(missing)} within 60 s")
        exactly_once = verify(url, final_enqueued, int(completed.value), drained)
    except BaseException:
        log("stopping the children")
        raise
    finally:
        for event in (start, stop_producer, stop_workers, stop_side, hold_stop, read_stop):
            event.set()
        for proc in procs:
            proc.join(timeout=5)
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
    return summarize(
        args, seconds, bounds, samples, results, snapshots, explains, exactly_once, drained
    )


def verify(url: str, enqueued: int, counted: int, drained: bool) -> dict[str, Any]:
    """Exactly-once from work_history: every completed item has exactly one claimed and one
    completed event; an item not completed (the run ended before the drain) is ready and was
    never claimed; the workers counted as many completions as the table holds."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    """
                    SELECT count(*) AS paths,
                           count(*) FILTER (WHERE w.status = 'completed') AS completed,
                           count(*) FILTER (WHERE w.status = 'ready') AS left_ready,
                           count(*) FILTER (WHERE NOT (
                               (w.status = 'completed' AND h.claimed = 1 AND h.done = 1)
                               OR (w.status = 'ready' AND coalesce(h.claimed, 0) = 0
                                   AND coalesce(h.done, 0) = 0))) AS bad
                    FROM file_paths p
                    JOIN work_items w ON w.path_id = p.path_id
                    LEFT JOIN (
                        SELECT path_id,
                               count(*) FILTER (WHERE event = 'claimed') AS claimed,
                               count(*) FILTER (WHERE event = 'completed') AS done
                        FROM work_history GROUP BY path_id) h ON h.path_id = p.path_id
                    WHERE starts_with(p.virtual_path, :prefix)"""
                ),
                {"prefix": PREFIX},
            ).one()
    finally:
        engine.dispose()
    ok = (
        row.paths == enqueued
        and row.bad == 0
        and row.completed == counted
        and row.completed + row.left_ready == enqueued
    )
    return {
        "ok": bool(ok),
        "enqueued": enqueued,
        "work_items": int(row.paths),
        "completed": int(row.completed),
        "left_unclaimed": int(row.left_ready),
        "paths_not_exactly_once": int(row.bad),
        "worker_completions": counted,
        "drained": drained,
    }


def summarize(
    args: argparse.Namespace,
    seconds: dict[str, float],
    bounds: list[float],
    samples: list[tuple[float, int, int]],
    results: dict[str, Any],
    snapshots: dict[str, Any],
    explains: dict[str, Any],
    exactly_once: dict[str, Any],
    drained: bool,
) -> dict[str, Any]:
    workers = [results[f"w{k}"] for k in range(args.workers)]
    producer = results["producer"]
    vacuum_runs = results.get("vacuum", {}).get("runs", [])
    names = [*PHASES, "drain"]
    backlog = [(t, e - c) for t, e, c in samples]
    clean_index = PHASES.index("clean")
    clean_lo = bounds[clean_index - 1]
    clean_backlogs = [b for t, b in backlog if clean_lo <= t <= bounds[clean_index]]
    # Back to the clean level: the clean phase's p95 backlog, but at most one second of the
    # producer (a clean phase that did not keep up has no level to go back to) and at least
    # two of its ticks.
    clean_p95 = _p([float(b) for b in clean_backlogs], 0.95) if clean_backlogs else 0.0
    threshold = max(min(clean_p95, args.rate), 2 * args.rate * args.tick)
    phases: list[dict[str, Any]] = []
    for index, name in enumerate(names):
        if name != "drain" and seconds[name] <= 0:
            continue
        lo = bounds[index - 1] if index else 0.0
        hi = bounds[index] if name != "drain" else (samples[-1][0] if samples else lo)
        duration = max(hi - lo, 1e-9)
        claims = [x for w in workers for x in w["claim_ms"][index]]
        completes = [x for w in workers for x in w["complete_ms"][index]]
        e2e = [x for w in workers for x in w["e2e_ms"][index]]
        done = sum(w["done"][index] for w in workers)
        at_end = next((b for t, b in reversed(backlog) if t <= hi + 1e-6), None)
        drain_s = None
        if at_end is not None:
            if at_end <= threshold:
                drain_s = 0.0
            else:
                drain_s = next((t - hi for t, b in backlog if t > hi and b <= threshold), None)
        phases.append(
            {
                "phase": name,
                "seconds": round(duration, 2),
                "completed": done,
                "completed_per_s": done / duration,
                "enqueued": producer["counts"][index],
                "enqueued_per_s": producer["counts"][index] / duration,
                "enqueue_call_p50_ms": _p(producer["call_ms"][index], 0.5),
                "enqueue_call_p95_ms": _p(producer["call_ms"][index], 0.95),
                "claims": len(claims),
                "empty_claims": sum(w["empty"][index] for w in workers),
                "claim_p50_ms": _p(claims, 0.5),
                "claim_p95_ms": _p(claims, 0.95),
                "complete_p50_ms": _p(completes, 0.5),
                "complete_p95_ms": _p(completes, 0.95),
                "e2e_p50_ms": _p(e2e, 0.5),
                "e2e_p95_ms": _p(e2e, 0.95),
                "backlog_end": at_end,
                "backlog_max": max((b for t, b in backlog if lo <= t <= hi), default=None),
                "drain_seconds": drain_s,
                "vacuum_runs": [round(ms) for p, ms in vacuum_runs if p == index],
            }
        )
    by = {p["phase"]: p for p in phases}
    clean = by.get("clean")

    def ratio(name: str, key: str) -> float | None:
        if clean is None or name not in by or not clean[key]:
            return None
        return by[name][key] / clean[key]

    held_ratio = ratio("held", "completed_per_s")
    held_p95 = ratio("held", "claim_p95_ms")
    readers_ratio = ratio("readers", "completed_per_s")
    held_drain = by.get("held", {}).get("drain_seconds")
    targets = [
        {
            "target": f"held throughput >= {TARGET_HELD_RATIO:.0%} of clean",
            "value": held_ratio,
            "ok": held_ratio is not None and held_ratio >= TARGET_HELD_RATIO,
        },
        {
            "target": f"held claim p95 <= {TARGET_HELD_P95_RATIO:g}x clean",
            "value": held_p95,
            "ok": held_p95 is not None and held_p95 <= TARGET_HELD_P95_RATIO,
        },
        {
            "target": f"held backlog gone <= {TARGET_DRAIN_SECONDS:g} s into recovery",
            "value": held_drain,
            "ok": held_drain is not None and held_drain <= TARGET_DRAIN_SECONDS,
        },
        {
            "target": f"readers throughput >= {TARGET_READERS_RATIO:.0%} of clean",
            "value": readers_ratio,
            "ok": readers_ratio is not None and readers_ratio >= TARGET_READERS_RATIO,
        },
    ]
    profile = []
    order = ["start", *[p for p in PHASES if p in snapshots], "drain"]
    for before, after in itertools.pairwise(order):
        if before not in snapshots or after not in snapshots:
            continue
        a, b = snapshots[before], snapshots[after]
        indexes = {}
        for name, stats in b["indexes"].items():
            prev = a["indexes"].get(name, {"scans": 0, "tup_read": 0})
            scans = stats["scans"] - prev["scans"]
            read = stats["tup_read"] - prev["tup_read"]
            if scans:
                indexes[name] = {
                    "scans": scans,
                    "tup_read_per_scan": read / scans,
                    "bytes": stats["bytes"],
                }
        profile.append({"phase": after, "tables": b["tables"], "work_items_indexes": indexes})
    readers = results.get("readers", {})
    return {
        "config": {k: v for k, v in vars(args).items()},
        "phase_seconds": seconds,
        "backlog_threshold": threshold,
        "phases": phases,
        "targets": targets,
        "exactly_once": exactly_once,
        "drained": drained,
        "holder_xid": results.get("holder", {}).get("xid"),
        "readers": {
            "rounds": len(readers.get("scans", [])),
            "round_p50_ms": _p(readers.get("scans", []), 0.5),
            "round_p95_ms": _p(readers.get("scans", []), 0.95),
            "errors": readers.get("errors", []),
        },
        "profile": profile,
        "explain": explains,
        "backlog_samples": [(round(t, 2), b) for t, b in backlog[:: max(1, len(backlog) // 400)]],
    }


def report(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines: list[str] = [""]
    rows = []
    for p in result["phases"]:
        rows.append(
            [
                p["phase"],
                f"{p['seconds']:g}",
                _fmt_rate(p["completed_per_s"]),
                _fmt_rate(p["enqueued_per_s"]),
                f"{fmt_ms(p['claim_p50_ms'])} / {fmt_ms(p['claim_p95_ms'])}",
                f"{fmt_ms(p['complete_p50_ms'])} / {fmt_ms(p['complete_p95_ms'])}",
                f"{fmt_ms(p['e2e_p50_ms'])} / {fmt_ms(p['e2e_p95_ms'])}",
                f"{p['backlog_end']:,}" if p["backlog_end"] is not None else "-",
                f"{p['backlog_max']:,}" if p["backlog_max"] is not None else "-",
                "-" if p["drain_seconds"] is None else f"{p['drain_seconds']:.1f}",
                _fmt_vacuum(p["vacuum_runs"]),
            ]
        )
    claim_name = "claim ms p50/p95" if args.mode == "claim" else "complete_and_claim ms p50/p95"
    lines.append(
        table(
            [
                "phase",
                "s",
                "completed/s",
                "enqueued/s",
                claim_name,
                "complete ms p50/p95",
                "end-to-end ms p50/p95",
                "backlog at end",
                "max backlog",
                "s to drain",
                "VACUUM runs: ms",
            ],
            rows,
            "lrrrrrrrrrl",
        )
    )
    lines.append(
        "\nbacklog = enqueued - completed; 'drained' = back to <= "
        f"{result['backlog_threshold']:,.0f} (the clean phase's p95 backlog, between two producer"
        " ticks and one second of the producer); 's to drain' counts from the phase's end"
        " ('-': not within the run)."
    )
    clean = next((p for p in result["phases"] if p["phase"] == "clean"), None)
    if clean and clean["completed_per_s"] < 0.95 * clean["enqueued_per_s"]:
        lines.append(
            f"NOTE: the clean phase did not keep up with the producer "
            f"({clean['completed_per_s']:,.0f}/s of {clean['enqueued_per_s']:,.0f}/s): the "
            "workers are saturated, the backlog grows in every phase, and the ratios compare "
            "capacities, not a steady state (a loaded machine, or --rate above capacity)."
        )
    readers = result["readers"]
    lines.append(
        f"readers: {readers['rounds']} rounds of the five views, "
        f"p50 {fmt_ms(readers['round_p50_ms'])} ms, p95 {fmt_ms(readers['round_p95_ms'])} ms"
        + (f"; errors: {readers['errors'][:3]}" if readers["errors"] else "")
    )
    lines.append(f"XID held in the held phase: {result['holder_xid']}")
    lines.append("\ntargets (issue 13):")
    for target in result["targets"]:
        value = target["value"]
        shown = "-" if value is None else f"{value:.2f}"
        lines.append(f"  {'OK  ' if target['ok'] else 'MISS'} {target['target']}: {shown}")
    once = result["exactly_once"]
    lines.append(
        f"\nexactly-once: {'OK' if once['ok'] else 'FAILED'} -- {once['enqueued']:,} enqueued, "
        f"{once['work_items']:,} work items, {once['completed']:,} completed (one claimed and one "
        f"completed event each), {once['left_unclaimed']:,} left ready and never claimed, "
        f"{once['paths_not_exactly_once']} otherwise, {once['worker_completions']:,} completions "
        "counted by the workers"
        + (
            ""
            if once["drained"]
            else f"; NOT drained within --drain-timeout {args.drain_timeout:g} s"
        )
    )
    lines.append("\nprofile (at each phase's end): work_items indexes scanned in the phase")
    prow = []
    for entry in result["profile"]:
        tables = entry["tables"]
        wi = tables.get("work_items", {})
        fp = tables.get("file_paths", {})
        ready = entry["work_items_indexes"].get("ix_work_items_ready", {})
        others = sorted(
            (
                (name, t["dead"])
                for name, t in tables.items()
                if name not in ("work_items", "file_paths") and t["dead"]
            ),
            key=lambda item: -item[1],
        )
        prow.append(
            [
                entry["phase"],
                f"{wi.get('live', 0):,} / {wi.get('dead', 0):,}",
                f"{fp.get('live', 0):,} / {fp.get('dead', 0):,}",
                f"{ready.get('scans', 0):,}",
                f"{ready.get('tup_read_per_scan', 0):,.1f}",
                f"{ready.get('bytes', 0) / 1024:,.0f}",
                f"{wi.get('bytes', 0) / 1024 / 1024:,.1f}",
                ", ".join(f"{name} {dead:,}" for name, dead in others[:4]) or "-",
            ]
        )
    lines.append(
        table(
            [
                "after",
                "work_items live / dead",
                "file_paths live / dead",
                "ix_work_items_ready scans",
                "tuples read/scan",
                "ready index KiB",
                "work_items MiB (all)",
                "dead tuples elsewhere",
            ],
            prow,
            "lrrrrrrl",
        )
    )
    for phase, explain in result["explain"].items():
        what = "the claim's pick"
        if phase.endswith(", completion"):
            phase = phase.removesuffix(", completion")
            what = "the completion (in-progress items, a wrong token: nothing changes)"
        lines.append(f"\nEXPLAIN (ANALYZE, BUFFERS) of {what} near the end of {phase}:")
        lines.extend("    " + line for line in explain["plan"])
    return "\n".join(lines)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    # Ctrl-C, and SIGTERM (timeout(1), run_all.sh) too, stop the children and drop the
    # database; SIGINT is set explicitly, since a shell may start a background job ignoring it.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: children stopped, database dropped")
        sys.exit(130)
