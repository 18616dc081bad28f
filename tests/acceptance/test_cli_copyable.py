"""Values a person copies from the ``nexus`` tables are never cut short, at 80 columns and
at 40, with the real entry point in a subprocess: a lease token, a path, a path_id, a worker
id, a cursor. A value wider than its column folds (its pieces, read down the column, are the
value); it is never ellipsized, never read as markup; ``work claim`` also prints each token
on a line of its own, and the token copied from there completes the item."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue

LONG = "/very/long/directory/name/for/the/jobs/of/this/week/extract-2026-12-01.json"
MARKUP = "/odd/[bold]not-markup[/bold]/x.json"
WORKER = "worker-with-a-long-identifier-on-host-build-07.example.org-12345"
WIDTHS = ["80", "40"]


def nexus_command() -> list[str]:
    """The installed ``nexus`` script next to this Python (the real entry point)."""
    script = Path(sys.executable).with_name("nexus")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nexus.cli.main"]


def nexus(args: list[str], columns: str, db: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_DATABASE_URL"}
    env["COLUMNS"] = columns
    proc = subprocess.run(
        [*nexus_command(), *args, "--db", db], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout and "..." not in proc.stdout, proc.stdout
    return proc.stdout


def column(output: str, name: str) -> str:
    """The text of column ``name`` of the (first) table in ``output``, read top to bottom:
    every body line's cell, joined without the padding (so folded values join up again)."""
    lines = output.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("┃"))
    headers: list[str] = []
    for line in lines[header_at:]:
        if not line.startswith("┃"):
            break
        cells = [cell.strip() for cell in line.strip("┃").split("┃")]
        headers = cells if not headers else [a + b for a, b in zip(headers, cells, strict=True)]
    index = headers.index(name)
    pieces = []
    for line in lines:
        if line.startswith("│"):
            pieces.append(line.strip("│").split("│")[index].strip())
        elif pieces and line.startswith("└"):
            break
    return "".join(pieces)


def enqueue(db: str, *paths: str) -> None:
    with SQLAlchemyMetadataStore(db) as store:
        queue = WorkQueue(store)
        queue.enqueue_many([{"path": path} for path in paths])
        queue.close()


@pytest.mark.parametrize("columns", WIDTHS)
def test_the_claimed_token_can_be_copied_and_completes_the_item(
    db_url: str, columns: str
) -> None:
    enqueue(db_url, LONG)
    out = nexus(["work", "claim", "--worker-id", WORKER], columns, db_url)
    hints = [line for line in out.splitlines() if line.startswith("complete with: ")]
    assert len(hints) == 1, out
    prefix = f"complete with: nexus work complete {LONG} --token "
    assert hints[0].startswith(prefix), hints
    token = hints[0].removeprefix(prefix)
    assert len(token) == 32 and int(token, 16) >= 0
    assert column(out, "lease_token") == token  # folded in the table, whole
    assert column(out, "virtual_path") == LONG
    done = nexus(["work", "complete", LONG, "--token", token], columns, db_url)
    assert done.strip() == f"{LONG} completed; promoted: (none)"


def test_a_path_to_quote_is_quoted_in_the_hint(tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    enqueue(db, "/with space/a b.json")
    out = nexus(["work", "claim"], "80", db)
    hint = next(line for line in out.splitlines() if line.startswith("complete with: "))
    assert hint.startswith("complete with: nexus work complete '/with space/a b.json' --token ")


@pytest.mark.parametrize("columns", WIDTHS)
def test_every_table_folds_what_is_wider_than_its_column(tmp_path: Path, columns: str) -> None:
    db = str(tmp_path / "m.db")
    enqueue(db, LONG, MARKUP, "/a.json", "/b.json")
    with SQLAlchemyMetadataStore(db) as store:
        queue = WorkQueue(store)
        queue.claim_ready_work(WORKER, path_prefix=LONG)
        queue.enqueue("/waits.json", depends_on=[LONG])
        long_id = queue.store.get(LONG).path_id  # type: ignore[union-attr]
        queue.close()

    listing = nexus(["ls", "/"], columns, db)
    assert column(listing, "virtual_path") == "".join(sorted([LONG, MARKUP, "/a.json", "/b.json",
                                                              "/waits.json"]))  # fmt: skip
    got = nexus(["get", LONG], columns, db)
    assert got.splitlines()[0] == LONG  # the title: one line, whole
    assert long_id in column(got, "value") and LONG in column(got, "value")
    shown = nexus(["work", "show", long_id], columns, db)
    assert WORKER in column(shown, "value") and long_id in column(shown, "value")
    in_progress = nexus(["work", "in-progress"], columns, db)
    assert column(in_progress, "worker_id") == WORKER
    assert column(in_progress, "virtual_path") == LONG
    history = nexus(["work", "history", LONG], columns, db)
    assert history.splitlines()[0] == f"history of {LONG}"
    assert column(history, "worker_id") == "-" + WORKER  # enqueued (no worker), claimed
    explained = nexus(["work", "explain", "/waits.json"], columns, db)
    assert column(explained, "path") == LONG
    meta = nexus(["meta", "get", MARKUP], columns, db)
    assert meta.splitlines()[0] == f"metadata of {MARKUP}"
    # A page's cursor is a line of its own, whole.
    page = nexus(["work", "ready", "--limit", "1"], columns, db)
    cursor = page.splitlines()[-1].removeprefix("more: --after ")
    following = nexus(["work", "ready", "--limit", "1", "--after", cursor], columns, db)
    assert column(following, "virtual_path") != column(page, "virtual_path")
