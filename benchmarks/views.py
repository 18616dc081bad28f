"""Benchmark of the five work views and work_stats() on a realistic dataset.

    python benchmarks/views.py --db sqlite --files 10000 --work 2000
    python benchmarks/views.py --db postgresql --files 1000000 --work 200000

``--db``: ``sqlite`` (a temporary file), a SQLite path that does not exist yet, ``postgresql``
(the local server), or a PostgreSQL server URL: a throwaway ``nexus_bench_<random>`` database
is created there and dropped at the end unless ``--keep``. See benchmarks/common.py.

The dataset is loaded through the public bulk API only: ``put_many`` for the plain paths,
``enqueue_many`` for the work items (statuses ready/pending/blocked/in_progress/completed/failed,
80 % with a priority, 20 % with dependencies on earlier items, completed or not, tags), then
``set_file_metadata_many`` for in_progress items' worker_id/started_at and one plain key on a
quarter of the plain paths. ``--adversarial`` makes half of the ``ready`` items blocked by
unfinished dependencies and gives them the highest priorities, so a scan in priority order
would have to skip them all before finding a ready one.

``--paging`` measures keyset paging instead (``page_*_work``, 100 rows a page): page 1, 250
and 500 of each view, and filtered pages (a tag, a path prefix). Its dataset is shaped so
every view holds more than 500 pages: statuses in fixed proportions (ready, pending and
in_progress 26 % each, blocked 22 %, every third pending item with an open dependency too),
20 % without a priority (so deep pages of the priority views cross into the NULL
priorities), tags from the pool above plus a rare one (one item in 1,000), no plain paths
unless ``--files`` says so. The filters measured: common tags and a broad prefix (checked on
the walk in the view's order) and a rare tag and a narrow prefix (read through their own
indexes on PostgreSQL, revision 0008):

    python benchmarks/views.py --paging --db sqlite --work 1000000
    python benchmarks/views.py --paging --db postgresql --work 200000
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from common import (
    BenchDB,
    bench_database,
    fmt_bytes,
    fmt_ms,
    header,
    log,
    nexus_version,
    percentile,
    table,
    timed,
)

nexus_version()  # record the code's version before importing it

from nexus.errors import NexusDatabaseError  # noqa: E402
from nexus.storage.metadata_store import SQLAlchemyMetadataStore  # noqa: E402
from nexus.work import WorkQueue  # noqa: E402

# The seed's claims (10,000 files / 2,000 work items, whole views, no script behind them).
SEED_MS = {
    "ready": 50.0,
    "pending": 30.0,
    "blocked": 100.0,
    "by_priority": 40.0,
    "in_progress": 20.0,
}
# Issue 4's targets (p50, at 1M paths / 200k items, on both databases).
TARGET_LIMIT100_MS = 5.0
TARGET_READY10_MS = 1.0
TARGET_STATS_MS = 20.0

STATUS_WEIGHTS = {
    "ready": 0.40,
    "pending": 0.15,
    "blocked": 0.10,
    "in_progress": 0.10,
    "completed": 0.20,
    "failed": 0.05,
}
TAG_POOL = ["etl", "ml", "report", "urgent", "nightly", "gpu", "io", "backfill"]
PUT_CHUNK = 50_000
ENQUEUE_CHUNK = {"sqlite": 20_000, "postgresql": 2_000}


def plan_dataset(n_work: int, seed: int, adversarial: bool) -> list[dict[str, Any]]:
    """The work items, in enqueue order (dependencies only point at earlier items)."""
    rng = random.Random(seed)
    statuses = list(STATUS_WEIGHTS)
    weights = list(STATUS_WEIGHTS.values())
    items: list[dict[str, Any]] = []
    incomplete: list[int] = []  # indexes of items that will never be completed here
    completed: list[int] = []
    for i in range(n_work):
        status = rng.choices(statuses, weights)[0]
        item: dict[str, Any] = {"path": f"/work/q{i % 100:02d}/item-{i:07d}.job", "status": status}
        if rng.random() < 0.8:
            item["priority"] = rng.randint(0, 999)
        if i > 10 and rng.random() < 0.2:
            # 1-3 earlier items, completed or not (status 'blocked' always has an open one).
            refs = {rng.randrange(i) for _ in range(rng.randint(1, 3))}
            if status == "blocked" and incomplete:
                refs.add(rng.choice(incomplete))
            item["depends_on"] = sorted(items[j]["path"] for j in refs)
            if len(item["depends_on"]) == 1:
                item["depends_on"] = item["depends_on"][0]
        if rng.random() < 0.7:
            item["tags"] = rng.sample(TAG_POOL, rng.randint(1, 2))
        (completed if status == "completed" else incomplete).append(i)
        items.append(item)
    if adversarial:
        # Half of the ready items: highest priorities (lowest numbers, before every normal
        # item) and a dependency on an unfinished item, so they are not ready at all.
        open_targets = [j for j in incomplete if items[j]["status"] in ("pending", "in_progress")]
        ready = [i for i, it in enumerate(items) if it["status"] == "ready" and i > 0]
        rng.shuffle(ready)
        for rank, i in enumerate(sorted(ready[: len(ready) // 2])):
            earlier = [j for j in open_targets if j < i]
            if not earlier:
                continue
            items[i]["priority"] = -1_000_000 + rank
            items[i]["depends_on"] = items[rng.choice(earlier)]["path"]
            items[i]["trap"] = True
    return items


# --paging: statuses by position in each block of 50 (fixed counts, so page 500 exists).
PAGING_STATUSES = ["ready"] * 13 + ["pending"] * 13 + ["in_progress"] * 13 + ["blocked"] * 11
PAGE_ROWS = 100
PAGES = (1, 250, 500)
TARGET_PAGE_MS = 5.0


def plan_paging_dataset(n_work: int, seed: int) -> list[dict[str, Any]]:
    """Work items for --paging: every blocked item (and every third pending one) depends on
    an earlier in_progress item, which stays open."""
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    open_targets: list[str] = []
    for i in range(n_work):
        status = PAGING_STATUSES[i % len(PAGING_STATUSES)]
        item: dict[str, Any] = {"path": f"/work/q{i % 100:02d}/item-{i:07d}.job", "status": status}
        if rng.random() < 0.8:
            item["priority"] = rng.randint(0, 999)
        if rng.random() < 0.7:
            item["tags"] = rng.sample(TAG_POOL, rng.randint(1, 2))
        if i % 1000 == 999:  # a rare tag: one item in a thousand
            item["tags"] = [*item.get("tags", []), "rare"]
        blocked = status == "blocked" or (status == "pending" and i % 3 == 0)
        if blocked and open_targets:
            item["depends_on"] = rng.choice(open_targets)
        if status == "in_progress":
            open_targets.append(item["path"])
        items.append(item)
    return items


def load(
    queue: WorkQueue,
    n_files: int,
    n_work: int,
    seed: int,
    adversarial: bool,
    enqueue_chunk: int,
    paging: bool = False,
) -> dict[str, Any]:
    store = queue.store
    rng = random.Random(seed + 1)
    n_plain = max(0, n_files - n_work)
    stats: dict[str, Any] = {}

    # Plain paths: put_many in chunks (each chunk one transaction).
    start = time.perf_counter()
    for base in range(0, n_plain, PUT_CHUNK):
        batch = [
            {
                "path": f"/data/d{i % 1000:03d}/f{i:08d}.bin",
                "size": rng.randint(0, 1 << 20),
                "file_type": "application/octet-stream",
            }
            for i in range(base, min(n_plain, base + PUT_CHUNK))
        ]
        store.put_many(batch)
        log(f"  put_many {base + len(batch):,}/{n_plain:,}")
    stats["put_seconds"] = time.perf_counter() - start
    stats["paths"] = n_plain

    # Work items: enqueue_many in chunks, in dependency order.
    items = plan_paging_dataset(n_work, seed) if paging else plan_dataset(n_work, seed, adversarial)
    stats["traps"] = sum(1 for it in items if it.get("trap"))
    start = time.perf_counter()
    base, chunk, retries = 0, enqueue_chunk, 0
    while base < n_work:
        batch = [{k: v for k, v in it.items() if k != "trap"} for it in items[base : base + chunk]]
        try:
            queue.enqueue_many(batch)
        except NexusDatabaseError as exc:
            # PostgreSQL: the projection triggers take one advisory lock per dependency
            # reference; the server-wide lock table (max_locks_per_transaction x
            # max_connections) can run out. The transaction rolled back: retry smaller.
            if "max_locks_per_transaction" not in str(exc) or chunk <= 50:
                raise
            chunk //= 2
            retries += 1
            log(f"  enqueue_many: out of lock slots, retrying with calls of {chunk:,}")
            continue
        base += len(batch)
        log(f"  enqueue_many {base:,}/{n_work:,}")
    stats["enqueue_seconds"] = time.perf_counter() - start
    stats["enqueue_retries"] = retries
    stats["enqueue_chunk_final"] = chunk
    stats["items"] = n_work

    # in_progress items need worker_id and started_at; a quarter of plain paths get a key.
    now = datetime.now(timezone.utc)
    rows: list[tuple[str, str, Any]] = []
    for i, it in enumerate(items):
        if it["status"] == "in_progress":
            rows.append((it["path"], "worker_id", f"worker-{i % 16}"))
            rows.append(
                (
                    it["path"],
                    "started_at",
                    (now - timedelta(seconds=rng.randint(0, 3600))).isoformat(),
                )
            )
    for i in range(0, n_plain, 4):
        rows.append((f"/data/d{i % 1000:03d}/f{i:08d}.bin", "owner", f"user{i % 50}"))
    start = time.perf_counter()
    for base in range(0, len(rows), PUT_CHUNK):
        store.set_file_metadata_many(rows[base : base + PUT_CHUNK])
        log(f"  set_file_metadata_many {min(len(rows), base + PUT_CHUNK):,}/{len(rows):,}")
    stats["metadata_seconds"] = time.perf_counter() - start
    stats["metadata_rows"] = len(rows)
    return stats


def analyze(db: BenchDB, store: SQLAlchemyMetadataStore) -> None:
    """PostgreSQL: ANALYZE once after the bulk load (autovacuum would do it soon anyway)."""
    if db.kind == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")


def explain(db: BenchDB, store: SQLAlchemyMetadataStore, view: str, limit: int | None) -> str:
    suffix = f" LIMIT {limit}" if limit else ""
    sql = f"SELECT * FROM {view}{suffix}"
    with store.engine.connect() as conn:
        if db.kind == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).all()
            return "\n".join(f"    {r[3]}" for r in rows)
        rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql).all()
        return "\n".join(f"    {r[0]}" for r in rows)


CALLS = [
    ("ready", "get_ready_work", "ready_work_items"),
    ("pending", "get_pending_work", "pending_work_items"),
    ("blocked", "get_blocked_work", "blocked_work_items"),
    ("by_priority", "get_work_by_priority", "work_by_priority"),
    ("in_progress", "get_in_progress_work", "in_progress_work"),
]


def _per_s(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}" if seconds > 0 else "-"


def verdict(p50: float, target: float | None) -> str:
    if target is None:
        return ""
    if p50 <= target:
        return "ok"
    return f"MISS x{p50 / target:.1f}"


def measure(queue: WorkQueue, reps: int, reps_nolimit: int) -> list[dict[str, Any]]:
    store = queue.store
    results: list[dict[str, Any]] = []
    for short, method, view in CALLS:
        fn = getattr(store, method)
        for limit in (10, 100, None):
            n = reps if limit is not None else reps_nolimit
            if n == 0:
                continue
            fn(limit=limit)  # warm-up (statement cache, pages)
            durations, rows = timed(lambda fn=fn, limit=limit: fn(limit=limit), n)
            if limit == 10 and short == "ready":
                target = TARGET_READY10_MS
            elif limit == 100:
                target = TARGET_LIMIT100_MS
            else:
                target = None
            results.append(
                {
                    "call": f"{method}({'' if limit is None else f'limit={limit}'})",
                    "view": view,
                    "short": short,
                    "limit": limit,
                    "rows": len(rows),
                    "reps": n,
                    "p50": percentile(durations, 0.5),
                    "p95": percentile(durations, 0.95),
                    "seed": SEED_MS[short],
                    "target": target,
                }
            )
    queue.work_stats()
    durations, stats = timed(queue.work_stats, reps)
    results.append(
        {
            "call": "work_stats()",
            "view": None,
            "short": "stats",
            "limit": None,
            "rows": sum(stats["by_status"].values()),
            "reps": reps,
            "p50": percentile(durations, 0.5),
            "p95": percentile(durations, 0.95),
            "seed": None,
            "target": TARGET_STATS_MS,
            "stats": stats,
        }
    )
    return results


def render(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        rows.append(
            [
                r["call"],
                f"{r['rows']:,}",
                str(r["reps"]),
                fmt_ms(r["p50"]),
                fmt_ms(r["p95"]),
                "-" if r["seed"] is None else f"< {r['seed']:.0f}",
                "-" if r["target"] is None else f"<= {r['target']:g}",
                verdict(r["p50"], r["target"]),
            ]
        )
    return table(
        ["call", "rows", "reps", "p50 ms", "p95 ms", "seed ms (10k/2k)", "target p50 ms", ""],
        rows,
        "lrrrrrrl",
    )


PAGED_CALLS = [
    ("page_ready_work", {}),
    ("page_pending_work", {}),
    ("page_blocked_work", {}),
    ("page_work_by_priority", {}),
    ("page_in_progress_work", {}),
    ("page_ready_work", {"tags": ["urgent"]}),
    ("page_work_by_priority", {"tags": ["rare"]}),
    ("page_work_by_priority", {"tags": ["urgent", "gpu"]}),
    ("page_ready_work", {"path_prefix": "/work/q07/"}),
    ("page_work_by_priority", {"path_prefix": "/work/q07/item-00"}),
]


def measure_pages(store: SQLAlchemyMetadataStore, reps: int) -> list[dict[str, Any]]:
    """Page 1, 250 and 500 (100 rows each) of each paged call: the cursor of page n is
    found by walking the pages before it, then page n alone is timed."""
    results: list[dict[str, Any]] = []
    for method, filters in PAGED_CALLS:
        fn = getattr(store, method)
        cursors: dict[int, str | None] = {1: None}
        cursor: str | None = None
        for page in range(1, max(PAGES)):
            _items, cursor = fn(PAGE_ROWS, after=cursor, **filters)
            if cursor is None:
                break
            cursors[page + 1] = cursor
        args = ", ".join(f"{k}={v!r}" for k, v in filters.items())
        for page in PAGES:
            if page not in cursors:
                continue
            after = cursors[page]
            fn(PAGE_ROWS, after=after, **filters)  # warm-up
            durations, result = timed(
                lambda fn=fn, after=after, f=filters: fn(PAGE_ROWS, after=after, **f), reps
            )
            results.append(
                {
                    "call": f"{method}({PAGE_ROWS}{', ' + args if args else ''})",
                    "page": page,
                    "rows": len(result.items),
                    "reps": reps,
                    "p50": percentile(durations, 0.5),
                    "p95": percentile(durations, 0.95),
                    "target": None if filters else TARGET_PAGE_MS,
                }
            )
    return results


def render_pages(results: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["call"],
            str(r["page"]),
            f"{r['rows']:,}",
            str(r["reps"]),
            fmt_ms(r["p50"]),
            fmt_ms(r["p95"]),
            "-" if r["target"] is None else f"<= {r['target']:g}",
            verdict(r["p50"], r["target"]),
        ]
        for r in results
    ]
    return table(
        ["call", "page", "rows", "reps", "p50 ms", "p95 ms", "target p50 ms", ""],
        rows,
        "lrrrrrrl",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db", default="sqlite", help="sqlite | PATH | postgresql | postgresql://server"
    )
    parser.add_argument(
        "--files",
        type=int,
        default=None,
        help="paths in total (work items included; default 10000, with --paging --work)",
    )
    parser.add_argument("--work", type=int, default=2_000, help="work items")
    parser.add_argument("--reps", type=int, default=50, help="repetitions per limited call")
    parser.add_argument(
        "--reps-nolimit",
        type=int,
        default=None,
        help="repetitions of no-limit calls (default 50, 5 above 20k items, 0 with --paging)",
    )
    parser.add_argument(
        "--adversarial",
        action="store_true",
        help="half the ready items blocked and placed at the highest priorities",
    )
    parser.add_argument(
        "--paging",
        action="store_true",
        help="measure page 1/250/500 of page_*_work on a dataset where every view has them",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--explain", action="store_true", help="print each view's plan (limit 10)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--enqueue-chunk",
        type=int,
        default=None,
        help="items per enqueue_many call (default 20000 on SQLite, 2000 on "
        "PostgreSQL, where one call of ~8k items exceeds max_locks_per_transaction)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if args.files is None:
        args.files = args.work if args.paging else max(10_000, args.work)
    if args.work > args.files:
        parser.error("--work cannot exceed --files")
    reps_nolimit = args.reps_nolimit
    if reps_nolimit is None:
        # --paging: whole views of a million rows take seconds each and measure nothing new.
        reps_nolimit = 0 if args.paging else args.reps if args.work <= 20_000 else 5

    with bench_database(args.db, keep=args.keep) as db:
        log(f"loading {args.files:,} paths / {args.work:,} work items into {db.label}")
        store = SQLAlchemyMetadataStore(db.url)
        queue = WorkQueue(store)
        try:
            chunk = args.enqueue_chunk or ENQUEUE_CHUNK[db.kind]
            load_stats = load(
                queue, args.files, args.work, args.seed, args.adversarial, chunk, args.paging
            )
            load_stats["enqueue_chunk"] = chunk
            analyze(db, store)
            size = db.size_bytes()
            log("timing")
            page_results = measure_pages(store, args.reps) if args.paging else []
            results = measure(queue, args.reps, reps_nolimit)
            plans = (
                {view: explain(db, store, view, 10) for _, _, view in CALLS} if args.explain else {}
            )
        finally:
            queue.close()
            store.close()
        shape = (
            "adversarial (half the ready items blocked, at the highest priorities)"
            if args.adversarial
            else "paging (ready/pending/in_progress 26 %, blocked 22 %)"
            if args.paging
            else "normal"
        )
        print(
            header(
                "nexus views benchmark",
                db,
                {
                    "dataset": f"{args.files:,} paths, {args.work:,} work items, "
                    f"shape {shape}, seed {args.seed}",
                },
            )
        )
        p, w, m = (
            load_stats["put_seconds"],
            load_stats["enqueue_seconds"],
            load_stats["metadata_seconds"],
        )
        total = p + w + m
        n_paths, n_items, n_rows = (
            load_stats["paths"],
            load_stats["items"],
            load_stats["metadata_rows"],
        )
        chunk = load_stats["enqueue_chunk"]
        print(
            f"load:        put_many {n_paths:,} paths in {p:.1f} s ({_per_s(n_paths, p)} paths/s)"
        )
        retried = load_stats["enqueue_retries"]
        note = (
            f"; {retried} call(s) ran out of PostgreSQL lock slots and were retried, "
            f"calls of {load_stats['enqueue_chunk_final']:,} from then on"
            if retried
            else ""
        )
        print(
            f"             enqueue_many {n_items:,} items (calls of {chunk:,}) in {w:.1f} s "
            f"({_per_s(n_items, w)} items/s){note}"
        )
        print(
            f"             set_file_metadata_many {n_rows:,} rows in {m:.1f} s "
            f"({_per_s(n_rows, m)} rows/s)"
        )
        print(f"             total {total:.1f} s ({_per_s(args.files, total)} paths/s overall)")
        print(f"size:        {fmt_bytes(size)} ({size:,} bytes)")
        stats = results[-1]["stats"]
        print(f"work_stats:  {json.dumps(stats, sort_keys=True)}")
        if args.adversarial:
            print(
                f"traps:       {load_stats['traps']:,} ready-status items with an open "
                "dependency, at priorities < 0 (ahead of every ready item)"
            )
        print()
        if page_results:
            print(f"keyset pages of {PAGE_ROWS} rows (page n timed alone, its cursor given):")
            print(render_pages(page_results))
            print()
        print(render(results))
        if plans:
            print()
            for view, plan in plans.items():
                print(f"plan {view} LIMIT 10:\n{plan}")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "db": db.kind,
                        "files": args.files,
                        "work": args.work,
                        "adversarial": args.adversarial,
                        "load": load_stats,
                        "size_bytes": size,
                        "results": results,
                        "pages": page_results,
                    },
                    indent=1,
                    default=str,
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
