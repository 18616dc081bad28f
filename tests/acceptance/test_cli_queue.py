"""The queue commands of the `nexus` CLI, run through click's CliRunner on SQLite and
PostgreSQL: enqueue, explain, worker (a shell command per item), stats, history, reclaim,
dashboard."""

from __future__ import annotations

import sys
import time

from click.testing import CliRunner

from nexus.cli.main import cli
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_enqueue_explain_and_worker(db_url: str) -> None:
    assert "ready blockers=0" in run("enqueue", "--db", db_url, "/cli/a", "--priority", "1")
    out = run(
        "enqueue",
        "--db",
        db_url,
        "/cli/b",
        "--depends-on",
        "/cli/a",
        "--status",
        "blocked",
        "--tag",
        "x",
    )
    assert "blocked blockers=1" in out
    assert "status is ready, needs completed" in run("explain", "--db", db_url, "/cli/b")
    out = run(
        "worker",
        "--db",
        db_url,
        "--until-idle",
        "--",
        sys.executable,
        "-c",
        "import os; assert os.environ['NEXUS_PATH'].startswith('/cli/')",
    )
    assert "completed 2 failed 0" in out
    assert "has no unresolved dependencies" in run("explain", "--db", db_url, "/cli/b")
    history = run("history", "--db", db_url, "/cli/b")
    for event in ("enqueued", "promoted", "claimed", "completed"):
        assert event in history
    stats = run("stats", "--db", db_url)
    assert "completed" in stats and "2" in stats


def test_worker_fails_items_whose_command_fails(db_url: str) -> None:
    run("enqueue", "--db", db_url, "/cli/bad", "--max-attempts", "1")
    out = run(
        "worker",
        "--db",
        db_url,
        "--until-idle",
        "--",
        sys.executable,
        "-c",
        "import sys; sys.exit('broken')",
    )
    assert "completed 0 failed 1" in out
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        item = queue.get_work_item("/cli/bad")
        queue.close()
    assert item is not None and item["status"] == "failed"
    assert item["last_error"] is not None
    assert "exit code 1" in item["last_error"] and "broken" in item["last_error"]
    assert item["attempts"] == 1 and item["max_attempts"] == 1


def test_reclaim_and_dashboard(db_url: str) -> None:
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        queue.enqueue("/cli/lease")
        assert len(queue.claim_ready_work("gone", lease_seconds=0.05)) == 1
        queue.close()
    time.sleep(0.15)
    assert "reclaimed 1" in run("reclaim", "--db", db_url)
    out = run("dashboard", "--db", db_url, "--once")
    assert "work_stats" in out and "/cli/lease" in out
