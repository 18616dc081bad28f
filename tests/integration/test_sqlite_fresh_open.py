"""Many processes opening the same fresh SQLite file at the same moment: every connection
comes up in WAL mode and can write. SQLite reports "database is locked" for the switch to WAL
without waiting for the busy timeout when several processes race on a new file (about one
round in five failed before the switch was retried), so this runs many short rounds."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from nexus.storage.engine import create_engine

pytestmark = pytest.mark.slow
FORK = multiprocessing.get_context("fork")
ROUNDS = 40
PROCESSES = 6


def _open_and_write(url: str, barrier: Any, out: Any) -> None:
    try:
        barrier.wait(timeout=30)
        engine = create_engine(url).execution_options(nexus_write=True)
        with engine.begin() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        engine.dispose()
        out.put(("ok", mode))
    except BaseException as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def test_processes_racing_on_a_fresh_file_all_open_it_in_wal_mode(tmp_path: Path) -> None:
    failures = []
    for round_number in range(ROUNDS):
        url = f"sqlite:///{tmp_path}/fresh-{round_number}.db"
        barrier, out = FORK.Barrier(PROCESSES), FORK.Queue()
        procs = [
            FORK.Process(target=_open_and_write, args=(url, barrier, out))
            for _ in range(PROCESSES)
        ]
        for proc in procs:
            proc.start()
        results = [out.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        failures += [result for result in results if result != ("ok", "wal")]
    assert failures == []
