"""benchmarks/retention.py runs, at a tiny size, on SQLite and PostgreSQL, so it cannot rot:
exit code 0 (which it returns only when the prune removed every seeded item and the claimer
process ended cleanly) and both of its tables printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_retention_benchmark_smoke(
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
            str(ROOT / "benchmarks" / "retention.py"),
            "--db",
            db,
            "--history",
            "300",
            "--chunk",
            "100",
            "--ready",
            "50",
            "--claims",
            "20",
            "--reps",
            "5",
            "--batch-size",
            "100",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| claim " in proc.stdout
    assert "batch_size=100" in proc.stdout
    assert "pruned 300 of 300" in proc.stdout
