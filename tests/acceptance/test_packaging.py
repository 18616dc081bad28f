"""The built wheel is self-contained: built from the checkout, unpacked somewhere else and
imported from an unrelated working directory, ``nexus`` comes from the unpacked wheel and
``nexus.connect`` creates the schema and the five views, so the Alembic revisions ship inside
the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
if not PYTHON.exists():  # pragma: no cover - another layout
    PYTHON = Path(sys.executable)

CHECK = """
import json, os, sqlite3, sys
import nexus
data_dir = sys.argv[1]
with nexus.connect(config={"data_dir": data_dir}) as nx:
    nx.write("/jobs/a.json", b"{}")
    nx.metadata.set_file_metadata("/jobs/a.json", "status", "ready")
    ready = [item["virtual_path"] for item in nx.metadata.get_ready_work(limit=10)]
with sqlite3.connect(os.path.join(data_dir, "metadata.db")) as conn:
    views = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='view'")]
print(json.dumps({"file": nexus.__file__, "views": views, "ready": ready}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a clean copy: an in-tree build would leave build/ in the checkout, and a stale
    # build/lib could smuggle deleted modules into the wheel.
    source = tmp_path_factory.mktemp("source") / "nexus"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
            "nexus-data",
            "*.db",
            "*.db-*",
            "tests",
            "benchmarks",
        ),
    )
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            str(PYTHON),
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out,
    )
    [built] = out.glob("nexus_workqueue-*.whl")
    return built


def test_wheel_contains_the_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "nexus/__init__.py" in names
    assert "nexus/migrations/env.py" in names
    assert "nexus/migrations/script.py.mako" in names
    versions = {
        n
        for n in names
        if n.startswith("nexus/migrations/versions/")
        and n.endswith(".py")
        and not n.endswith("__init__.py")
    }
    assert {Path(n).name[:4] for n in versions} >= {"0001", "0002", "0003"}
    assert "nexus/py.typed" in names
    assert not any(n.startswith("tests/") for n in names)


def test_unpacked_wheel_creates_the_views_from_any_directory(wheel: Path, tmp_path: Path) -> None:
    import json

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_DATABASE_URL"}
    env["PYTHONPATH"] = str(unpacked)
    result = subprocess.run(
        [str(PYTHON), "-c", CHECK, str(elsewhere / "data")],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).resolve().is_relative_to(unpacked.resolve())
    assert {
        "ready_work_items",
        "pending_work_items",
        "blocked_work_items",
        "work_by_priority",
        "in_progress_work",
    } <= set(report["views"])
    assert report["ready"] == ["/jobs/a.json"]
    assert not (elsewhere / "nexus-data").exists()
