"""The soak (benchmarks/soak.py) runs green on SQLite and PostgreSQL at a small size: worker
processes (the Worker runner and a plain claim loop) drain a DAG with planned failures while
workers are SIGKILLed and, on PostgreSQL, their backends terminated; the history check finds
zero violations. The checker itself is shown to catch what it claims to (a double claim, a
reclaim of a live lease, a success counted as a failure, a lost item), so a green soak means
something. The PostgreSQL restart variant never runs here (other tests share the server)."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "benchmarks" / "soak.py"

_timeout = (
    [pytest.mark.timeout(150)] if importlib.util.find_spec("pytest_timeout") is not None else []
)
pytestmark = [pytest.mark.slow, *_timeout]


def _soak_module() -> ModuleType:
    if "nexus_soak_under_test" in sys.modules:
        return sys.modules["nexus_soak_under_test"]
    sys.path.append(str(SOAK.parent))  # its common.py
    spec = importlib.util.spec_from_file_location("nexus_soak_under_test", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _row(out: str, label: str) -> str:
    match = re.search(rf"^\| {re.escape(label)}\s*\|\s*(.*?)\s*\|$", out, re.MULTILINE)
    assert match, f"no {label!r} row in:\n{out}"
    return match.group(1)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_soak_finds_no_violation(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "sqlite":
        db = str(tmp_path / "soak.db")
    else:
        server = request.getfixturevalue("pg_server")  # skips (or fails in CI) without one
        db = server.url.render_as_string(hide_password=False)
    args = [sys.executable, str(SOAK), "--db", db, "--workers", "4", "--items", "1500"]
    args += ["--minutes", "0.35", "--kill-every", "3", "--terminate-every", "1.5"]
    args += ["--drain-seconds", "30"]
    # Its own session, so a timeout kills the worker processes too.
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the soak did not finish in 120 s:\n{out[-3000:]}\n{err[-3000:]}")
    assert proc.returncode == 0, out[-4000:] + err[-2000:]
    assert _row(out, "violations") == "0"
    assert _row(out, "items enqueued") == "1500 of 1500"
    completed, dead = int(_row(out, "completed")), int(_row(out, "dead-lettered (failed)"))
    held = int(_row(out, "held behind a dead letter"))
    assert completed + dead + held == 1500 and dead >= 5  # about 1 % always fails
    assert int(_row(out, "workers SIGKILLed")) >= 2
    assert int(_row(out, "retries (retried events)")) >= 40  # about 5 % fail once
    if backend == "postgresql":
        assert int(_row(out, "backends terminated")) >= 3


# ------------------------------------------------------------------ the checker catches


AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _events(soak: ModuleType, *spec: tuple[str, float, str | None, dict[str, object]]) -> list:
    return [
        soak.Event(n, event, AT + timedelta(seconds=t), worker, detail)
        for n, (event, t, worker, detail) in enumerate(spec, start=1)
    ]


def _violations(soak: ModuleType, events: list, path: str = "/soak/000001") -> list[str]:
    report = soak.Report()
    soak.replay(path, events, 5.0, report)
    return report.violations


def test_the_checker_passes_a_clean_history_and_catches_broken_ones() -> None:
    soak = _soak_module()
    assert soak.kind_of(1) == "ok" and soak.kind_of(40) == "once"
    clean = _events(
        soak,
        ("enqueued", 0, None, {"status": "ready"}),
        ("claimed", 1, "a", {"attempt": 1}),
        ("heartbeat", 4, "a", {"lease_seconds": 5}),
        ("reclaimed", 9.5, "a", {"to": "ready", "attempt": 1}),  # 4 + 5 s: expired
        ("claimed", 10, "b", {"attempt": 2}),
        ("completed", 11, "b", {"attempt": 2}),
    )
    assert _violations(soak, clean) == []

    double = _events(
        soak,
        ("enqueued", 0, None, {"status": "ready"}),
        ("claimed", 1, "a", {"attempt": 1}),
        ("claimed", 2, "b", {"attempt": 2}),
        ("completed", 3, "b", {"attempt": 2}),
    )
    assert any("while in_progress" in v for v in _violations(soak, double))

    stolen = _events(
        soak,
        ("enqueued", 0, None, {"status": "ready"}),
        ("claimed", 1, "a", {"attempt": 1}),
        ("heartbeat", 4, "a", {"lease_seconds": 5}),
        ("reclaimed", 7, "a", {"to": "ready", "attempt": 1}),  # lease held until 9 s
    )
    assert any("lease held until" in v for v in _violations(soak, stolen))

    success_counted_as_failure = _events(
        soak,
        ("enqueued", 0, None, {"status": "ready"}),
        ("claimed", 1, "a", {"attempt": 1}),
        ("retried", 2, "a", {"error": "NexusDatabaseError: gone", "attempt": 1}),
    )
    assert any("handler succeeds" in v for v in _violations(soak, success_counted_as_failure))

    stale_completion = _events(
        soak,
        ("enqueued", 0, None, {"status": "ready"}),
        ("claimed", 1, "a", {"attempt": 1}),
        ("completed", 2, "b", {"attempt": 1}),
    )
    assert any("holds the lease" in v for v in _violations(soak, stale_completion))

    planned = "PlannedFailure: planned failure of /soak/000040 at attempt 1"
    once = _events(
        soak,
        ("enqueued", 0, None, {"status": "ready"}),
        ("claimed", 1, "a", {"attempt": 1}),
        ("retried", 2, "a", {"error": planned, "attempt": 1}),
        ("claimed", 3, "a", {"attempt": 2}),
        ("completed", 4, "a", {"attempt": 2}),
    )
    assert _violations(soak, once, "/soak/000040") == []
    assert _violations(soak, once[:3] + once[4:], "/soak/000040")  # completed while ready


def test_the_checker_reports_handler_runs_outside_their_lease() -> None:
    soak = _soak_module()
    report = soak.Report()
    result = soak.Replay(state="completed", attempts=1)
    result.claims = _events(soak, ("claimed", 1, "a", {"attempt": 1}))
    runs = [
        {"path": "/soak/000001", "worker": "a", "attempt": 1, "start": 1.0, "end": 3.0, "ok": True},
        {"path": "/soak/000001", "worker": "b", "attempt": 1, "start": 2.0, "end": 4.0, "ok": True},
    ]
    soak.check_runs("/soak/000001", runs, result, result.claims, report)
    text = "\n".join(report.violations)
    assert "without its claim" in text and "ran twice" in text and "overlap" in text
