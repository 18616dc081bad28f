"""The ```pycon session of docs/views.md's sqlite3 walk-through ("The API returns the same
rows") prints what the doc shows, on the file the walk-through's shell commands made.

The walk-through's ```console blocks run as doc tests (conftest.py at the project root); each
is prepared by the ``console-setup`` comment before it. The pycon session continues from the
state of the console block before it, so this test runs that block's setup (the dependency
example on metadata.db, then the plain-SQL inserts, in the real ``sqlite3`` shell) and then
the session as a doctest on a store over the same file."""

from __future__ import annotations

import doctest
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nexus.storage.metadata_store import SQLAlchemyMetadataStore

ROOT = Path(__file__).resolve().parents[2]
VIEWS_MD = ROOT / "docs" / "views.md"
PYCON = re.compile(r"^```pycon\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SETUP = re.compile(r"<!-- console-setup:[^\n]*\n(?P<commands>.*?)-->", re.DOTALL)

# CI installs the shell (.ci/run): there a missing shell is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    shutil.which("sqlite3") is None and os.environ.get("CI", "").lower() not in ("1", "true"),
    reason="no sqlite3 shell",
)


def session_and_its_setup() -> tuple[str, str]:
    text = VIEWS_MD.read_text(encoding="utf-8")
    start, end = text.find("### sqlite3"), text.find("### psql")
    assert 0 < start < end, "docs/views.md has no sqlite3 walk-through before its psql section"
    pycon = PYCON.search(text, start, end)
    assert pycon is not None, "the sqlite3 walk-through has no pycon session"
    setups = list(SETUP.finditer(text, start, pycon.start()))
    assert setups, "no console block before the pycon session is prepared by a setup"
    return pycon.group("body"), setups[-1].group("commands")


def test_the_api_session_prints_what_views_md_shows(tmp_path: Path) -> None:
    session, setup = session_and_its_setup()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("NEXUS_DATABASE_URL", None)
    done = subprocess.run(
        ["bash", "-e", "-c", setup], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with SQLAlchemyMetadataStore(str(tmp_path / "metadata.db")) as store:
        where = "docs/views.md pycon session"
        test = doctest.DocTestParser().get_doctest(session, {"store": store}, where, None, 0)
        runner = doctest.DocTestRunner()
        runner.run(test)
        assert runner.summarize(verbose=False).attempted >= 2, where
        assert runner.summarize(verbose=False).failed == 0, where
