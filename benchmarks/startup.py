"""Start-up time of the ``nexus`` command: what a person waits for before anything happens.

    python benchmarks/startup.py --runs 30
    python benchmarks/startup.py --runs 30 --db postgresql

Each row runs the installed ``nexus`` script (next to this Python; else
``python -m nexus.cli.main``) ``--runs`` times in a fresh process, after one untimed warm-up
run, and prints the wall-clock p50 / p95 of a run and the p50 of its CPU time (user +
system: what a run costs, nearly independent of the machine's other load):
``nexus --help``, ``nexus --version``,
``nexus work --help`` (these import click and nexus's CLI modules only: no SQLAlchemy,
Alembic, psycopg or rich) and one real command, ``nexus work stats --db DB`` (opens the
database, reads the counters, draws the tables). ``python -c pass`` is the interpreter's own
start-up, the floor under every row. ``--db`` as in benchmarks/common.py (default: a
throwaway SQLite file), created and migrated with ``nexus db upgrade`` before the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import common


def nexus_command() -> list[str]:
    script = Path(sys.executable).with_name("nexus")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nexus.cli.main"]


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_times(argv: list[str], runs: int, env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (user + system) milliseconds of ``runs`` runs of ``argv``, after
    one untimed run. The CPU time hardly depends on what else the machine runs; the
    wall-clock time is what a person waits."""
    wall: list[float] = []
    cpu: list[float] = []
    for attempt in range(runs + 1):
        cpu_before = _children_cpu_seconds()
        began = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        elapsed = (time.perf_counter() - began) * 1000
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        if attempt:
            wall.append(elapsed)
            cpu.append((_children_cpu_seconds() - cpu_before) * 1000)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--db", default="sqlite", help="sqlite | PATH | postgresql | URL")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per row")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    common.nexus_version()

    nexus = nexus_command()
    env = {k: v for k, v in os.environ.items() if k not in ("NEXUS_DATABASE_URL", "NEXUS_TENANT")}
    env["COLUMNS"] = "100"
    with common.bench_database(args.db, keep=args.keep, tag="startup") as db:
        # Created and migrated first: `work stats` only reads, so it is timed on a database
        # that is already there, as in use.
        run_times([*nexus, "db", "upgrade", "--db", db.url], 0, env)
        rows_in = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "nexus --help": [*nexus, "--help"],
            "nexus --version": [*nexus, "--version"],
            "nexus work --help": [*nexus, "work", "--help"],
            "nexus work stats --db DB": [*nexus, "work", "stats", "--db", db.url],
        }
        results = []
        for name, command in rows_in.items():
            common.log(f"{name}: {args.runs} runs")
            wall, cpu = run_times(command, args.runs, env)
            results.append(
                {
                    "command": name,
                    "runs": args.runs,
                    "p50_ms": common.percentile(wall, 0.5),
                    "p95_ms": common.percentile(wall, 0.95),
                    "cpu_p50_ms": common.percentile(cpu, 0.5),
                }
            )
        print(
            common.header(
                "nexus start-up benchmark",
                db,
                {"entry point": " ".join(nexus), "runs": f"{args.runs} per row, after 1 warm-up"},
            )
        )
        print()
        print(
            common.table(
                ["command", "runs", "p50 ms", "p95 ms", "CPU p50 ms"],
                [
                    [
                        r["command"],
                        str(r["runs"]),
                        common.fmt_ms(r["p50_ms"]),
                        common.fmt_ms(r["p95_ms"]),
                        common.fmt_ms(r["cpu_p50_ms"]),
                    ]
                    for r in results
                ],
            )
        )
    if args.json:
        args.json.write_text(json.dumps({"rows": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
