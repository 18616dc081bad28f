"""What the ``nexus`` command draws on a real terminal (a pseudo-terminal), on SQLite and
PostgreSQL: ``worker run`` keeps a status line (claimed / completed / failed / running /
rate) that it redraws in place and clears before the summary; ``work stats --watch`` redraws
its tables in place once per interval. Off a terminal neither draws anything extra."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys

import pytest

from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue

ERASE_LINE = "\x1b[2K"
NEXUS = [sys.executable, "-m", "nexus.cli.main"]


def run_in_terminal(args: list[str]) -> tuple[int, str]:
    """Run ``nexus ARGS`` with a pseudo-terminal as stdin, stdout and stderr."""
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_DATABASE_URL"}
    env.update(TERM="xterm", COLUMNS="120", LINES="40")
    master, slave = pty.openpty()
    proc = subprocess.Popen([*NEXUS, *args], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        proc.wait(timeout=60)
        os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", errors="replace")


def enqueue(db_url: str, count: int) -> None:
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        queue.enqueue_many([{"path": f"/t/{i}"} for i in range(count)])
        queue.close()


@pytest.mark.slow
def test_worker_run_redraws_a_status_line(db_url: str) -> None:
    enqueue(db_url, 3)
    code, out = run_in_terminal(
        ["worker", "run", "--until-idle", "--db", db_url, "--", sys.executable, "-c",
         "import time; time.sleep(0.6)"]
    )  # fmt: skip
    assert code == 0, out
    status_lines = [part for part in out.split(ERASE_LINE) if ": claimed " in part]
    assert len(status_lines) >= 3, out  # redrawn in place, several times
    assert any("· running 1 ·" in line for line in status_lines)
    assert "completed 3 · failed 0 · running 0" in out
    assert status_lines[-1].split("\r")[0].rstrip().endswith("/s")
    assert out.rstrip().endswith("claimed 3 completed 3 promoted 0 failed 0 lost 0 released 0")


@pytest.mark.slow
def test_stats_watch_redraws_in_place(db_url: str) -> None:
    enqueue(db_url, 2)
    code, out = run_in_terminal(
        ["work", "stats", "--watch", "--interval", "0.2", "--count", "3", "--db", db_url]
    )
    assert code == 0, out
    assert out.count("status counts") >= 3, out
    assert "\x1b[1A" in out or ERASE_LINE in out  # the cursor goes back up to redraw


def test_off_a_terminal_there_is_no_status_line(db_url: str) -> None:
    enqueue(db_url, 1)
    done = subprocess.run(
        [*NEXUS, "worker", "run", "--until-idle", "--db", db_url, "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "claimed 1 completed 1 promoted 0 failed 0 lost 0 released 0\n"
    assert ": claimed " not in done.stderr and "\x1b[" not in done.stderr
