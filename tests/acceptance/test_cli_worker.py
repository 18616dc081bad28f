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
    assert result.exit_code == 1, result.output  # a run in which a command failed
    assert "completed 0 promoted 0 failed 1" in result.stdout
    assert "1 of 1 commands failed" in result.stderr
    bad = items(db_url)["/w/bad"]
    assert bad["status"] == "failed" and bad["attempts"] == 1
    assert bad["last_error"] is not None
    assert "exit code 1" in bad["last_error"] and "broken" in bad["last_error"]


def test_max_items(db_url: str) -> None:
    enqueue(db_url, "/w/1", "/w/2", "/w/3")
    result = CliRunner().invoke(
        cli, ["worker", "run", "--db", db_url, "--max-items", "1", "--json", "--", "true"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["completed"] == 1
    assert sorted(i["status"] for i in items(db_url).values()) == ["completed", "ready", "ready"]


# ------------------------------------------------------- exit codes, with the real `nexus`


def nexus_command() -> list[str]:
    """The installed ``nexus`` script next to this Python (the real entry point)."""
    script = Path(sys.executable).with_name("nexus")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nexus.cli.main"]


def run_nexus(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_DATABASE_URL"}
    return subprocess.run(
        [*nexus_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _not_executable(tmp_path: Path) -> str:
    script = tmp_path / "process.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    return str(script)


# What a person mistypes: a program that is not there, a script without its x bit, a
# directory, and the same through a shell (which says so with exit status 127 / 126).
UNRUNNABLE = {
    "missing": lambda tmp: ["./proces.sh", "{path}"],
    "not-executable": lambda tmp: [_not_executable(tmp), "{path}"],
    "directory": lambda tmp: [str(tmp)],
    "shell-missing": lambda tmp: ["sh", "-c", "./proces.sh \"$NEXUS_PATH\""],
    "shell-not-executable": lambda tmp: ["sh", "-c", _not_executable(tmp)],
}


@pytest.mark.parametrize("case", sorted(UNRUNNABLE))
def test_a_command_that_cannot_run_stops_the_worker_with_exit_2(
    db_url: str, tmp_path: Path, case: str
) -> None:
    """Five items, a command that cannot run: the worker stops at the first, gives it back
    (ready, attempt not counted, history 'released'), fails nothing, and exits 2 naming the
    command."""
    paths = [f"/typo/{i}.json" for i in range(5)]
    enqueue(db_url, *paths, max_attempts=1)
    command = UNRUNNABLE[case](tmp_path)
    proc = run_nexus(["worker", "run", "--db", db_url, "--until-idle", "--", *command], tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: cannot run "), proc.stderr
    assert repr(command[0]) in error, error
    assert "released, not failed" in error
    assert proc.stdout.strip() == "claimed 1 completed 0 promoted 0 failed 0 lost 0 released 1"
    found = items(db_url)
    assert {p: (i["status"], i["attempts"]) for p, i in found.items()} == {
        p: ("ready", 0) for p in paths
    }
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        claimed = [p for p in paths if len(queue.get_work_history(p)) > 1]
        events = [e["event"] for e in queue.get_work_history(claimed[0])]
        queue.close()
    assert len(claimed) == 1 and events == ["enqueued", "claimed", "released"]


def test_cannot_run_with_concurrency_releases_every_claimed_item(
    db_url: str, tmp_path: Path
) -> None:
    enqueue(db_url, *(f"/c/{i}" for i in range(6)))
    proc = run_nexus(
        ["worker", "run", "--db", db_url, "--until-idle", "--concurrency", "3", "--json", "--",
         "/no/such/program"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    error = json.loads(proc.stdout)  # one document: the error's, carrying the counts
    assert error["error"] == "CannotRunError"
    assert "cannot run '/no/such/program': No such file or directory" in error["message"]
    summary = error["details"]
    assert summary["failed"] == 0 and summary["released"] == summary["claimed"] >= 1
    assert all(i["status"] == "ready" and i["attempts"] == 0 for i in items(db_url).values())


def test_exit_codes_0_when_every_command_succeeds_1_when_one_failed(
    db_url: str, tmp_path: Path
) -> None:
    enqueue(db_url, "/ok/1", "/ok/2")
    proc = run_nexus(["worker", "run", "--db", db_url, "--until-idle", "--", "true"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "claimed 2 completed 2 promoted 0 failed 0 lost 0 released 0"
    enqueue(db_url, "/bad/1", "/bad/2", "/bad/3", max_attempts=1)
    script = "import os, sys; sys.exit(os.environ['NEXUS_PATH'] == '/bad/2')"
    proc = run_nexus(
        ["worker", "run", "--db", db_url, "--until-idle", "--", sys.executable, "-c", script],
        tmp_path,
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout.strip() == "claimed 3 completed 2 promoted 0 failed 1 lost 0 released 0"
    assert proc.stderr.strip().splitlines()[-1] == "Error: 1 of 3 commands failed (warnings above)"
    assert items(db_url)["/bad/2"]["status"] == "failed"


def test_the_exit_codes_are_in_the_help(tmp_path: Path) -> None:
    proc = run_nexus(["worker", "run", "--help"], tmp_path)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for code in ("0 every command succeeded", "1 some command failed", "2 COMMAND cannot be run",
                 "130 aborted"):  # fmt: skip
        assert code in text, text


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


def test_a_failed_run_with_json_is_one_error_document_with_the_counts(
    db_url: str, tmp_path: Path
) -> None:
    """The run promotes /dep/after when /dep/first completes (counted as promoted), and one
    command fails: with --json, stdout holds only the error document, the counts inside."""
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        queue.enqueue_many(
            [
                {"path": "/dep/first"},
                {"path": "/dep/after", "depends_on": "/dep/first", "status": "blocked"},
                {"path": "/dep/bad", "max_attempts": 1},
            ]
        )
        queue.close()
    script = "import os, sys; sys.exit(os.environ['NEXUS_PATH'] == '/dep/bad')"
    proc = run_nexus(
        ["worker", "run", "--db", db_url, "--until-idle", "--json", "--",
         sys.executable, "-c", script],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    document = json.loads(proc.stdout)  # exactly one document
    assert document["error"] == "Refused"
    assert document["message"] == "1 of 3 commands failed (warnings above)"
    counts = document["details"]
    assert (counts["claimed"], counts["completed"], counts["failed"]) == (3, 2, 1)
    assert counts["promoted"] == 1
