"""The README's promises, run as a user would: the "Using it" Python example prints what its
comments say, and the Quick start's ``nexus demo`` (no options) builds ./nexus-data in the
working directory and prints the five views."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from nexus.cli.main import cli
from nexus.storage.schema import VIEW_NAMES

ROOT = Path(__file__).resolve().parents[2]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_python_example_prints_what_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEXUS_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert blocks, "README.md has no python example"
    code = blocks[0]
    expected = [
        match.group(1).strip()
        for line in code.splitlines()
        if "print(" in line and (match := re.search(r"\)\s*#\s*(.+)$", line))
    ]
    assert expected, "the example documents no output"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    assert out.getvalue().splitlines() == expected
    assert (tmp_path / "nexus-data" / "metadata.db").is_file()


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
