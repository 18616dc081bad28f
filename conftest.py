r"""Every ```python and ```console block of README.md and docs/*.md runs as a test (collected
by sybil), and prints what the docs say it prints.

```python blocks

* A ```python block runs on its own: a fresh namespace (no block relies on another one), in a
  temporary working directory without ``NEXUS_DATABASE_URL`` (the ``docs_example_cwd``
  fixture), so relative paths such as ``"metadata.db"`` or ``./nexus-data`` land there.
* Its output is checked when the docs show it: by a plain ```` ``` ```` or ```text block
  right after it (blank lines between are allowed), or, without such a block, by the
  ``# comment`` at the end of every ``print(...)`` line (one printed line each). The printed
  text must match exactly (trailing spaces aside).

```console blocks (a terminal session)

* A block is a sequence of ``$ command`` lines, each followed by the output the docs show for
  it (the lines up to the next ``$`` line; none: the output is not checked). A command
  continues on the next line after a line ending in ``\`` and on lines starting with ``> ``
  (the shell's continuation prompt, e.g. inside a multi-line quoted string). Lines before the
  first ``$`` are an error.
* The whole block runs in one ``bash`` (``-o pipefail``; stdin empty; stdout and stderr
  merged, as a terminal shows them), so shell variables, functions and ``cd`` carry from one
  command to the next. It runs in a fresh scratch directory that stands for a fresh checkout:
  it holds only links to this checkout's ``alembic.ini`` and ``migrations/`` and to the
  running venv as ``.venv``, whose ``bin`` also comes first on ``PATH`` (so ``nexus``,
  ``alembic``, ``.venv/bin/nexus`` are this checkout's). Every ``NEXUS_*`` variable is unset,
  so the database is the scratch ``./nexus-data/metadata.db`` unless a command says
  ``--db``. ``COLUMNS`` is 100 (rich draws its tables for a 100-column terminal) and
  ``NO_COLOR`` is set.
* Each command must exit 0, or with the code its trailing comment names: ``$ nexus db check
  # exit 1``. A command that exits otherwise fails the test and stops the block.
* The output the docs show is compared after stripping trailing spaces and trailing blank
  lines. Three kinds of value that differ on every run are compared by their shape, so the
  docs show real-looking ones: an ISO 8601 timestamp with an offset
  (``2026-12-01T21:26:29.822000+00:00``) matches any other, a UUID any UUID, a token of 32
  hex digits (a lease token) any other. ``...`` matches any text, within a line or across
  lines (as doctest's ELLIPSIS): ``"wait_seconds": ...}``, or a line holding only ``...`` for
  any number of lines. Use it for what else varies from run to run (durations, temporary
  paths, cursors), or to elide a long output, nothing else.
* A failure names the Markdown file and line of the command, the command, and the diff of
  the documented and the actual output (with the shapes above as ``<timestamp>``,
  ``<uuid>``, ``<token>``), or its exit code and output.
* A block that needs state first says so in an HTML comment right before it (other comments
  such as a skip directive may sit between):
  ``<!-- console-setup: nexus work enqueue /jobs/a.json -->``, or one command a line in a
  multi-line comment. The setup runs in the same scratch directory before the block (its own
  ``bash -e -o pipefail``), its output not shown, not checked; it must exit 0. Identical
  setups run once per test session; later blocks start from a copy of the directory it left.
* A block that cannot run here (a server that runs until Ctrl-C, a PostgreSQL URL naming a
  database that need not exist, ``pip install`` from an index, a benchmark run of minutes) is
  preceded by ``<!-- skip: next "the reason" -->``.

Not executed: ```bash and ```sh blocks (scripts to read or copy, such as the install
commands), ```sql and ```text blocks, and a ```python block preceded by
``<!-- skip: next -->`` (sybil's skip directive, optionally with a quoted reason, which then
shows as a skipped test): one that is not runnable by nature (a signature, a list of URL
forms naming servers that need not exist).
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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


ROOT = Path(__file__).resolve().parent
CONSOLE_COLUMNS = "100"
# A block (setup included) that takes longer is stuck, e.g. on a command that never returns.
CONSOLE_TIMEOUT_SECONDS = 120
PROMPT = "$ "
CONTINUATION = "> "
EXPECTED_EXIT = re.compile(r"#\s*exit\s+(?P<code>\d+)\b")
SETUP_DIRECTIVE = re.compile(r"<!--\s*console-setup:(?P<commands>.*?)-->", re.DOTALL)
HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
ELLIPSIS = "..."
# Values that differ on every run, compared by their shape: the docs show a real-looking one.
RUN_DEPENDENT = (
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?[+-]\d\d:\d\d"), "<timestamp>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<token>"),
)


@dataclass(frozen=True)
class ConsoleCommand:
    """One ``$ command`` of a console block: its text, its line in the Markdown file, the exit
    code it must end with, and the output the docs show (None: not shown, not checked)."""

    text: str
    line: int
    exit_code: int
    expected: str | None


@dataclass(frozen=True)
class ConsoleExample:
    path: str
    commands: tuple[ConsoleCommand, ...]
    setup: str | None


def ellipsis_match(expected: str, actual: str) -> bool:
    """Whether ``actual`` is ``expected`` with each ``...`` standing for any text (doctest's
    ELLIPSIS: the leftmost match of each piece in turn decides, so no backtracking)."""
    if ELLIPSIS not in expected:
        return expected == actual
    pieces = expected.split(ELLIPSIS)
    first, *middle, last = pieces
    if not actual.startswith(first) or len(actual) < len(first) + len(last):
        return False
    start, end = len(first), len(actual) - len(last)
    if not actual.endswith(last):
        return False
    for piece in middle:
        found = actual.find(piece, start, end)
        if found < 0:
            return False
        start = found + len(piece)
    return True


def parse_console(source: str, path: str, first_line: int) -> tuple[ConsoleCommand, ...]:
    """The commands of a console block whose first source line is line ``first_line``."""
    lines = source.splitlines()
    commands: list[ConsoleCommand] = []
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    if index < len(lines) and not lines[index].startswith(PROMPT):
        raise ValueError(
            f"{path}:{first_line + index}: a console block starts with a '$ ' command line, "
            f"not {lines[index]!r} (for commands not to be run, use a ```bash block)"
        )
    # Each turn reads one command and the output lines after it, up to the next command.
    while index < len(lines):
        line = lines[index]
        command_line = first_line + index
        text = [line[len(PROMPT) :]]
        index += 1
        while index < len(lines):
            if text[-1].endswith("\\"):
                text.append(lines[index])
            elif lines[index].startswith(CONTINUATION) or lines[index] == CONTINUATION.strip():
                text.append(lines[index][len(CONTINUATION) :])
            else:
                break
            index += 1
        output: list[str] = []
        while index < len(lines) and not lines[index].startswith(PROMPT):
            output.append(lines[index])
            index += 1
        exit_match = EXPECTED_EXIT.search(text[-1])
        expected = "\n".join(output) if any(line.strip() for line in output) else None
        commands.append(
            ConsoleCommand(
                text="\n".join(text),
                line=command_line,
                exit_code=int(exit_match.group("code")) if exit_match else 0,
                expected=expected,
            )
        )
    return tuple(commands)


def console_environment() -> dict[str, str]:
    """The environment of the docs' commands: this venv first on PATH, no NEXUS_* settings,
    a fixed terminal width and no colours."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("NEXUS_") and name not in {"FORCE_COLOR", "BASH_ENV", "ENV"}
    }
    bin_dir = str(Path(sys.executable).parent)
    environment["PATH"] = os.pathsep.join([bin_dir, environment.get("PATH", os.defpath)])
    environment["COLUMNS"] = CONSOLE_COLUMNS
    environment["NO_COLOR"] = "1"
    environment["PYTHONIOENCODING"] = "utf-8"
    return environment


def prepare_scratch_checkout(directory: Path) -> None:
    """Make ``directory`` look like the root of a fresh checkout with its venv installed."""
    (directory / "alembic.ini").symlink_to(ROOT / "alembic.ini")
    (directory / "migrations").symlink_to(ROOT / "migrations", target_is_directory=True)
    (directory / ".venv").symlink_to(Path(sys.executable).parent.parent, target_is_directory=True)


class SetupCache:
    """The directory each distinct setup left, so that a setup shared by many blocks runs once
    (a ``nexus`` command costs most of a second of start-up)."""

    def __init__(self) -> None:
        self._root: tempfile.TemporaryDirectory[str] | None = None
        self._done: dict[str, Path] = {}

    def restore(self, setup: str, directory: Path) -> bool:
        """Fills ``directory`` (which must not exist) as the setup left it, if it ran before."""
        saved = self._done.get(setup)
        if saved is None:
            return False
        shutil.copytree(saved, directory, symlinks=True)
        return True

    def save(self, setup: str, directory: Path) -> None:
        if self._root is None:
            self._root = tempfile.TemporaryDirectory(prefix="nexus-docs-setup-")
        saved = Path(self._root.name) / str(len(self._done))
        shutil.copytree(directory, saved, symlinks=True)
        self._done[setup] = saved


SETUP_CACHE = SetupCache()


def _run_bash(
    arguments: list[str], directory: Path, environment: dict[str, str]
) -> tuple[int, str]:
    """Runs bash with stdout and stderr merged; returns its exit code and output. A run past
    the timeout is killed with everything it started (a server left running would otherwise
    hold the output pipe open) and reported as exit code -9."""
    process = subprocess.Popen(
        ["bash", *arguments],
        cwd=directory,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=CONSOLE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        timed_out = f"\n[killed: still running after {CONSOLE_TIMEOUT_SECONDS} s]\n"
        return -signal.SIGKILL, output + timed_out
    return process.returncode, output


def _prepare_directory(
    example: ConsoleExample, directory: Path, environment: dict[str, str]
) -> str | None:
    """Creates the block's scratch checkout at ``directory`` and runs its setup there; returns
    a failure message, or None."""
    if example.setup is not None and SETUP_CACHE.restore(example.setup, directory):
        return None
    directory.mkdir()
    prepare_scratch_checkout(directory)
    if example.setup is None:
        return None
    code, output = _run_bash(["-e", "-o", "pipefail", "-c", example.setup], directory, environment)
    if code != 0:
        first = example.commands[0]
        return (
            f"{example.path}:{first.line}: the console-setup before this block exited "
            f"{code}:\n{example.setup.strip()}\n--- its output:\n{output}"
        )
    SETUP_CACHE.save(example.setup, directory)
    return None


def _block_script(commands: Iterable[ConsoleCommand], marker: str) -> str:
    """One bash script for the block: after each command, a line with the marker and its exit
    code; a command that exits otherwise than the docs expect ends the script."""
    lines = [
        "set -o pipefail",
        # Keeps $? the command's own, for a documented `echo $?`.
        "__nexus_docs_mark() {",
        "    local code=$?",
        f"    printf '\\n{marker} %d\\n' \"$code\"",
        '    [ "$code" -eq "$1" ] || exit 0',
        '    return "$code"',
        "}",
    ]
    for command in commands:
        lines += [command.text, f"__nexus_docs_mark {command.exit_code}"]
    return "\n".join(lines) + "\n"


def _output_lines(text: str) -> list[str]:
    """The lines of ``text`` as compared: run-dependent values replaced by their shape's name,
    trailing spaces and trailing blank lines dropped."""
    for pattern, shape in RUN_DEPENDENT:
        text = pattern.sub(shape, text)
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def evaluate_console_example(example: Example) -> str | None:
    parsed: ConsoleExample = example.parsed
    environment = console_environment()
    with tempfile.TemporaryDirectory(prefix="nexus-docs-console-") as scratch:
        directory = Path(scratch) / "checkout"
        setup_failure = _prepare_directory(parsed, directory, environment)
        if setup_failure is not None:
            return setup_failure
        marker = f"@@nexus-docs-{uuid.uuid4().hex}"
        shell_code, shell_output = _run_bash(
            ["-c", _block_script(parsed.commands, marker)], directory, environment
        )
    failures: list[str] = []
    chunks = re.split(rf"\n{re.escape(marker)} (-?\d+)\n", shell_output)
    for index, command in enumerate(parsed.commands):
        where = f"{parsed.path}:{command.line}: $ {command.text}"
        if 2 * index + 1 >= len(chunks):
            failures.append(
                f"{where}\nended the block's shell (exit {shell_code}), so the "
                f"commands after it did not run; its output:\n{chunks[-1]}"
            )
            break
        output, code = chunks[2 * index], int(chunks[2 * index + 1])
        if code != command.exit_code:
            failures.append(
                f"{where}\nexited {code}, the docs expect {command.exit_code} (mark an "
                f"expected failure with a trailing `# exit {code}`); its output:\n{output}"
            )
            break
        if command.expected is None:
            continue
        expected, actual = _output_lines(command.expected), _output_lines(output)
        if ellipsis_match("\n".join(expected), "\n".join(actual)):
            continue
        diff = difflib.unified_diff(
            expected, actual, "documented output", "actual output", lineterm=""
        )
        failures.append(
            f"{where}\nprinted other output than the docs show (timestamps, UUIDs and "
            "tokens compared by shape):\n" + "\n".join(diff)
        )
    return "\n\n".join(failures) or None


def _shown_path(path: str) -> str:
    """A docs file as failures name it: relative to the project root when it is inside."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path


class ConsoleExampleParser:
    """Yields one region per ```console block, with the console-setup comment before it."""

    def __init__(self) -> None:
        self.lexer = RawFencedCodeBlockLexer(info_pattern=FENCE_INFO)

    def __call__(self, document: Document) -> Iterable[Region]:
        blocks = sorted(self.lexer(document), key=lambda region: region.start)
        previous_end = 0
        for block in blocks:
            start, previous_end = previous_end, block.end
            between = document.text[start : block.start]
            setups = list(SETUP_DIRECTIVE.finditer(between))
            is_console = block.lexemes["language"].strip() == "console"
            _check_setup_placement(document, start, block.start, setups, is_console)
            if not is_console:
                continue
            source: Lexeme = block.lexemes["source"]
            # The line after the opening fence.
            first_line = document.text.count("\n", 0, block.start) + 2
            commands = parse_console(str(source), _shown_path(document.path), first_line)
            setup = setups[0].group("commands").strip() + "\n" if setups else None
            example = ConsoleExample(_shown_path(document.path), commands, setup)
            yield Region(block.start, block.end, example, evaluate_console_example)
        trailing = list(SETUP_DIRECTIVE.finditer(document.text[previous_end:]))
        _check_setup_placement(document, previous_end, len(document.text), trailing, False)


def _check_setup_placement(
    document: Document,
    offset: int,
    end: int,
    setups: list[re.Match[str]],
    before_console: bool,
) -> None:
    """A console-setup comment prepares the ```console block right after it (only other
    comments between), one per block: anything else is a mistake in the docs, not a setup
    that silently does nothing."""
    if not setups:
        return
    after = HTML_COMMENT.sub("", document.text[offset + setups[-1].end() : end])
    if len(setups) > 1:
        problem = "more than one console-setup comment before a block"
    elif not before_console or after.strip():
        problem = "a console-setup comment must come right before the ```console block it prepares"
    else:
        return
    line = document.text.count("\n", 0, offset + setups[0].start()) + 1
    raise ValueError(f"{document.path}:{line}: {problem}")


@pytest.fixture
def docs_example_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh working directory, and no database chosen by the environment."""
    monkeypatch.delenv("NEXUS_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


pytest_collect_file = Sybil(
    parsers=[SkipParser(), PythonExampleParser(), ConsoleExampleParser()],
    patterns=["README.md", "docs/*.md"],
    fixtures=["docs_example_cwd"],
    name="docs",
).pytest()
