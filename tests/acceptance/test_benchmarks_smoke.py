"""The benchmark scripts (views.py, drain.py, retention.py, metrics.py, peers.py, startup.py,
pressure.py: PostgreSQL only) run, at a tiny size, on SQLite and on PostgreSQL, so they cannot rot:
exit code 0, their table printed, exactly-once held in the queue drain (nexus and the bare-driver
loop) and in every peer's. The peer queues are not nexus dependencies: each is measured when
installed (benchmarks/requirements-peers.txt) and must be reported as skipped when not."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def _db_arg(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return str(tmp_path / "bench.db")
    server = request.getfixturevalue("pg_server")  # skips (or fails in CI) without a server
    # A server URL: the script creates nexus_bench_<random> there and drops it afterwards.
    return str(server.url.render_as_string(hide_password=False))


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_views_benchmark_smoke(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _db_arg(backend, request, tmp_path)
    proc = _run(
        [
            str(BENCH / "views.py"),
            "--db",
            db,
            "--files",
            "2000",
            "--work",
            "400",
            "--reps",
            "3",
            "--adversarial",
            "--explain",
        ],
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "# nexus views benchmark" in out
    assert "| get_ready_work(limit=10)" in out and "| work_stats()" in out
    for call in (
        "get_pending_work",
        "get_blocked_work",
        "get_work_by_priority",
        "get_in_progress_work",
    ):
        assert f"| {call}(limit=100)" in out
    assert "load:" in out and "paths/s" in out and "size:" in out
    assert "traps:" in out and "plan ready_work_items LIMIT 10:" in out
    if backend == "sqlite":
        assert not (tmp_path / "bench.db").with_suffix(".db.bare").exists()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_queue_benchmark_smoke(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _db_arg(backend, request, tmp_path)
    proc = _run(
        [
            str(BENCH / "drain.py"),
            "--db",
            db,
            "--items",
            "300",
            "--workers",
            "2",
            "--batch",
            "5",
            "--single",
            "50",
        ],
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "# nexus queue benchmark" in out
    assert "| drain nexus: 2 proc, batch 5" in out
    assert "| enqueue_many (one call)" in out and "| enqueue (one call per item)" in out
    assert "exactly-once (nexus): OK -- 300 items, 0 with" in out
    assert "exactly-once (bare):  OK -- 300/300 rows" in out
    assert "% of bare" in out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_retention_benchmark_smoke(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Exit code 0 only when the prune removed every seeded item and the claimer process
    ended cleanly; both tables printed."""
    db = _db_arg(backend, request, tmp_path)
    proc = _run(
        [
            str(BENCH / "retention.py"),
            *("--db", db, "--history", "300", "--chunk", "100", "--ready", "50"),
            *("--claims", "20", "--reps", "5", "--batch-size", "100"),
        ],
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| claim " in proc.stdout
    assert "batch_size=100" in proc.stdout
    assert "pruned 300 of 300" in proc.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_metrics_benchmark_smoke(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A timing row for the scrape and each of its parts."""
    db = _db_arg(backend, request, tmp_path)
    proc = _run(
        [
            str(BENCH / "metrics.py"),
            *("--db", db, "--items", "300", "--chunk", "100", "--worked", "40", "--reps", "3"),
        ],
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    for row in (
        "render_metrics(queue)",
        "work_stats()",
        "work_event_counts()",
        "oldest_ready_at()",
        "work_throughput(24)",
    ):
        assert f"| {row}" in proc.stdout, row
    assert "40 claimed and finished" in proc.stdout


# peers.py's systems per backend: (name in its table, module that must import, step rows).
PEERS = {
    "sqlite": [("huey", "huey"), ("bare-sqlite3", None)],
    "postgresql": [
        ("pgqueuer", "pgqueuer"),
        ("procrastinate", "procrastinate"),
        ("awa", "awa"),
        ("bare-psycopg", None),
    ],
}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_peers_benchmark_smoke(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Every peer of the backend that is installed runs each step with exactly-once held; one
    that is not is named as skipped (the dev extra installs none of them)."""
    db = _db_arg(backend, request, tmp_path)
    proc = _run(
        [
            str(BENCH / "peers.py"),
            *("--db", db, "--items", "40", "--workers", "1,2", "--batch", "5"),
            *("--timeout", "120", "--json", str(tmp_path / "peers.json")),
        ],
        timeout=420,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "# peer queues" in out and "| system" in out
    assert "FAILED" not in out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    for system, module in PEERS[backend]:
        mine = [line for line in rows if line.split("|")[1].strip() == system]
        if module is None or importlib.util.find_spec(module) is not None:
            steps = [line.split("|")[2].strip() for line in mine]
            assert steps.count("enqueue-one") == 1 and steps.count("enqueue-bulk") == 1, system
            assert steps.count("drain") >= 2, system  # workers 1 and 2
            assert all(line.rstrip(" |").endswith("OK") for line in mine), mine
        else:
            assert not mine, system
            assert f"skipped {system}: not installed" in out, system
    if backend == "sqlite":
        for other in ("pgqueuer", "procrastinate", "awa"):
            assert f"skipped {other}: PostgreSQL only" in out
        assert not list(tmp_path.glob("bench.db.*")), "peers left their side files"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_startup_benchmark_smoke(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A p50/p95 row for the interpreter, each --help/--version and the real command."""
    db = _db_arg(backend, request, tmp_path)
    out_json = tmp_path / "startup.json"
    proc = _run(
        [str(BENCH / "startup.py"), "--db", db, "--runs", "2", "--json", str(out_json)],
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "# nexus start-up benchmark" in proc.stdout
    for row in (
        "python -c pass",
        "nexus --help",
        "nexus --version",
        "nexus work --help",
        "nexus work stats --db DB",
    ):
        assert f"| {row} " in proc.stdout, row
    assert [row["runs"] for row in json.loads(out_json.read_text())["rows"]] == [2] * 5
@pytest.mark.postgresql
def test_pressure_benchmark_smoke(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """PostgreSQL only: every phase (held XID, REPEATABLE READ readers, VACUUM stand-in) runs
    at a few seconds and a small rate; its table, targets and profile are printed, and the
    exit code 0 means exactly-once held (every enqueued item completed once)."""
    db = _db_arg("postgresql", request, tmp_path)
    out = tmp_path / "pressure.json"
    proc = _run(
        [
            str(BENCH / "pressure.py"),
            *("--db", db, "--quick", "--rate", "200", "--json", str(out)),
        ],
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for phase in ("clean", "held", "recovery", "readers", "drain"):
        assert f"| {phase} " in text, phase
    assert "server autovacuum = " in text
    assert "targets (issue 13):" in text and "held claim p95" in text
    assert "exactly-once: OK" in text
    assert "EXPLAIN (ANALYZE, BUFFERS) of the claim's pick near the end of held" in text
    result = json.loads(out.read_text())
    assert result["holder_xid"] is not None
    assert result["readers"]["rounds"] > 0 and not result["readers"]["errors"]
    assert result["exactly_once"]["ok"] and result["exactly_once"]["enqueued"] > 0
    assert {p["phase"] for p in result["phases"]} >= {"clean", "held", "recovery", "readers"}
