"""Benchmark of a metrics scrape and the dashboard's overview at scale.

    python benchmarks/metrics.py --db sqlite --items 1000000
    python benchmarks/metrics.py --db postgresql --items 200000

A throwaway database (``--db`` as in benchmarks/common.py) is filled through the public API:
``--items`` items by ``enqueue_many`` in calls of ``--chunk`` (90 % ready, 10 % completed,
priorities 0-99, fixed seed), then ``--worked`` of the ready ones claimed and completed and a
tenth of those failed, so that the history and its counters hold every kind of event. Then
each of these is called ``--reps`` times and its p50/p95 printed: ``render_metrics(queue)``
(the whole ``/metrics`` text), its parts ``work_stats()``, ``work_event_counts()`` and
``oldest_ready_at()``, and the overview's ``work_throughput(24)``. None of them scans items or
history: they read maintained counters and one index entry, so their cost does not grow
with ``--items``.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import common


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--db", default="sqlite", help="sqlite | PATH | postgresql | URL")
    parser.add_argument("--items", type=int, default=100_000, help="work items loaded")
    parser.add_argument("--chunk", type=int, default=20_000, help="items per enqueue_many")
    parser.add_argument("--worked", type=int, default=2_000, help="items claimed and finished")
    parser.add_argument("--reps", type=int, default=200, help="calls timed per row")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--json", help="also write the rows as JSON here (run_all.sh passes it)")
    args = parser.parse_args(argv)
    common.nexus_version()

    from nexus.storage.metadata_store import SQLAlchemyMetadataStore
    from nexus.web.metrics import render_metrics
    from nexus.work import WorkQueue

    rng = random.Random(args.seed)
    with common.bench_database(args.db, keep=args.keep, tag="metrics") as db:
        store = SQLAlchemyMetadataStore(db.url)
        queue = WorkQueue(store)
        began = time.perf_counter()
        for start in range(0, args.items, args.chunk):
            count = min(args.chunk, args.items - start)
            queue.enqueue_many(
                {
                    "path": f"/bench/{start + i:08d}",
                    "priority": rng.randrange(100),
                    "status": "completed" if rng.random() < 0.1 else "ready",
                }
                for i in range(count)
            )
            common.log(f"loaded {start + count:,} items")
        load_seconds = time.perf_counter() - began
        finished = 0
        while finished < args.worked:
            held = queue.claim_ready_work("bench-worker", limit=min(100, args.worked - finished))
            if not held:
                break
            for n, item in enumerate(held):
                if n % 10 == 0:
                    queue.fail_work(item["virtual_path"], item["lease_token"], "x", retry=False)
            queue.complete_work_many(
                [(i["virtual_path"], i["lease_token"]) for n, i in enumerate(held) if n % 10]
            )
            finished += len(held)
        calls = {
            "render_metrics(queue)": lambda: render_metrics(queue),
            "work_stats()": queue.work_stats,
            "work_event_counts()": queue.work_event_counts,
            "oldest_ready_at()": queue.oldest_ready_at,
            "work_throughput(24)": lambda: queue.work_throughput(24),
        }
        rows = []
        for name, call in calls.items():
            call()  # warm
            durations, _ = common.timed(call, args.reps)
            rows.append(
                [
                    name,
                    f"{args.reps:,}",
                    f"{common.fmt_ms(common.percentile(durations, 0.5))} / "
                    f"{common.fmt_ms(common.percentile(durations, 0.95))}",
                ]
            )
        stats = queue.work_stats()
        print(
            common.header(
                "nexus metrics benchmark",
                db,
                {
                    "workload": f"{args.items:,} items loaded in {load_seconds:.0f} s, "
                    f"{finished:,} claimed and finished; by status {stats['by_status']}",
                    "size": common.fmt_bytes(db.size_bytes()),
                },
            )
        )
        print()
        print(common.table(["call", "calls", "p50 / p95 ms"], rows))
        if args.json:
            with open(args.json, "w") as out:
                keys = ("call", "calls", "p50_p95_ms")
                json.dump({"rows": [dict(zip(keys, row, strict=True)) for row in rows]}, out)
        queue.close()
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
