"""The docs-example runner (conftest.py at the project root) fails on what it claims to catch:
a python block whose output differs from the output block after it, or from its ``print(...)
# comment``s, and a block that raises. Shell, SQL and text blocks are not run, a
``<!-- skip: next -->`` block is not run, and blocks do not share a namespace."""

from __future__ import annotations

import importlib.util
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
    spec.loader.exec_module(module)
    return module


RUNNER = _runner()


def run_markdown(tmp_path: Path, text: str) -> int:
    """Evaluate every example of ``text`` as the runner does; returns how many ran."""
    path = tmp_path / "doc.md"
    path.write_text(text.replace("~~~", FENCE), encoding="utf-8")
    document = Document.parse(str(path), SkipParser(), RUNNER.PythonExampleParser())
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

~~~console
$ nexus demo
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
