"""Benchmark of retention: claims and views with N completed items in history vs none, and
the rate of ``WorkQueue.prune``.

    python benchmarks/retention.py --db sqlite --history 1000000
    python benchmarks/retention.py --db postgresql --history 200000

One throwaway database (``--db`` as in benchmarks/common.py), four steps:

a. empty: ``--ready`` ready items; ``--claims`` claims, each ``claim_ready_work(limit=1)``
   (timed) then ``complete_work``; ``--reps`` calls each of ``get_ready_work(limit=10)``,
   ``get_work_by_priority(limit=10)`` and ``work_stats()`` -> p50 / p95 ms;
b. history: N completed items are added (``enqueue_many(status="completed")`` in calls of
   ``--chunk``, then plain SQL gives each a ``finished_at`` two days back and its ``claimed``
   and ``completed`` history rows: 3 history rows per item, like a drained one); fresh ready
   items, the same measures (PostgreSQL: after ``VACUUM ANALYZE``, standing in for
   autovacuum, which a benchmark server may run without);
c. prune: ``prune(timedelta(days=1), batch_size=--batch-size)`` removes the N items while a
   second process claims and completes in a loop -> items/s, and that process's claims per
   second and claim and completion p50 / p95 / max during the prune (what the prune's batches
   cost a worker);
d. after the prune (PostgreSQL: and ``VACUUM ANALYZE``): the same measures as a.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
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
    timed,
)

nexus_version()  # record the code's version before importing it

from nexus.storage.metadata_store import SQLAlchemyMetadataStore  # noqa: E402
from nexus.storage.types import utcnow  # noqa: E402
from nexus.work import WorkQueue  # noqa: E402

SEED_SQL = {
    "sqlite": (
        "UPDATE work_items SET finished_at = :at, attempts = 1"
        " WHERE path_id IN (SELECT value FROM json_each(:ids))",
        "INSERT INTO work_history (path_id, tenant_id, event, at, worker_id)"
        " SELECT j.value, 'default', e.event, :at, 'seed' FROM json_each(:ids) j,"
        " (SELECT 'claimed' AS event UNION ALL SELECT 'completed') e",
    ),
    "postgresql": (
        "UPDATE work_items SET finished_at = %(at)s, attempts = 1"
        " WHERE path_id = ANY (%(ids)s::text[])",
        "INSERT INTO work_history (path_id, tenant_id, event, at, worker_id)"
        " SELECT u.id, 'default', e.event, %(at)s, 'seed' FROM unnest(%(ids)s::text[]) u(id),"
        " (VALUES ('claimed'), ('completed')) e(event)",
    ),
}


def vacuum_analyze(url: str) -> None:
    """PostgreSQL: what autovacuum would do after a bulk change (this server may run without
    it), so the plans of the measures see the tables as they are."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


@contextmanager
def opened(url: str) -> Iterator[WorkQueue]:
    store = SQLAlchemyMetadataStore(url)
    queue = WorkQueue(store)
    try:
        yield queue
    finally:
        queue.close()
        store.close()


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95), "n": len(values)}


def enqueue_ready(queue: WorkQueue, prefix: str, n: int) -> None:
    queue.enqueue_many({"path": f"{prefix}/item-{i:07d}", "priority": i % 100} for i in range(n))


def claim_and_complete(queue: WorkQueue) -> tuple[float, float] | None:
    """One claim, then its completion: both durations (ms); None when nothing was ready."""
    start = time.perf_counter()
    items = queue.claim_ready_work("bench", limit=1)
    claimed = time.perf_counter()
    if not items:
        return None
    queue.complete_work(items[0]["path_id"], items[0]["lease_token"] or "")
    return (claimed - start) * 1000, (time.perf_counter() - claimed) * 1000


def measure(queue: WorkQueue, prefix: str, args: argparse.Namespace) -> dict[str, Any]:
    """Claim and view timings on fresh ready items under ``prefix``."""
    enqueue_ready(queue, prefix, args.ready)
    timings = [t for t in (claim_and_complete(queue) for _ in range(args.claims)) if t]
    claims = [claim for claim, _ in timings]
    store = queue.store
    ready, _ = timed(lambda: store.get_ready_work(limit=10), args.reps)
    by_priority, _ = timed(lambda: store.get_work_by_priority(limit=10), args.reps)
    stats, _ = timed(queue.work_stats, args.reps)
    return {
        "claim": summary(claims),
        "get_ready_work(limit=10)": summary(ready),
        "get_work_by_priority(limit=10)": summary(by_priority),
        "work_stats()": summary(stats),
        "completed": queue.work_stats()["by_status"]["completed"],
    }


def seed_history(queue: WorkQueue, kind: str, n: int, chunk: int) -> float:
    """N completed items finished two days ago, 3 history rows each; items/s."""
    update, insert = SEED_SQL[kind]
    at = queue.db.timestamp(utcnow() - timedelta(days=2))
    loaded, start = 0, time.perf_counter()
    while loaded < n:
        size = min(chunk, n - loaded)
        items = queue.enqueue_many(
            {
                "path": f"/history/h{(loaded + i) % 1000:03d}/item-{loaded + i:08d}",
                "status": "completed",
                "priority": (loaded + i) % 100,
            }
            for i in range(size)
        )
        ids = [item["path_id"] for item in items]
        params = {"ids": ids if kind == "postgresql" else json.dumps(ids), "at": at}

        def work(cur: Any, params: dict[str, Any] = params) -> None:
            cur.execute(update, params)
            cur.execute(insert, params)

        queue.db.transaction(work)
        loaded += size
        if loaded % (chunk * 10) == 0:
            log(f"   {loaded:,} ({loaded / (time.perf_counter() - start):,.0f}/s)")
    return n / (time.perf_counter() - start)


def claimer(url: str, ready: Any, go: Any, stop: Any, results: Any) -> None:
    """Claims and completes in a loop (refilling when nothing is ready); records the claims
    made between ``go`` and ``stop``."""
    timings: list[tuple[float, float]] = []
    refills = 0
    with opened(url) as queue:
        while not stop.is_set():
            timing = claim_and_complete(queue)
            if timing is None:
                enqueue_ready(queue, f"/during/r{refills}", 1000)
                refills += 1
                continue
            ready.set()
            if go.is_set():
                timings.append(timing)
    results.put(timings)


def prune_with_claimer(url: str, batch_size: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    ready, go, stop, results = (
        context.Event(),
        context.Event(),
        context.Event(),
        context.Queue(),
    )
    with opened(url) as queue:
        process = context.Process(target=claimer, args=(url, ready, go, stop, results))
        process.start()
        if not ready.wait(timeout=120):
            raise SystemExit("the claimer process did not start claiming")
        go.set()
        start = time.perf_counter()
        pruned = queue.prune(timedelta(days=1), batch_size=batch_size)
        seconds = time.perf_counter() - start
        stop.set()
        timings: list[tuple[float, float]] = results.get(timeout=120)
        process.join(timeout=60)
    claims = [claim for claim, _ in timings]
    completions = [complete for _, complete in timings]
    return {
        "pruned": pruned,
        "seconds": seconds,
        "rate": pruned / seconds if seconds else float("inf"),
        "claim": summary(claims),
        "claim_max": max(claims, default=float("nan")),
        "complete": summary(completions),
        "complete_max": max(completions, default=float("nan")),
        "claims_per_second": len(claims) / seconds if seconds else float("nan"),
        "exitcode": process.exitcode,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="sqlite", help="sqlite | postgresql | a path or URL")
    parser.add_argument("--history", type=int, default=1_000_000, help="completed items (N)")
    parser.add_argument("--chunk", type=int, default=20_000, help="items per seeding call")
    parser.add_argument("--ready", type=int, default=5_000, help="ready items per measure")
    parser.add_argument("--claims", type=int, default=2_000, help="claims timed per measure")
    parser.add_argument("--reps", type=int, default=200, help="calls timed per view")
    parser.add_argument("--batch-size", type=int, default=1000, help="prune batch_size")
    parser.add_argument("--json", help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if min(args.history, args.chunk, args.ready, args.claims, args.reps, args.batch_size) < 1:
        parser.error("every size must be positive")
    args.claims = min(args.claims, args.ready)

    out: dict[str, Any] = {}
    with bench_database(args.db, keep=args.keep, tag="retention") as db:
        with opened(db.url) as queue:
            log("a. empty")
            out["empty"] = measure(queue, "/a", args)
            log(f"b. seeding {args.history:,} completed items")
            out["seed_rate"] = seed_history(queue, db.kind, args.history, args.chunk)
            if db.kind == "postgresql":
                vacuum_analyze(db.url)
            out["history"] = measure(queue, "/b", args)
        log(f"c. prune, batch_size={args.batch_size}, one claimer process alongside")
        out["prune"] = prune_with_claimer(db.url, args.batch_size)
        if db.kind == "postgresql":
            vacuum_analyze(db.url)
        with opened(db.url) as queue:
            log("d. after the prune")
            out["after"] = measure(queue, "/d", args)
            left = queue.work_stats()["by_status"]["completed"]
        print(
            header(
                "nexus retention benchmark",
                db,
                {"history": f"{args.history:,} completed items (seeded {out['seed_rate']:,.0f}/s)"},
            )
        )
    n = (
        f"{args.history / 1e6:g}M"
        if args.history >= 1_000_000
        else f"{args.history / 1000:g}k"
        if args.history >= 1000
        else str(args.history)
    )
    rows = []
    for call in (
        "claim",
        "get_ready_work(limit=10)",
        "get_work_by_priority(limit=10)",
        "work_stats()",
    ):
        cells = [call]
        for step in ("empty", "history", "after"):
            s = out[step][call]
            cells.append(f"{fmt_ms(s['p50'])} / {fmt_ms(s['p95'])}")
        rows.append(cells)
    print()
    print(
        table(
            ["p50 / p95 ms", "no history", f"{n} completed in history", "after prune"],
            rows,
        )
    )
    prune = out["prune"]
    print()
    print(
        table(
            [
                "prune",
                "items",
                "seconds",
                "items/s",
                "claim + complete meanwhile",
                "claim p50 / p95 / max ms",
                "complete p50 / p95 / max ms",
            ],
            [
                [
                    f"batch_size={args.batch_size}",
                    f"{prune['pruned']:,}",
                    f"{prune['seconds']:.1f}",
                    f"{prune['rate']:,.0f}",
                    f"{prune['claim']['n']:,} ({prune['claims_per_second']:,.0f}/s)",
                    f"{fmt_ms(prune['claim']['p50'])} / {fmt_ms(prune['claim']['p95'])}"
                    f" / {fmt_ms(prune['claim_max'])}",
                    f"{fmt_ms(prune['complete']['p50'])} / {fmt_ms(prune['complete']['p95'])}"
                    f" / {fmt_ms(prune['complete_max'])}",
                ]
            ],
        )
    )
    ok = prune["pruned"] == args.history and prune["exitcode"] == 0
    print()
    print(f"pruned {prune['pruned']:,} of {args.history:,}; completed items left: {left:,}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=2, default=str)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
