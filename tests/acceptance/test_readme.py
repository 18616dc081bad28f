"""The README's Quick start, run as a user would: ``nexus demo`` (no options) builds
./nexus-data in the working directory and prints the five views. (The README's Python examples
and the output their comments promise are run by the docs-example runner, conftest.py at the
project root.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nexus.cli.main import cli
from nexus.storage.schema import VIEW_NAMES


def test_quick_start_demo_uses_nexus_data_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEXUS_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    for name in VIEW_NAMES:
        assert name in result.output
    assert (tmp_path / "nexus-data" / "metadata.db").is_file()
