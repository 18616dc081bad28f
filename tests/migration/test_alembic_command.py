"""The ``alembic`` command line, as a user runs it: from the project root it migrates
``./nexus-data/metadata.db`` by default, ``-x db_url=...`` or ``NEXUS_DATABASE_URL`` pick
another database (``-x`` wins), and ``downgrade base`` removes everything; the database then
holds the five work views, as listed by ``sqlite_master``."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from nexus.storage.schema import VIEW_NAMES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ALEMBIC = ROOT / ".venv" / "bin" / "alembic"
if not ALEMBIC.exists():  # pragma: no cover - another layout
    ALEMBIC = Path(shutil.which("alembic") or "alembic")


def alembic(*args: str, cwd: Path, env_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_DATABASE_URL"}
    if env_url is not None:
        env["NEXUS_DATABASE_URL"] = env_url
    result = subprocess.run(
        [str(ALEMBIC), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result


def sqlite_views(db_file: Path) -> set[str]:
    with sqlite3.connect(db_file) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type='view'").fetchall()
    return {name for (name,) in rows}


def sqlite_objects(db_file: Path) -> set[str]:
    with sqlite3.connect(db_file) as conn:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchall()
    return {name for (name,) in rows}


def test_x_db_url_from_the_project_root(tmp_path: Path) -> None:
    db_file = tmp_path / "x.db"
    alembic("-x", f"db_url=sqlite:///{db_file}", "upgrade", "head", cwd=ROOT)
    assert set(VIEW_NAMES) <= sqlite_views(db_file)
    alembic("-x", f"db_url=sqlite:///{db_file}", "downgrade", "base", cwd=ROOT)
    assert sqlite_objects(db_file) == {"alembic_version"}
    assert not (ROOT / "nexus-data" / "x.db").exists()


def test_environment_url_and_x_beats_it(tmp_path: Path) -> None:
    from_env = tmp_path / "env.db"
    from_x = tmp_path / "x.db"
    alembic("upgrade", "head", cwd=ROOT, env_url=f"sqlite:///{from_env}")
    assert set(VIEW_NAMES) <= sqlite_views(from_env)
    alembic("-x", f"db_url={from_x}", "upgrade", "head", cwd=ROOT, env_url=f"sqlite:///{from_env}")
    assert set(VIEW_NAMES) <= sqlite_views(from_x)


def test_default_database_is_nexus_data_under_the_working_directory(tmp_path: Path) -> None:
    alembic("-c", str(ROOT / "alembic.ini"), "upgrade", "head", cwd=tmp_path)
    db_file = tmp_path / "nexus-data" / "metadata.db"
    assert db_file.is_file()
    assert set(VIEW_NAMES) <= sqlite_views(db_file)
    if shutil.which("sqlite3") is None:
        # The README's sqlite3 commands cannot be checked without the shell; CI installs it.
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail("CI=true: the sqlite3 shell is missing")
        pytest.skip("no sqlite3 shell to run the README's commands")
    # The README's two sqlite3 commands.
    views = subprocess.run(
        [
            "sqlite3",
            "nexus-data/metadata.db",
            "SELECT name FROM sqlite_master WHERE type='view';",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert set(VIEW_NAMES) <= set(views)
    ready = subprocess.run(
        [
            "sqlite3",
            "nexus-data/metadata.db",
            "SELECT virtual_path, priority FROM ready_work_items LIMIT 10;",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert ready.stdout == ""
    alembic("-c", str(ROOT / "alembic.ini"), "downgrade", "base", cwd=tmp_path)
    assert sqlite_objects(db_file) == {"alembic_version"}


def test_alembic_on_the_parametrized_backend(fresh_db_url: str) -> None:
    alembic("-x", f"db_url={fresh_db_url}", "upgrade", "head", cwd=ROOT)
    engine = sa.create_engine(fresh_db_url)
    try:
        with engine.connect() as conn:
            assert set(VIEW_NAMES) <= set(sa.inspect(conn).get_view_names())
    finally:
        engine.dispose()
    alembic("-x", f"db_url={fresh_db_url}", "downgrade", "base", cwd=ROOT)
    engine = sa.create_engine(fresh_db_url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            assert set(inspector.get_table_names()) == {"alembic_version"}
            assert inspector.get_view_names() == []
    finally:
        engine.dispose()
