"""``nexus --help``, ``--version`` and ``nexus GROUP --help`` start without SQLAlchemy,
Alembic, psycopg or rich (a command imports them when it runs), checked by effect: the real
entry point runs with Python's import profiler (PYTHONPROFILEIMPORTTIME) and the modules it
imported are read from its report. The packages stay whole for API users: their lazy names
(PEP 562) resolve on first use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("sqlalchemy", "alembic", "psycopg", "rich")


def nexus_command() -> list[str]:
    """The installed ``nexus`` script next to this Python (the real entry point)."""
    script = Path(sys.executable).with_name("nexus")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nexus.cli.main"]


def imported_by(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``nexus ARGS``; the top-level packages it imported."""
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_DATABASE_URL"}
    env["PYTHONPROFILEIMPORTTIME"] = "1"
    proc = subprocess.run(
        [*nexus_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    modules = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "click" in modules, proc.stderr[-2000:]  # the profiler did report
    return proc, modules


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["work", "--help"],
        ["db", "--help"],
        ["meta", "--help"],
        ["worker", "--help"],
        ["work", "claim", "--help"],
        ["worker", "run", "--help"],
        ["db", "upgrade", "--help"],
    ],
    ids=" ".join,
)
def test_help_and_version_load_no_database_nor_rich(args: list[str], tmp_path: Path) -> None:
    proc, modules = imported_by(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Usage:" in proc.stdout or "version" in proc.stdout
    assert sorted(modules.intersection(HEAVY)) == []
    assert not (tmp_path / "nexus-data").exists()


def test_a_command_still_loads_what_it_needs(tmp_path: Path) -> None:
    from nexus.storage.metadata_store import SQLAlchemyMetadataStore

    SQLAlchemyMetadataStore(str(tmp_path / "m.db")).close()  # reading commands create nothing
    proc, modules = imported_by(["work", "stats", "--db", str(tmp_path / "m.db")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"sqlalchemy", "alembic", "rich"} <= modules
    assert "status counts" in proc.stdout


def test_the_packages_names_load_on_first_use(tmp_path: Path) -> None:
    script = """
import sys
import nexus
assert "sqlalchemy" not in sys.modules, "import nexus"
import nexus.storage, nexus.work
assert "sqlalchemy" not in sys.modules, "import nexus.storage, nexus.work"
from nexus.storage import FileRecord, SQLAlchemyMetadataStore, WorkPage
from nexus.work import RetryPolicy, StopWorker, Worker, WorkerStats, WorkItem, WorkQueue
from nexus.storage import migrate
from nexus.storage.types import utcnow
assert nexus.work.WorkQueue is WorkQueue and nexus.storage.WorkPage is WorkPage
for package, name in ((nexus.storage, "nope"), (nexus.work, "nope")):
    try:
        getattr(package, name)
    except AttributeError:
        pass
    else:
        raise AssertionError(name)
with nexus.connect({"data_dir": sys.argv[1]}) as nx:
    nx.queue.enqueue("/a")
    assert nx.queue.claim_ready_work("w")[0]["virtual_path"] == "/a"
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_DATABASE_URL"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
