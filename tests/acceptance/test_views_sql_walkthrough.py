"""The sqlite3 walk-through of docs/views.md ("Querying the views with plain SQL", section
"sqlite3") runs as written and prints what the doc shows: on the file its dependency example
made, every ```bash command and ```sql block goes to the real ``sqlite3`` shell, the output
block after it must match (the doc's path_ids stand for the ones the shell printed), a plain
block that starts with a ``sqlite3`` command is a transcript (command, then its output), and
the ```pycon session runs as a doctest on a store over the same file.

(The docs-example runner runs the doc's Python blocks one by one; this walk-through continues
from one into shell sessions, so it is replayed here.)"""

from __future__ import annotations

import doctest
import itertools
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from nexus.storage.metadata_store import SQLAlchemyMetadataStore

ROOT = Path(__file__).resolve().parents[2]
VIEWS_MD = ROOT / "docs" / "views.md"
FENCE = re.compile(r"^```(?P<language>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SHELL = ["sqlite3", "-header", "-column"]

# CI installs the shell (.ci/run): there a missing shell is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    shutil.which("sqlite3") is None and os.environ.get("CI", "").lower() not in ("1", "true"),
    reason="no sqlite3 shell",
)


class Walk:
    """The shell session: runs commands and matches their output against the doc's."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}  # the doc's path_id -> the real one

    def real(self, text: str) -> str:
        return UUID.sub(lambda match: self.ids.get(match.group(), match.group()), text)

    def as_documented(self, text: str) -> str:
        back = {real: doc for doc, real in self.ids.items()}
        return UUID.sub(lambda match: back.get(match.group(), match.group()), text)

    def command(self, line: str) -> str:
        args = shlex.split(self.real(line))
        assert args[0] == "sqlite3", f"not a sqlite3 command: {line!r}"
        done = subprocess.run(args, capture_output=True, text=True, timeout=30)
        return done.stdout + done.stderr

    def script(self, sql: str) -> str:
        done = subprocess.run(
            [*SHELL, "metadata.db"],
            input=self.real(sql),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def expect(self, documented: str, printed: str, where: str) -> None:
        expected = [line.rstrip() for line in documented.strip("\n").splitlines()]
        actual = [line.rstrip() for line in printed.strip("\n").splitlines()]
        # Path_ids are random: the first time one is printed, it stands for the doc's.
        for doc_line, real_line in zip(expected, actual, strict=False):
            doc_ids, real_ids = UUID.findall(doc_line), UUID.findall(real_line)
            if len(doc_ids) == len(real_ids):
                for doc_id, real_id in zip(doc_ids, real_ids, strict=True):
                    self.ids.setdefault(doc_id, real_id)
        assert [self.as_documented(line) for line in actual] == expected, where


def commands(bash: str) -> list[str]:
    """The sqlite3 commands of a bash block (a quoted argument may span lines)."""
    tokens = shlex.split(bash, comments=True)
    starts = [i for i, token in enumerate(tokens) if token == "sqlite3"] + [len(tokens)]
    return [shlex.join(tokens[a:b]) for a, b in itertools.pairwise(starts)]


def walkthrough() -> tuple[str, str]:
    text = VIEWS_MD.read_text(encoding="utf-8")
    start, end = text.find("### sqlite3"), text.find("### psql")
    assert 0 < start < end, "docs/views.md has no sqlite3 walk-through before its psql section"
    setup = [
        m.group("body")
        for m in FENCE.finditer(text, 0, start)
        if m.group("language") == "python"
        and 'SQLAlchemyMetadataStore("metadata.db")' in m.group("body")
    ]
    assert len(setup) == 1, "the walk-through starts from one example on metadata.db"
    return setup[0], text[start:end]


def test_the_sqlite3_walkthrough_prints_what_views_md_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    setup, section = walkthrough()
    exec(
        compile(setup, str(VIEWS_MD), "exec"),
        {"__name__": "__views_md__", "print": lambda *a: None},
    )
    walk = Walk()
    blocks = list(FENCE.finditer(section))
    printed: str | None = None  # the output of the last command block, awaiting its output block
    checked = 0
    for index, block in enumerate(blocks):
        language, body = block.group("language").strip(), block.group("body")
        follows_previous = (
            index > 0 and not section[blocks[index - 1].end() : block.start()].strip()
        )
        where = f"docs/views.md block {body[:60]!r}"
        if language == "bash":
            printed = "".join(walk.command(line) for line in commands(body))
        elif language == "sql":
            printed = walk.script(body)
        elif language == "pycon":
            with SQLAlchemyMetadataStore("metadata.db") as store:
                test = doctest.DocTestParser().get_doctest(body, {"store": store}, where, None, 0)
                runner = doctest.DocTestRunner()
                runner.run(test)
                assert runner.summarize(verbose=False).failed == 0, where
            printed, checked = None, checked + 1
        elif language == "":
            if printed is not None and follows_previous:
                walk.expect(body, printed, where)
            else:
                transcript = body.strip("\n").splitlines()
                assert transcript[0].startswith("sqlite3 "), f"{where}: output of what?"
                walk.expect("\n".join(transcript[1:]), walk.command(transcript[0]), where)
            printed, checked = None, checked + 1
    assert checked >= 4, "the walk-through shows fewer outputs than it used to"
