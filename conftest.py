"""Every ```python block of README.md and docs/*.md runs as a test (collected by sybil), and
prints what the docs say it prints.

* A ```python block runs on its own: a fresh namespace (no block relies on another one), in a
  temporary working directory without ``NEXUS_DATABASE_URL`` (the ``docs_example_cwd``
  fixture), so relative paths such as ``"metadata.db"`` or ``./nexus-data`` land there.
* Its output is checked when the docs show it: by a plain ```` ``` ```` or ```text block
  right after it (blank lines between are allowed), or, without such a block, by the
  ``# comment`` at the end of every ``print(...)`` line (one printed line each). The printed
  text must match exactly (trailing spaces aside).
* ```console, ```bash, ```sql and ```text blocks are not executed. A ```python block that is
  not runnable by nature (a signature, a list of URL forms naming servers that need not
  exist) is preceded by ``<!-- skip: next -->`` (sybil's skip directive, optionally with a
  quoted reason, which then shows as a skipped test).
"""

from __future__ import annotations

import contextlib
import difflib
import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from sybil import Document, Example, Lexeme, Region, Sybil
from sybil.parsers.markdown import SkipParser
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

FENCE_INFO = re.compile(r"(?P<language>[^\n]*)$\n", re.MULTILINE)
OUTPUT_LANGUAGES = ("", "text")
PRINT_COMMENT = re.compile(r"\)\s*#\s?(?P<expected>.*?)\s*$")


class PythonExample:
    """The source of one ```python block and the output the docs show for it (or None)."""

    def __init__(self, source: Lexeme, line: int, expected: str | None) -> None:
        self.source = source
        self.line = line
        self.expected = expected


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.rstrip("\n").splitlines()]


def _inline_expected(source: str) -> str | None:
    """The output documented by ``print(...)  # output`` comments, if every print has one."""
    print_lines = [line for line in source.splitlines() if "print(" in line]
    expected = [PRINT_COMMENT.search(line) for line in print_lines]
    if not print_lines or not all(expected):
        return None
    return "\n".join(match.group("expected") for match in expected if match)


def evaluate_python_example(example: Example) -> str | None:
    parsed: PythonExample = example.parsed
    # Leading newlines make tracebacks point at the line in the Markdown file.
    code = compile("\n" * parsed.line + parsed.source, example.path, "exec")
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(code, {"__name__": "__docs_example__"})
    if parsed.expected is None:
        return None
    expected, actual = _lines(parsed.expected), _lines(output.getvalue())
    if expected == actual:
        return None
    diff = difflib.unified_diff(expected, actual, "documented output", "actual output", lineterm="")
    return "\n".join(diff)


class PythonExampleParser:
    """Yields one region per ```python block, carrying the output block that follows it."""

    def __init__(self) -> None:
        self.lexer = RawFencedCodeBlockLexer(info_pattern=FENCE_INFO)

    def __call__(self, document: Document) -> Iterable[Region]:
        blocks = sorted(self.lexer(document), key=lambda region: region.start)
        for index, block in enumerate(blocks):
            if block.lexemes["language"].strip() != "python":
                continue
            source: Lexeme = block.lexemes["source"]
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            expected: str | None
            if (
                following is not None
                and following.lexemes["language"].strip() in OUTPUT_LANGUAGES
                and not document.text[block.end : following.start].strip()
            ):
                expected = str(following.lexemes["source"])
            else:
                expected = _inline_expected(source)
            line = document.text.count("\n", 0, block.start) + 1
            example = PythonExample(source, line, expected)
            yield Region(block.start, block.end, example, evaluate_python_example)


@pytest.fixture
def docs_example_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh working directory, and no database chosen by the environment."""
    monkeypatch.delenv("NEXUS_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


pytest_collect_file = Sybil(
    parsers=[SkipParser(), PythonExampleParser()],
    patterns=["README.md", "docs/*.md"],
    fixtures=["docs_example_cwd"],
    name="docs",
).pytest()
