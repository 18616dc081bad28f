"""Benchmark of the work queue: enqueue, bulk enqueue, multi-process drain, bare-driver limit.

    python benchmarks/queue.py --db sqlite --items 20000 --workers 1 --batch 1
    python benchmarks/queue.py --db postgresql --items 20000 --workers 4 --batch 10

Steps, all on a throwaway database (``--db`` as in benchmarks/common.py):

a. ``store.enqueue`` one call per item for ``--single`` items (status ``pending``, so the
   drain below sees exactly ``--items`` ready items) -> items/s;
   then ``set_file_metadata`` one call per write on those items, for a plain key and for a
   work key (``priority``, which fires the projection trigger) -> calls/s;
b. one ``store.enqueue_many`` of ``--items`` ready items (priorities 0-99, no dependencies)
   -> items/s;
c. drain with ``--workers`` processes (multiprocessing "spawn", each opens its own store), each
   looping ``claim_ready_work(worker_id, limit=batch)`` + ``complete_work_many(...)`` (no-op
   handler) until no ready work is left -> items/s; then exactly-once is checked: every item
   has exactly one 'claimed' and one 'completed' event in work_history, status completed, and
   the workers' claims add up to ``--items`` distinct paths;
d. the same workload as a minimal raw driver loop on a bare ``jobs`` table with the same
   number of processes and batch: sqlite3 ``BEGIN IMMEDIATE; UPDATE ... RETURNING; COMMIT`` then
   a completion ``UPDATE``+``COMMIT``; psycopg ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE
   SKIP LOCKED)`` + commit, then the completion + commit. nexus is printed as a percentage of it.
"""

from __future__ import annotations

import os
import sys

# This file is named queue.py: keep its directory from shadowing the standard library's
# ``queue`` module (multiprocessing imports it), but still find common.py next to it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.append(_HERE)

import argparse  # noqa: E402
import cProfile  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import random  # noqa: E402
import sqlite3  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import sqlalchemy as sa  # noqa: E402
from common import BenchDB, bench_database, header, log, nexus_version, table  # noqa: E402

nexus_version()  # record the code's version before importing it

from nexus.storage.metadata_store import SQLAlchemyMetadataStore  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")

# Issue 4 targets and the peers measured on this machine (shared/notes/design-notes.md).
TARGET_SQLITE_DRAIN = 10_000
TARGET_PG_DRAIN_4 = 8_000
TARGET_BULK_ENQUEUE_SQLITE = 50_000
TARGET_SET_METADATA_SQLITE = 5_000
PEERS = {
    "sqlite": "huey ~4,600-4,700/s; bare sqlite3 loop ~36,000/s (1 process)",
    "postgresql": "pgqueuer 4,400/s (1) / 6,700/s (4, 10-job batches); "
    "bare psycopg loop 1,700/s (1) / 3,700/s (4)",
}


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
    claimed: list[str] = []
    calls = 0
    with SQLAlchemyMetadataStore(db_url, run_migrations=False) as store:
        store.work_stats()  # open a connection before the clock starts
        barrier.wait()
        while True:
            items = store.claim_ready_work(worker_id, limit=batch, lease_seconds=300)
            calls += 1
            if not items:
                break
            # the no-op handler
            store.complete_work_many([(i["virtual_path"], i["lease_token"]) for i in items])
            claimed += [i["virtual_path"] for i in items]
        end = time.monotonic()
    return {"worker": worker_id, "claimed": claimed, "end": end, "claim_calls": calls}


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


DRAINS = {"nexus": _nexus_drain, "sqlite-bare": _sqlite_bare_drain, "pg-bare": _pg_bare_drain}


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
        out.put({"worker": worker_id, "error": f"{type(exc).__name__}: {exc}"})
        raise
    out.put(result)


def run_drain(
    kind: str, target: str, workers: int, batch: int, profile_dir: str | None, timeout: float
) -> dict[str, Any]:
    barrier = SPAWN.Barrier(workers + 1)
    out = SPAWN.Queue()
    procs = [
        SPAWN.Process(
            target=_worker_main,
            args=(kind, target, f"w{k}", batch, barrier, out, profile_dir),
        )
        for k in range(workers)
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=120)
    start = time.monotonic()
    results = [out.get(timeout=timeout) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise SystemExit(f"{kind} drain failed: {errors}")
    end = max(r["end"] for r in results)
    claimed = [c for r in results for c in r["claimed"]]
    return {
        "seconds": end - start,
        "claimed": claimed,
        "per_worker": [len(r["claimed"]) for r in results],
        "exitcodes": [p.exitcode for p in procs],
    }


# ---------------------------------------------------------------------------------- steps


def single_enqueue(store: SQLAlchemyMetadataStore, n: int) -> tuple[float, list[str]]:
    paths = [f"/single/item-{i:06d}.job" for i in range(n)]
    start = time.perf_counter()
    for i, path in enumerate(paths):
        store.enqueue(path, priority=i % 100, status="pending")
    return time.perf_counter() - start, paths


def single_set_metadata(store: SQLAlchemyMetadataStore, paths: list[str], key: str) -> float:
    start = time.perf_counter()
    for i, path in enumerate(paths):
        store.set_file_metadata(path, key, (i * 7) % 100 if key == "priority" else f"v{i}")
    return time.perf_counter() - start


def bulk_enqueue(store: SQLAlchemyMetadataStore, n: int, seed: int) -> float:
    rng = random.Random(seed)
    items = [
        {"path": f"/bulk/q{i % 100:02d}/item-{i:07d}.job", "priority": rng.randint(0, 99)}
        for i in range(n)
    ]
    start = time.perf_counter()
    store.enqueue_many(items)
    return time.perf_counter() - start


def verify_nexus(store: SQLAlchemyMetadataStore, n: int, drain: dict[str, Any]) -> dict[str, Any]:
    """Exactly-once: per path one 'claimed' and one 'completed' event, all completed."""
    with store.engine.connect() as conn:
        per_path = conn.execute(
            sa.text(
                """SELECT p.virtual_path,
                          sum(CASE WHEN h.event = 'claimed' THEN 1 ELSE 0 END) AS claimed,
                          sum(CASE WHEN h.event = 'completed' THEN 1 ELSE 0 END) AS completed
                   FROM file_paths p LEFT JOIN work_history h ON h.path_id = p.path_id
                   WHERE p.virtual_path LIKE '/bulk/%'
                   GROUP BY p.virtual_path"""
            )
        ).all()
        statuses = dict(
            conn.execute(
                sa.text(
                    """SELECT w.status, count(*) FROM work_items w
                       JOIN file_paths p ON p.path_id = w.path_id
                       WHERE p.virtual_path LIKE '/bulk/%' GROUP BY w.status"""
                )
            ).all()
        )
    bad = [row for row in per_path if row.claimed != 1 or row.completed != 1]
    claimed = drain["claimed"]
    ok = (
        len(per_path) == n
        and not bad
        and statuses == {"completed": n}
        and len(claimed) == n
        and len(set(claimed)) == n
    )
    return {
        "ok": ok,
        "paths": len(per_path),
        "bad_paths": len(bad),
        "statuses": statuses,
        "claims_returned": len(claimed),
        "distinct_claims": len(set(claimed)),
    }


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


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db", default="sqlite", help="sqlite | PATH | postgresql | postgresql://server"
    )
    parser.add_argument("--items", type=int, default=20_000, help="items bulk-enqueued and drained")
    parser.add_argument("--workers", type=int, default=1, help="worker processes for the drains")
    parser.add_argument("--batch", type=int, default=1, help="claim_ready_work(limit=...) per call")
    parser.add_argument(
        "--single",
        type=int,
        default=2_000,
        help="items for one-at-a-time enqueue / set_file_metadata (at most --items)",
    )
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-driver loop")
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="PostgreSQL: run ANALYZE after the bulk enqueue, before the drain (what "
        "autovacuum does eventually); shows the drain with current planner statistics",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=900, help="seconds a drain may take")
    parser.add_argument(
        "--profile",
        type=Path,
        help="write cProfile stats (bulk enqueue, each drain worker) to this dir",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if args.items < 1 or args.workers < 1 or args.batch < 1:
        parser.error("--items, --workers and --batch must be positive")
    n_single = max(0, min(args.single, args.items))
    profile_dir = None
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        profile_dir = str(args.profile.resolve())

    with bench_database(args.db, keep=args.keep, tag="bench") as db:
        log(f"queue benchmark on {db.label}")
        store = SQLAlchemyMetadataStore(db.url)
        try:
            log(f"a. enqueue x{n_single}, set_file_metadata x{n_single} x2")
            t_single, single_paths = single_enqueue(store, n_single)
            t_meta_plain = single_set_metadata(store, single_paths, "note")
            t_meta_work = single_set_metadata(store, single_paths, "priority")
            log(f"b. enqueue_many x{args.items}")
            t_bulk = _profiled(
                profile_dir, "bulk-enqueue", bulk_enqueue, store, args.items, args.seed
            )
            if args.analyze and db.kind == "postgresql":
                with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql("ANALYZE")
            log(f"c. drain: {args.workers} process(es), batch {args.batch}")
            drain = run_drain("nexus", db.url, args.workers, args.batch, profile_dir, args.timeout)
            check = verify_nexus(store, args.items, drain)
        finally:
            store.close()
        bare = bare_check = None
        if not args.no_bare:
            log("d. bare-driver loop")
            target = prepare_bare(db, args.items, args.seed)
            kind = "sqlite-bare" if db.kind == "sqlite" else "pg-bare"
            bare = run_drain(kind, target, args.workers, args.batch, profile_dir, args.timeout)
            bare_check = verify_bare(db, target, args.items, bare)
            if db.kind == "sqlite":
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(target + suffix) and not args.keep:
                        os.remove(target + suffix)

        drain_rate = rate(args.items, drain["seconds"])
        bare_rate = rate(args.items, bare["seconds"]) if bare else None
        sqlite_db = db.kind == "sqlite"
        if sqlite_db:
            drain_target = f">= {TARGET_SQLITE_DRAIN:,} (1 worker; 4 no slower)"
            drain_ok = drain_rate >= TARGET_SQLITE_DRAIN
        elif args.workers >= 4:
            drain_target = f">= {TARGET_PG_DRAIN_4:,} (4 processes)"
            drain_ok = drain_rate >= TARGET_PG_DRAIN_4
        else:
            drain_target = f"(>= {TARGET_PG_DRAIN_4:,} with 4 processes)"
            drain_ok = None

        def mark(ok: bool | None, value: float, target: float) -> str:
            if ok is None:
                return ""
            return "ok" if ok else f"MISS ({value / target:.0%} of target)"

        bulk_rate = rate(args.items, t_bulk)
        single_rate = rate(n_single, t_single)
        meta_plain = rate(n_single, t_meta_plain)
        meta_work = rate(n_single, t_meta_work)
        rows = [
            [
                "enqueue (one call per item)",
                f"{n_single:,}",
                f"{t_single:.2f}",
                fmt_rate(single_rate),
                "-",
                "",
            ],
            [
                "set_file_metadata, plain key",
                f"{n_single:,}",
                f"{t_meta_plain:.2f}",
                fmt_rate(meta_plain),
                f">= {TARGET_SET_METADATA_SQLITE:,}" if sqlite_db else "-",
                mark(
                    meta_plain >= TARGET_SET_METADATA_SQLITE if sqlite_db else None,
                    meta_plain,
                    TARGET_SET_METADATA_SQLITE,
                ),
            ],
            [
                "set_file_metadata, priority",
                f"{n_single:,}",
                f"{t_meta_work:.2f}",
                fmt_rate(meta_work),
                f">= {TARGET_SET_METADATA_SQLITE:,}" if sqlite_db else "-",
                mark(
                    meta_work >= TARGET_SET_METADATA_SQLITE if sqlite_db else None,
                    meta_work,
                    TARGET_SET_METADATA_SQLITE,
                ),
            ],
            [
                "enqueue_many (one call)",
                f"{args.items:,}",
                f"{t_bulk:.2f}",
                fmt_rate(bulk_rate),
                f">= {TARGET_BULK_ENQUEUE_SQLITE:,}" if sqlite_db else "-",
                mark(
                    bulk_rate >= TARGET_BULK_ENQUEUE_SQLITE if sqlite_db else None,
                    bulk_rate,
                    TARGET_BULK_ENQUEUE_SQLITE,
                ),
            ],
            [
                f"drain nexus: {args.workers} proc, batch {args.batch}",
                f"{args.items:,}",
                f"{drain['seconds']:.2f}",
                fmt_rate(drain_rate),
                drain_target,
                mark(drain_ok, drain_rate, TARGET_SQLITE_DRAIN if sqlite_db else TARGET_PG_DRAIN_4),
            ],
        ]
        if bare:
            rows.append(
                [
                    f"drain bare {'sqlite3' if sqlite_db else 'psycopg'}: "
                    f"{args.workers} proc, batch {args.batch}",
                    f"{args.items:,}",
                    f"{bare['seconds']:.2f}",
                    fmt_rate(bare_rate or 0),
                    "-",
                    f"nexus = {drain_rate / bare_rate:.0%} of bare" if bare_rate else "",
                ]
            )
        print(
            header(
                "nexus queue benchmark",
                db,
                {
                    "workload": f"{args.items:,} items, {args.workers} worker process(es), "
                    f"claim batch {args.batch}, no-op handler, spawn"
                    + (
                        "; ANALYZE before the drain" if args.analyze and db.kind != "sqlite" else ""
                    ),
                    "peers": PEERS[db.kind],
                },
            )
        )
        print()
        print(table(["step", "items", "seconds", "items/s", "target", ""], rows, "lrrrll"))
        print()
        print(
            f"exactly-once (nexus): {'OK' if check['ok'] else 'FAILED'} -- "
            f"{check['paths']:,} items, {check['bad_paths']} with claimed/completed events != 1, "
            f"statuses {check['statuses']}, {check['claims_returned']:,} claims returned "
            f"({check['distinct_claims']:,} distinct), "
            f"per worker {drain['per_worker']}"
        )
        if bare_check:
            print(
                f"exactly-once (bare):  {'OK' if bare_check['ok'] else 'FAILED'} -- "
                f"{bare_check['done_once']:,}/{bare_check['rows']:,} rows done with one claim, "
                f"per worker {bare['per_worker']}"
            )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "db": db.kind,
                        "items": args.items,
                        "workers": args.workers,
                        "batch": args.batch,
                        "analyze": args.analyze,
                        "single": {
                            "n": n_single,
                            "enqueue_per_s": single_rate,
                            "set_plain_per_s": meta_plain,
                            "set_priority_per_s": meta_work,
                        },
                        "bulk_enqueue_per_s": bulk_rate,
                        "drain_per_s": drain_rate,
                        "bare_per_s": bare_rate,
                        "exactly_once": check,
                        "bare_exactly_once": bare_check,
                    },
                    indent=1,
                )
            )
        ok = check["ok"] and (bare_check is None or bare_check["ok"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
