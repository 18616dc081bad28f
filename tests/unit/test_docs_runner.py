"""The docs-example runner (conftest.py at the project root) fails on what it claims to catch:
a python block whose output differs from the output block after it, or from its ``print(...)
# comment``s, and a block that raises; a console block whose command prints other output
than shown, or exits with another code than marked. Bash, SQL and text blocks are not run, a
``<!-- skip: next -->`` block is not run, and blocks share neither a namespace nor a
directory."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from sybil import Document
from sybil.example import SybilFailure
from sybil.parsers.markdown import SkipParser

ROOT = Path(__file__).resolve().parents[2]
FENCE = "```"


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_runner", ROOT / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


RUNNER = _runner()


def run_markdown(tmp_path: Path, text: str) -> int:
    """Evaluate every example of ``text`` as the runner does; returns how many ran."""
    path = tmp_path / "doc.md"
    path.write_text(text.replace("~~~", FENCE), encoding="utf-8")
    document = Document.parse(
        str(path), SkipParser(), RUNNER.PythonExampleParser(), RUNNER.ConsoleExampleParser()
    )
    ran = 0
    for example in document.examples():
        example.evaluate()
        ran += 1
    return ran


def test_matching_output_blocks_and_comments_pass(tmp_path: Path) -> None:
    text = """
~~~python
print("a")
print(1 + 1)
~~~

~~~
a
2
~~~

~~~python
print([1, 2])  # [1, 2]
~~~
"""
    assert run_markdown(tmp_path, text) == 2


def test_a_drifted_output_block_fails_with_a_diff(tmp_path: Path) -> None:
    text = """
~~~python
print("what the code prints")
~~~

~~~text
what the docs say
~~~
"""
    with pytest.raises(SybilFailure) as failure:
        run_markdown(tmp_path, text)
    assert "-what the docs say" in str(failure.value)
    assert "+what the code prints" in str(failure.value)


def test_a_drifted_print_comment_fails(tmp_path: Path) -> None:
    text = """
~~~python
print(sorted({3, 1}))  # [3, 1]
~~~
"""
    with pytest.raises(SybilFailure):
        run_markdown(tmp_path, text)


def test_a_block_that_raises_fails_at_its_line(tmp_path: Path) -> None:
    text = """intro

~~~python
x = 1
raise RuntimeError("broken example")
~~~
"""
    with pytest.raises(RuntimeError, match="broken example") as failure:
        run_markdown(tmp_path, text)
    assert failure.traceback[-1].lineno + 1 == 5  # doc.md line 5


def test_other_blocks_and_skipped_blocks_are_not_run(tmp_path: Path) -> None:
    text = """
~~~bash
this is not python
~~~

~~~sql
SELECT 1;
~~~

~~~sh
nexus demo
~~~

<!-- skip: next -->
~~~python
signature(x: int) -> None
~~~
"""
    # The skip directive and the block it skips (run, the signature would be a SyntaxError).
    assert run_markdown(tmp_path, text) == 2


def test_blocks_do_not_share_names(tmp_path: Path) -> None:
    text = """
~~~python
hidden_setup = 1
~~~

~~~python
print(hidden_setup)
~~~
"""
    with pytest.raises(NameError):
        run_markdown(tmp_path, text)


def console_failure(tmp_path: Path, text: str) -> str:
    with pytest.raises(SybilFailure) as failure:
        run_markdown(tmp_path, text)
    return str(failure.value)


def test_console_output_matches_with_ellipses_and_run_dependent_shapes(tmp_path: Path) -> None:
    text = """
~~~console
$ echo one; echo two; echo three    # a comment is fine
one
...
three
$ echo "id 0b34bec2-f483-4f8d-882b-74607b39cbda at $(date -u +%Y-%m-%dT%H:%M:%S.%6N+00:00)"
id 892502e0-a58a-4cee-8ecb-c990af15b5d7 at 2026-12-01T21:26:29.822000+00:00
$ echo "token $(python3 -c 'import secrets; print(secrets.token_hex(16))') in 0.25 s"
token cec13cfb96e1675c8da7bc01a7fbbaa4 in ... s
$ echo unchecked
~~~
"""
    assert run_markdown(tmp_path, text) == 1


def test_console_drift_fails_naming_file_line_command_and_diff(tmp_path: Path) -> None:
    text = """intro

~~~console
$ echo fine
fine
$ echo "what the command prints"
what the docs say
~~~
"""
    message = console_failure(tmp_path, text)
    assert f'{tmp_path / "doc.md"}:6: $ echo "what the command prints"' in message
    assert "-what the docs say" in message
    assert "+what the command prints" in message
    assert "echo fine" not in message


def test_a_shape_stands_only_for_its_own_shape(tmp_path: Path) -> None:
    text = """
~~~console
$ echo 2026-12-01T21:26:29+00:00
0b34bec2-f483-4f8d-882b-74607b39cbda
~~~
"""
    assert "-<uuid>" in console_failure(tmp_path, text)


def test_ellipsis_matches_any_text_and_nothing_else() -> None:
    match = RUNNER.ellipsis_match
    assert match("a ... c", "a b c")
    assert match("a\n...\nz", "a\nb\nc\nz")
    assert match("...", "")
    assert match("x...y...z", "xyz")
    assert not match("a ... c", "a b d")
    assert not match("ab...ba", "aba")  # the pieces may not overlap
    assert not match("no ellipsis", "no ellipsis!")


def test_an_expected_exit_code_is_honoured_and_kept_for_the_next_command(
    tmp_path: Path,
) -> None:
    text = """
~~~console
$ sh -c 'echo refused >&2; exit 3'    # exit 3
refused
$ echo $?
3
~~~
"""
    assert run_markdown(tmp_path, text) == 1


def test_an_unexpected_exit_code_fails_and_stops_the_block(tmp_path: Path) -> None:
    text = f"""
~~~console
$ sh -c 'echo broken; exit 2'
broken
$ touch {tmp_path / "ran"}
~~~
"""
    message = console_failure(tmp_path, text)
    assert "$ sh -c 'echo broken; exit 2'\nexited 2, the docs expect 0" in message
    assert "# exit 2" in message
    assert not (tmp_path / "ran").exists()


def test_a_block_still_running_at_the_timeout_is_killed_with_its_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RUNNER, "CONSOLE_TIMEOUT_SECONDS", 1)
    text = """
~~~console
$ echo started; sleep 60 & wait
started
~~~
"""
    started = time.monotonic()
    message = console_failure(tmp_path, text)
    assert "[killed: still running after 1 s]" in message
    assert time.monotonic() - started < 30


def test_a_command_marked_to_fail_that_succeeds_fails(tmp_path: Path) -> None:
    text = """
~~~console
$ true    # exit 1
~~~
"""
    assert "exited 0, the docs expect 1" in console_failure(tmp_path, text)


def test_a_block_that_ends_its_shell_early_fails(tmp_path: Path) -> None:
    text = """
~~~console
$ exit 0
$ echo never
~~~
"""
    assert "$ exit 0\nended the block's shell (exit 0)" in console_failure(tmp_path, text)


def test_commands_share_the_shell_and_blocks_share_nothing(tmp_path: Path) -> None:
    text = """
~~~console
$ name=first; touch left-behind
$ echo "$name" \\
    "continued"
first continued
$ printf '%s\\n' "multi
> line"
multi
line
~~~

~~~console
$ echo "${name-unset}"; ls left-behind 2>/dev/null || echo absent
unset
absent
~~~
"""
    assert run_markdown(tmp_path, text) == 2


def test_console_environment_is_a_scratch_checkout_without_nexus_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_DATABASE_URL", "postgresql://somewhere/else")
    monkeypatch.setenv("NEXUS_TENANT", "other")
    venv_bin = Path(sys.executable).parent
    text = f"""
~~~console
$ echo "${{NEXUS_DATABASE_URL-unset}} ${{NEXUS_TENANT-unset}} $COLUMNS"
unset unset 100
$ command -v nexus alembic
{venv_bin / "nexus"}
{venv_bin / "alembic"}
$ ls -A
.venv
alembic.ini
migrations
$ test .venv/bin/python -ef {sys.executable} && test -f migrations/env.py && echo ok
ok
~~~
"""
    assert run_markdown(tmp_path, text) == 1


def test_a_console_setup_prepares_the_block_without_being_checked(tmp_path: Path) -> None:
    text = """
<!-- console-setup:
echo "setup output is not compared"
echo prepared > state.txt
-->
~~~console
$ cat state.txt
prepared
~~~

<!-- console-setup: echo prepared > state.txt -->
<!-- skip: next -->
~~~console
$ false
~~~

<!-- console-setup: echo prepared > state.txt -->
~~~console
$ cat state.txt
prepared
~~~
"""
    # Three blocks and the skip directive; the skipped block's setup does not run either.
    assert run_markdown(tmp_path, text) == 4


def test_an_identical_setup_runs_once_and_later_blocks_start_from_its_copy(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    block = f"""
<!-- console-setup: echo run >> {runs}; echo prepared > state.txt -->
~~~console
$ cat state.txt; echo changed > state.txt
prepared
~~~
"""
    assert run_markdown(tmp_path, block + block + block) == 3
    assert runs.read_text() == "run\n"


def test_a_failing_console_setup_fails_the_block(tmp_path: Path) -> None:
    text = """
<!-- console-setup:
echo first
false
echo never
-->
~~~console
$ echo block
block
~~~
"""
    message = console_failure(tmp_path, text)
    assert "the console-setup before this block exited 1" in message
    assert "first" in message and "block\n" not in message


@pytest.mark.parametrize(
    "text",
    [
        "<!-- console-setup: true -->\n\nprose between\n\n~~~console\n$ true\n~~~\n",
        "<!-- console-setup: true -->\n~~~bash\ntrue\n~~~\n",
        "~~~console\n$ true\n~~~\n\n<!-- console-setup: true -->\n",
        "<!-- console-setup: true -->\n<!-- console-setup: true -->\n~~~console\n$ true\n~~~\n",
        "~~~console\nnexus demo\n~~~\n",
    ],
    ids=["prose-between", "before-bash", "at-the-end", "two-setups", "no-prompt"],
)
def test_a_malformed_console_block_or_setup_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError, match=r"doc\.md:\d+: "):
        run_markdown(tmp_path, text)
