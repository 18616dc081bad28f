"""benchmarks/metrics.py runs, at a tiny size, on SQLite and PostgreSQL, so it cannot rot:
exit code 0 and a timing row for the scrape and each of its parts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_metrics_benchmark_smoke(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "sqlite":
        db = str(tmp_path / "bench.db")
    else:
        server = request.getfixturevalue("pg_server")
        db = str(server.url.render_as_string(hide_password=False))
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "metrics.py"),
            *("--db", db, "--items", "300", "--chunk", "100", "--worked", "40", "--reps", "3"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
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
