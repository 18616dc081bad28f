"""Shared plumbing of the benchmark scripts: throwaway databases, sizes, versions, timing.

``--db`` accepts:

* ``sqlite`` (or nothing): a fresh SQLite file in a temporary directory, removed at the end
  unless ``--keep``;
* a SQLite path or ``sqlite:///path`` URL: that file, which must not exist yet (a benchmark
  never writes into an existing database); kept afterwards;
* ``postgresql`` (bare word): the local server ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``
  (or ``$NEXUS_BENCH_POSTGRES_URL``);
* a ``postgresql://`` / ``postgresql+psycopg://`` URL naming a *server*: the benchmark creates
  ``nexus_bench_<random>`` there and drops it at the end unless ``--keep``. The database
  part of the URL is only used to connect for ``CREATE DATABASE``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import hashlib
import importlib.metadata
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

DEFAULT_PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class BenchDB:
    """A throwaway benchmark database."""

    url: str  # SQLAlchemy URL for nexus
    kind: str  # "sqlite" | "postgresql"
    sqlite_path: Path | None = None
    pg_name: str | None = None
    pg_admin_url: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "sqlite":
            return f"SQLite file {self.sqlite_path}"
        return f"PostgreSQL database {self.pg_name}"

    def size_bytes(self) -> int:
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            total = 0
            for suffix in ("", "-wal", "-shm"):
                candidate = Path(str(self.sqlite_path) + suffix)
                if candidate.exists():
                    total += candidate.stat().st_size
            return total
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                return int(
                    conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
                )
        finally:
            engine.dispose()

    def server_version(self) -> str:
        if self.kind == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                version = conn.execute(sa.text("SHOW server_version")).scalar()
                fsync = conn.execute(sa.text("SHOW fsync")).scalar()
                sync = conn.execute(sa.text("SHOW synchronous_commit")).scalar()
                buffers = conn.execute(sa.text("SHOW shared_buffers")).scalar()
            return (
                f"PostgreSQL {version} (fsync={fsync}, synchronous_commit={sync}, "
                f"shared_buffers={buffers})"
            )
        finally:
            engine.dispose()

    def raw_dsn(self) -> str:
        """A libpq DSN (PostgreSQL) or a file path (SQLite) for the bare-driver loops."""
        if self.kind == "sqlite":
            return str(self.sqlite_path)
        url = sa.engine.make_url(self.url)
        return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _is_postgres(text: str) -> bool:
    return text == "postgresql" or text.startswith(("postgresql:", "postgresql+", "postgres:"))


@contextlib.contextmanager
def bench_database(
    target: str | None, *, keep: bool = False, tag: str = "bench"
) -> Iterator[BenchDB]:
    """Create the benchmark database described by ``--db`` and clean it up afterwards."""
    target = target or "sqlite"
    if _is_postgres(target):
        server = (
            os.environ.get("NEXUS_BENCH_POSTGRES_URL", DEFAULT_PG_SERVER)
            if target == "postgresql"
            else target
        )
        url = sa.engine.make_url(server)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        name = f"nexus_{tag}_{uuid.uuid4().hex[:10]}"
        # pre_ping: the server may have restarted since (benchmarks/soak.py --restart-postgres)
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        db = BenchDB(
            url=url.set(database=name).render_as_string(hide_password=False),
            kind="postgresql",
            pg_name=name,
            pg_admin_url=url.render_as_string(hide_password=False),
        )
        try:
            yield db
        finally:
            if keep:
                print(f"kept PostgreSQL database {name}: {db.url}")
            else:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
        return
    tmpdir: str | None = None
    if target in ("sqlite", "sqlite://", ":memory:"):
        tmpdir = tempfile.mkdtemp(prefix=f"nexus_{tag}_")
        path = Path(tmpdir) / "metadata.db"
    else:
        path = Path(target[len("sqlite:///") :] if target.startswith("sqlite:///") else target)
        path = path.expanduser().resolve()
        if path.exists() and path.stat().st_size > 0:
            raise SystemExit(f"{path} exists: a benchmark needs a new database file")
        path.parent.mkdir(parents=True, exist_ok=True)
    db = BenchDB(url=f"sqlite:///{path}", kind="sqlite", sqlite_path=path)
    try:
        yield db
    finally:
        if tmpdir is not None:
            if keep:
                print(f"kept SQLite database {path}")
            else:
                shutil.rmtree(tmpdir, ignore_errors=True)


_VERSION_AT_START: str | None = None


def nexus_version() -> str:
    """nexus's version, git commit and source digest as they were when first asked.

    The scripts ask at start-up (before importing nexus), so a tree edited while a long run
    goes on is not misreported at the end.
    """
    global _VERSION_AT_START
    if _VERSION_AT_START is None:
        _VERSION_AT_START = _nexus_version_now()
    return _VERSION_AT_START


def _nexus_version_now() -> str:
    try:
        version = importlib.metadata.version("nexus-workqueue")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    described = f"{version} ({commit})" if commit else version
    return f"{described}, source sha1 {source_digest()}"


def source_digest() -> str:
    """Short digest of nexus/ and migrations/ as they are on disk (identifies dirty trees)."""
    digest = hashlib.sha1()
    for folder in ("nexus", "migrations"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def header(title: str, db: BenchDB, extra: dict[str, Any] | None = None) -> str:
    lines = [
        f"# {title}",
        f"date:        {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine:     {platform.machine()}, {os.cpu_count()} cores (nproc), "
        f"{_mem_gib()} GiB RAM, {platform.system()} {platform.release()}",
        f"python:      {platform.python_version()}; SQLAlchemy {sa.__version__}; "
        f"sqlite3 library {sqlite3.sqlite_version}; psycopg {_psycopg_version()}",
        f"nexus:       {nexus_version()}",
        f"database:    {db.server_version()} -- {db.label}",
        f"load avg:    {_loadavg()} (other processes share these cores; compare with care)",
    ]
    for key, value in (extra or {}).items():
        lines.append(f"{key + ':':<12} {value}")
    return "\n".join(lines)


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _psycopg_version() -> str:
    try:
        return importlib.metadata.version("psycopg")
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _mem_gib() -> str:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.0f}"
    except OSError:
        pass
    return "?"


def timed(fn: Callable[[], Any], reps: int) -> tuple[list[float], Any]:
    """Call ``fn`` ``reps`` times; durations in ms and the last result."""
    out: list[float] = []
    result = None
    gc.collect()
    for _ in range(reps):
        start = time.perf_counter()
        result = fn()
        out.append((time.perf_counter() - start) * 1000)
    return out, result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    index = q * (len(ordered) - 1)
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_ms(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if value < 1:
        return f"{value:.3f}"
    if value < 100:
        return f"{value:.2f}"
    return f"{value:.0f}"


def fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{n} B"


def table(headers: list[str], rows: list[list[str]], aligns: str | None = None) -> str:
    """A GitHub-flavoured markdown table (also readable on a terminal)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    aligns = aligns or "l" + "r" * (len(headers) - 1)

    def line(cells: list[str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            parts.append(cell.ljust(widths[i]) if aligns[i] == "l" else cell.rjust(widths[i]))
        return "| " + " | ".join(parts) + " |"

    sep = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":" if a == "r" else ":" + "-" * (w + 1))
            for w, a in zip(widths, aligns, strict=True)
        )
        + "|"
    )
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
