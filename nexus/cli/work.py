"""``nexus work``: the queue from a terminal — views, one item, claims and their outcome,
explanations, history, the dependency graph, counts."""

from __future__ import annotations

import re
import shlex
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from nexus.cli import graph as graphs
from nexus.cli.common import (
    CommandGroup,
    console,
    db_option,
    emit,
    emit_json,
    json_option,
    open_queue,
    open_store,
    page_document,
    parse_json_value,
    pick,
    print_fields,
    print_next_cursor,
    refuse,
    table,
)
from nexus.cli.keys import (
    BLOCKER_KEYS,
    ENQUEUE_KEYS,
    HISTORY_KEYS,
    STATS_KEYS,
    VIEW_KEYS,
    VIEWS,
    WORK_ITEM_KEYS,
)
from nexus.errors import NexusFileNotFoundError, WorkItemNotFoundError
from nexus.storage.clock import utcnow
from nexus.storage.validation import STATUSES
from nexus.work.worker import default_worker_id

if TYPE_CHECKING:
    from rich.console import Group

    from nexus.work import WorkItem, WorkQueue

ITEM_COLUMNS = ["virtual_path", "status", "priority", "attempts", "lease_token"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class Duration(click.ParamType):  # type: ignore[type-arg]
    """``30s``, ``5m``, ``2h``, ``7d``, ``1w`` (a bare number is seconds), as a timedelta."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        match = _DURATION.match(str(value))
        if match is None:
            self.fail(f"{value!r} is not a duration like 30s, 5m, 2h, 7d", param, ctx)
        number, unit = match.groups()
        try:
            return timedelta(seconds=float(number) * _UNIT_SECONDS[unit or "s"])
        except OverflowError:
            self.fail(f"{value!r} is longer than any duration can be", param, ctx)


DURATION = Duration()


def tag_option(command: Any) -> Any:
    return click.option(
        "--tag", "tags", multiple=True, help="Only items with one of these tags (repeatable)."
    )(command)


def prefix_option(command: Any) -> Any:
    return click.option(
        "--prefix", "path_prefix", default=None, help="Only paths starting with this text."
    )(command)


def token_option(command: Any) -> Any:
    return click.option(
        "--token", "lease_token", required=True, help="The lease_token the claim returned."
    )(command)


def _item(item: WorkItem | dict[str, Any]) -> dict[str, Any]:
    return pick(item, WORK_ITEM_KEYS)


def _outcome(path: str, status: str, as_json: bool) -> None:
    emit({"path": path, "status": status}, as_json, f"{path} {status}")


@click.group(cls=CommandGroup)
def work() -> None:
    """The work queue: views, items, claims, outcomes, explanations, graph, counts."""


# ---------------------------------------------------------------------------------- views


# The human titles of the views, in the words of docs/views.md's glossary.
VIEW_TITLES = {
    "ready": "ready now",
    "pending": "status pending",
    "blocked": "waiting on dependencies",
    "in-progress": "in progress",
    "by-priority": "every work item, by priority",
}


def waits_on(count: int) -> str:
    return f"{count} dependency" if count == 1 else f"{count} dependencies"


def _human_rows(name: str, items: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows a person reads; a row waiting on dependencies shows its status
    and how many dependencies it waits on."""
    columns = ["virtual_path", "status", "priority", *VIEWS[name][1]]
    if name != "blocked":
        return columns, items
    rows = [{**item, "waits on": waits_on(item["blocker_count"])} for item in items]
    return ["virtual_path", "status", "waits on", "priority"], rows


def _view_command(name: str, method: str, extra: tuple[str, ...]) -> click.Command:
    keys = (*VIEW_KEYS, *extra)
    doc = {
        "ready": "Items ready now: a worker can claim them (status ready, every dependency "
        "completed, run_after reached).",
        "pending": "Items with status pending (parked: not claimed until set to ready).",
        "blocked": "Items waiting on dependencies (any status; a dependency not completed), "
        "with their status and how many they wait on, most first.",
        "in-progress": "Items being worked on, with their worker, newest claim first.",
        "by-priority": "Every work item whatever its status, in priority order, with tags.",
    }[name]

    @click.command(name, help=f"{doc} Paged: pass --after the next_cursor of a page.")
    @db_option
    @click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
    @tag_option
    @prefix_option
    @click.option("--after", default=None, metavar="CURSOR", help="next_cursor of a page.")
    @json_option
    def view(
        db: str | None,
        limit: int,
        tags: tuple[str, ...],
        path_prefix: str | None,
        after: str | None,
        as_json: bool,
    ) -> None:
        with open_store(db) as store:
            page = getattr(store, method)(
                limit, tags=list(tags) or None, path_prefix=path_prefix, after=after
            )
        items = [pick(row, keys) for row in page.items]
        if as_json:
            emit_json(page_document(items, page.next_cursor))
            return
        columns, rows = _human_rows(name, items)
        table(VIEW_TITLES[name], columns, rows)
        print_next_cursor(page.next_cursor)

    return view


for _name, (_method, _extra) in VIEWS.items():
    work.add_command(_view_command(_name, _method, _extra))


# ------------------------------------------------------------------------------ one item


@work.command()
@db_option
@click.argument("path")
@click.option("--priority", type=int, default=None, help="Lower runs first.")
@click.option("--depends-on", "depends_on", multiple=True, help="A path or path_id (repeatable).")
@tag_option
@click.option("--status", type=click.Choice(STATUSES), default="ready", show_default=True)
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--delay", type=DURATION, default=None, help="Not claimable before now + delay.")
@click.option("--idempotency-key", default=None, help="Enqueue at most once per key.")
@json_option
def enqueue(
    db: str | None,
    path: str,
    priority: int | None,
    depends_on: tuple[str, ...],
    tags: tuple[str, ...],
    status: str,
    max_attempts: int,
    delay: timedelta | None,
    idempotency_key: str | None,
    as_json: bool,
) -> None:
    """Make PATH a work item (creating the path if needed); an existing item is unchanged.
    Warns on stderr of each dependency that names no path (it is kept: it blocks)."""
    with open_queue(db, create=True) as queue:
        enqueued = queue.enqueue(
            path,
            priority=priority,
            depends_on=list(depends_on) or None,
            tags=list(tags) or None,
            status=status,
            run_after=utcnow() + delay if delay is not None else None,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
        )
        # Read it back: a new item's blocker_count and created_at are the database's.
        found = queue.get_work_item(enqueued["path_id"]) or enqueued
    document = pick(
        {
            **found,
            "created": enqueued["created"],
            "missing_dependencies": enqueued["missing_dependencies"],
        },
        ENQUEUE_KEYS,
    )
    for ref in enqueued["missing_dependencies"]:
        click.echo(
            f"warning: {document['virtual_path']} depends on {ref}, which does not exist;"
            " it waits until a path of that name is enqueued and completed",
            err=True,
        )
    state = f"{document['status']} blockers={document['blocker_count']}"
    if not enqueued["created"]:
        state = f"exists, unchanged: {state}"
    emit(document, as_json, f"{document['virtual_path']} {state}")


@work.command()
@db_option
@click.argument("path")
@json_option
def show(db: str | None, path: str, as_json: bool) -> None:
    """Print the work item at PATH (a path or path_id) and its metadata."""
    with open_queue(db) as queue:
        found = queue.get_work_item(path)
        if found is None:
            if not queue.store.exists(path):
                raise NexusFileNotFoundError(path)
            raise WorkItemNotFoundError(path)
        metadata = queue.store.get_all_file_metadata(found["path_id"])
    item = _item(found)
    if as_json:
        emit_json({**item, "metadata": metadata})
    else:
        print_fields(item["virtual_path"], item, WORK_ITEM_KEYS, metadata)


@work.command()
@db_option
@click.option("--worker-id", default=None, help="Recorded with the claim [default: host-pid-rnd].")
@click.option("--limit", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--lease", "lease_seconds", type=DURATION, default="300s", show_default=True)
@tag_option
@prefix_option
@json_option
def claim(
    db: str | None,
    worker_id: str | None,
    limit: int,
    lease_seconds: timedelta,
    tags: tuple[str, ...],
    path_prefix: str | None,
    as_json: bool,
) -> None:
    """Claim up to LIMIT ready items (exit 1 if none is ready); prints their lease tokens,
    each also on a line of its own: complete with: nexus work complete PATH --token TOKEN."""
    with open_queue(db) as queue:
        claimed = queue.claim_ready_work(
            worker_id or default_worker_id(),
            limit=limit,
            lease_seconds=lease_seconds.total_seconds(),
            tags=list(tags) or None,
            path_prefix=path_prefix,
        )
    items = [_item(item) for item in claimed]
    if not items:
        refuse("nothing ready to claim")
    if as_json:
        emit_json(page_document(items, None))
    else:
        table("claimed", ITEM_COLUMNS, items)
        # The token on one line of its own: a table folds what is wider than its column.
        for item in items:
            path, token = shlex.quote(item["virtual_path"]), item["lease_token"]
            click.echo(f"complete with: nexus work complete {path} --token {token}")


@work.command()
@db_option
@click.argument("path")
@token_option
@click.option("--result", default=None, help="Stored as the result key; read as JSON.")
@json_option
def complete(
    db: str | None, path: str, lease_token: str, result: str | None, as_json: bool
) -> None:
    """Complete PATH (exit 1 if the lease is not held); prints the dependents it promoted."""
    value = parse_json_value(result) if result is not None else None
    with open_queue(db) as queue:
        promoted = queue.complete_work(path, lease_token, result=value)
    document = {"path": path, "status": "completed", "promoted": promoted}
    emit(document, as_json, f"{path} completed; promoted: {', '.join(promoted) or '(none)'}")


@work.command()
@db_option
@click.argument("path")
@token_option
@click.option("--error", "error", required=True, help="What went wrong (kept as last_error).")
@click.option("--no-retry", is_flag=True, help="Dead-letter now, whatever attempts are left.")
@json_option
def fail(
    db: str | None, path: str, lease_token: str, error: str, no_retry: bool, as_json: bool
) -> None:
    """Fail PATH: back to ready after a back-off while attempts are left, else failed."""
    with open_queue(db) as queue:
        status = queue.fail_work(path, lease_token, error, retry=not no_retry)
    _outcome(path, status, as_json)


@work.command()
@db_option
@click.argument("path")
@token_option
@json_option
def release(db: str | None, path: str, lease_token: str, as_json: bool) -> None:
    """Give PATH back untouched: ready again, the attempt not counted."""
    with open_queue(db) as queue:
        queue.release_work(path, lease_token)
    _outcome(path, "ready", as_json)


@work.command()
@db_option
@click.argument("path")
@json_option
def cancel(db: str | None, path: str, as_json: bool) -> None:
    """Cancel PATH (status failed, last_error "cancelled"); its worker loses the lease."""
    with open_queue(db) as queue:
        queue.cancel_work(path)
    _outcome(path, "failed", as_json)


@work.command()
@db_option
@click.argument("path")
@json_option
def retry(db: str | None, path: str, as_json: bool) -> None:
    """Put a failed (dead-lettered or cancelled) PATH back to ready, attempts reset."""
    with open_queue(db) as queue:
        queue.retry_work(path)
    _outcome(path, "ready", as_json)


@work.command()
@db_option
@json_option
def reclaim(db: str | None, as_json: bool) -> None:
    """Return items whose lease expired to ready (or failed when out of attempts)."""
    with open_queue(db) as queue:
        count = queue.reclaim_expired_leases()
    emit({"reclaimed": count}, as_json, f"reclaimed {count}")


# -------------------------------------------------------------------------------- insight


@work.command()
@db_option
@click.argument("path")
@json_option
def explain(db: str | None, path: str, as_json: bool) -> None:
    """Why PATH is not claimable: the chain of its unresolved dependencies, nearest first."""
    with open_queue(db) as queue:
        chain = [pick(entry, BLOCKER_KEYS) for entry in queue.explain_blocked(path)]
    if as_json:
        emit_json(page_document(chain, None))
    elif not chain:
        click.echo(f"{path} has no unresolved dependencies")
    else:
        table(f"blockers of {path}", ["depth", "path", "status", "why", "blocks"], chain)


@work.command()
@db_option
@click.argument("path")
@json_option
def history(db: str | None, path: str, as_json: bool) -> None:
    """Every recorded transition of the work item at PATH, oldest first."""
    with open_queue(db) as queue:
        events = [pick(event, HISTORY_KEYS) for event in queue.get_work_history(path)]
    if as_json:
        emit_json(page_document(events, None))
    else:
        table(f"history of {path}", list(HISTORY_KEYS), events)


@work.command()
@db_option
@click.argument("path", required=False)
@click.option("--tag", default=None, help="Draw every item with this tag instead of a PATH.")
@click.option("--up", "direction", flag_value="up", help="What PATH depends on.")
@click.option("--down", "direction", flag_value="down", help="What depends on PATH.")
@click.option("--both", "direction", flag_value="both", default=True, help="Both [default].")
@click.option("--depth", type=click.IntRange(min=1), default=None, help="Steps [default: all].")
@click.option("--max-nodes", type=click.IntRange(min=1), default=500, show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(graphs.FORMATS), default="mermaid", show_default=True
)
@json_option
def graph(
    db: str | None,
    path: str | None,
    tag: str | None,
    direction: str,
    depth: int | None,
    max_nodes: int,
    fmt: str,
    as_json: bool,
) -> None:
    """Draw the dependency DAG around PATH, or of the items with --tag (edges run from a
    dependency to what waits for it)."""
    if (path is None) == (tag is None):
        raise click.UsageError("give a PATH or --tag, not both")
    with open_queue(db) as queue:
        if path is not None:
            drawn = graphs.around(
                queue, path, direction=direction, depth=depth, max_nodes=max_nodes
            )
        else:
            drawn = graphs.of_tag(queue, str(tag), max_nodes=max_nodes)
    click.echo(graphs.render(drawn, "json" if as_json else fmt))


def stats_tables(stats: dict[str, Any]) -> Group:
    """The two ideas apart: the views (ready now, waiting on dependencies), then the status
    counts (the six values of the status key)."""
    from rich.console import Group
    from rich.table import Table

    views = Table(title="work views", title_justify="left")
    for label in ("ready now", "waiting on dependencies"):
        views.add_column(label, justify="right", overflow="fold")
    views.add_row(str(stats["ready_now"]), str(stats["waiting_on_dependencies"]))
    by_status = Table(title="status counts", title_justify="left")
    for name in STATUSES:
        by_status.add_column(name, justify="right", overflow="fold")
    by_status.add_row(*(str(stats["by_status"][name]) for name in STATUSES))
    return Group(views, by_status)


def _stats(queue: WorkQueue) -> dict[str, Any]:
    return {key: value for key, value in queue.work_stats().items() if key in STATS_KEYS}


@work.command()
@db_option
@click.option("--watch", is_flag=True, help="Redraw in place every --interval (Ctrl-C to stop).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True)
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
@json_option
def stats(db: str | None, watch: bool, interval: float, count: int | None, as_json: bool) -> None:
    """Items ready now and waiting on dependencies, and the status counts, from maintained
    counters (cheap)."""
    if watch and as_json:
        raise click.UsageError("--watch draws tables; it cannot be combined with --json")
    with open_queue(db) as queue:
        if as_json:
            emit_json(_stats(queue))
            return
        if not watch:
            console().print(stats_tables(_stats(queue)))
            return
        from rich.console import Group
        from rich.live import Live

        frames = 0
        with Live(Group(), console=console(), auto_refresh=False) as live:
            try:
                while count is None or frames < count:
                    frames += 1
                    live.update(stats_tables(_stats(queue)), refresh=True)
                    if count is not None and frames >= count:
                        break
                    time.sleep(interval)
            except KeyboardInterrupt:
                pass
