"""``nexus worker run`` on SQLite and PostgreSQL: a command per item with the item in
NEXUS_PATH / NEXUS_PATH_ID and in ``{path}`` arguments, exit 0 completing it and anything else
failing it with the command's output; and, with the real command in a real process, Ctrl-C
(SIGINT): the first lets the running command finish and completes its item, a second
terminates it and releases its item; either way nothing stays in_progress."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nexus.cli.main import cli
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkItem, WorkQueue

CHECK_ITEM = (
    "import os, sys; "
    "assert sys.argv[1] == os.environ['NEXUS_PATH'], sys.argv; "
    "assert sys.argv[2] == os.environ['NEXUS_PATH_ID'], sys.argv; "
    "open(sys.argv[3], 'a').write(sys.argv[1] + '\\n')"
)


def items(db_url: str) -> dict[str, WorkItem]:
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        found = {}
        for record in store.list():
            item = queue.get_work_item(record.virtual_path)
            if item is not None:
                found[record.virtual_path] = item
        queue.close()
    return found


def enqueue(db_url: str, *paths: str, max_attempts: int = 3) -> None:
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        queue.enqueue_many([{"path": p, "max_attempts": max_attempts} for p in paths])
        queue.close()


def test_the_item_reaches_the_command(db_url: str, tmp_path: Path) -> None:
    enqueue(db_url, "/w/a", "/w/b")
    log = tmp_path / "seen.txt"
    result = CliRunner().invoke(
        cli,
        ["worker", "run", "--db", db_url, "--until-idle", "--json", "--concurrency", "2", "--",
         sys.executable, "-c", CHECK_ITEM, "{path}", "{path_id}", str(log)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["claimed"] == 2 and summary["completed"] == 2 and summary["failed"] == 0
    assert sorted(log.read_text().split()) == ["/w/a", "/w/b"]
    assert {p: i["status"] for p, i in items(db_url).items()} == {
        "/w/a": "completed",
        "/w/b": "completed",
    }


def test_a_failing_command_fails_its_item(db_url: str) -> None:
    enqueue(db_url, "/w/bad", max_attempts=1)
    result = CliRunner().invoke(
        cli,
        ["worker", "run", "--db", db_url, "--until-idle", "--",
         sys.executable, "-c", "import sys; sys.exit('broken')"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "completed 0 failed 1" in result.stdout
    bad = items(db_url)["/w/bad"]
    assert bad["status"] == "failed" and bad["attempts"] == 1
    assert bad["last_error"] is not None
    assert "exit code 1" in bad["last_error"] and "broken" in bad["last_error"]


def test_max_items_and_a_missing_program(db_url: str) -> None:
    enqueue(db_url, "/w/1", "/w/2", "/w/3", max_attempts=1)
    result = CliRunner().invoke(
        cli,
        ["worker", "run", "--db", db_url, "--max-items", "1", "--json", "--", "/no/such/program"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["failed"] == 1
    statuses = sorted(i["status"] for i in items(db_url).values())
    assert statuses == ["failed", "ready", "ready"]
    failed = [i for i in items(db_url).values() if i["status"] == "failed"]
    assert "cannot run '/no/such/program'" in str(failed[0]["last_error"])


def start_worker(db_url: str, seconds: float, marker: Path) -> subprocess.Popen[str]:
    script = (
        "import pathlib, sys, time; "
        f"pathlib.Path({str(marker)!r}).write_text('started'); time.sleep({seconds})"
    )
    env = {**os.environ}
    env.pop("NEXUS_DATABASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "nexus.cli.main", "worker", "run", "--db", db_url,
         "--lease", "30s", "--json", "--", sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip


def wait_until_started(proc: subprocess.Popen[str], marker: Path) -> None:
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)


@pytest.mark.slow
def test_ctrl_c_finishes_the_running_command_then_stops(db_url: str, tmp_path: Path) -> None:
    enqueue(db_url, "/s/1", "/s/2", "/s/3")
    marker = tmp_path / "started"
    proc = start_worker(db_url, 1.5, marker)
    wait_until_started(proc, marker)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = json.loads(stdout)
    assert summary["claimed"] == 1 and summary["completed"] == 1 and summary["released"] == 0
    statuses = sorted(i["status"] for i in items(db_url).values())
    assert statuses == ["completed", "ready", "ready"]
    assert all(i["attempts"] == 0 for i in items(db_url).values() if i["status"] == "ready")


@pytest.mark.slow
def test_a_second_ctrl_c_releases_what_it_holds(db_url: str, tmp_path: Path) -> None:
    enqueue(db_url, "/s/long")
    marker = tmp_path / "started"
    proc = start_worker(db_url, 120, marker)
    wait_until_started(proc, marker)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "lost the lease" not in stderr
    summary = json.loads(stdout)
    assert summary["released"] == 1 and summary["completed"] == 0 and summary["lost"] == 0
    released = items(db_url)["/s/long"]
    assert released["status"] == "ready" and released["attempts"] == 0
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        events = [e["event"] for e in queue.get_work_history("/s/long")]
        queue.close()
    assert events[-2:] == ["claimed", "released"]
