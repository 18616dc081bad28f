"""``nexus worker run -- CMD ARGS...``: a shell command per claimed item.

The queue's :class:`~nexus.work.Worker` does the claiming, heartbeating and completing, in a
thread of its own, while the main thread owns the signals and the status line. Commands run
in a session of their own, so a Ctrl-C in the terminal reaches only nexus: the first SIGINT
(or SIGTERM) stops claiming and lets the running commands finish; a second one terminates
them and releases their items (ready again, the attempt not counted).

A command that cannot be started at all (not found, not executable) is no failure of the
item: the handler raises :class:`~nexus.work.worker.StopWorker`, so the Worker releases the
item and stops, and the command exits 2. Exit codes: 0 every item completed, 1 some failed,
2 the command could not be run (or a usage error), 130 aborted by a second Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from nexus.cli.common import CommandGroup, Refused, db_option, emit, json_option, open_queue
from nexus.cli.keys import WORKER_KEYS
from nexus.cli.work import DURATION, prefix_option, tag_option
from nexus.work.worker import StopWorker, Worker, default_worker_id

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from nexus.work import WorkItem, WorkQueue

#: Exit status after a second Ctrl-C aborted the running commands (128 + SIGINT).
ABORTED_EXIT_CODE = 130
#: Exit status when the command could not be run at all (as for a usage error).
CANNOT_RUN_EXIT_CODE = 2
#: Exit statuses by which a shell, env, xargs, timeout... say they could not run a command:
#: 126 found but not executable, 127 not found (POSIX). ``sh -c './proces.sh'`` is as
#: unrunnable as ``./proces.sh``.
CANNOT_RUN_STATUSES = (126, 127)
PATH_PLACEHOLDER = "{path}"
PATH_ID_PLACEHOLDER = "{path_id}"


class CannotRun(StopWorker):
    """The command could not be started (or its shell said it could not run it)."""


class Aborted(StopWorker):
    """A second Ctrl-C terminated the command; its item is given back."""


class CannotRunError(Refused):
    """``worker run`` stopped because its command cannot be run (exit code 2)."""

    exit_code = CANNOT_RUN_EXIT_CODE


class CommandRunner:
    """The handler: runs the command for one item; exit 0 completes it, anything else fails
    it with the last 500 characters of its output, but a command that cannot be started
    (or exits 126/127) raises CannotRun: the item is released and the worker stops."""

    def __init__(self, queue: WorkQueue, command: tuple[str, ...]) -> None:
        self.queue = queue
        self.command = command
        self.aborting = threading.Event()
        self.running: dict[str, subprocess.Popen[str]] = {}
        self._lock = threading.Lock()

    def arguments(self, item: WorkItem) -> list[str]:
        replace = {PATH_PLACEHOLDER: item["virtual_path"], PATH_ID_PLACEHOLDER: item["path_id"]}
        return [replace.get(arg, arg) for arg in self.command]

    def __call__(self, item: WorkItem) -> dict[str, Any]:
        env = {**os.environ, "NEXUS_PATH": item["virtual_path"], "NEXUS_PATH_ID": item["path_id"]}
        with self._lock:
            if self.aborting.is_set():
                raise Aborted("aborted: the command was not started")
            try:
                proc = subprocess.Popen(
                    self.arguments(item),
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    errors="replace",
                    start_new_session=True,
                )
            except OSError as exc:  # not found, not executable, not a program, no resources
                reason = exc.strerror or str(exc)
                raise CannotRun(f"cannot run {self.command[0]!r}: {reason}") from exc
            self.running[item["path_id"]] = proc
        try:
            stdout, stderr = proc.communicate()
        finally:
            with self._lock:
                self.running.pop(item["path_id"], None)
        if proc.returncode != 0 and self.aborting.is_set():
            raise Aborted(f"aborted: the command was terminated (exit code {proc.returncode})")
        if proc.returncode != 0:
            tail = (stderr or stdout).strip()[-500:]
            if proc.returncode in CANNOT_RUN_STATUSES:
                raise CannotRun(
                    f"cannot run {self.command[0]!r}: exit code {proc.returncode} "
                    f"({'not executable' if proc.returncode == 126 else 'not found'}): {tail}"
                )
            raise RuntimeError(f"exit code {proc.returncode}: {tail}")
        return {"exit_code": 0}

    def abort(self) -> None:
        """Terminate the running commands; their items are released as they exit."""
        with self._lock:
            self.aborting.set()
            procs = list(self.running.values())
        for proc in procs:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)


@contextmanager
def _signals(worker: Worker, runner: CommandRunner) -> Iterator[None]:
    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        if worker.stopping:
            runner.abort()
        else:
            worker.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _status(worker: Worker, runner: CommandRunner, started: float) -> Text:
    from rich.text import Text

    stats = worker.stats
    elapsed = max(time.monotonic() - started, 1e-6)
    line = (
        f"{worker.worker_id}: claimed {stats.claimed} · completed {stats.completed} · "
        f"failed {stats.failed} · running {len(runner.running)} · "
        f"{stats.completed / elapsed:.1f}/s"
    )
    if runner.aborting.is_set():
        line += " · aborting"
    elif worker.stopping:
        line += " · stopping (Ctrl-C again to abort)"
    return Text(line)


@click.group(cls=CommandGroup)
def worker() -> None:
    """Run work: a command per claimed item."""


@worker.command(
    "run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@db_option
@click.option("--worker-id", default=None, help="Recorded with each claim [default: host-pid-rnd].")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--lease", "lease", type=DURATION, default="300s", show_default=True)
@tag_option
@prefix_option
@click.option("--until-idle", is_flag=True, help="Stop when no work is ready.")
@click.option("--max-items", type=click.IntRange(min=1), default=None, help="Stop after N claims.")
@json_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    db: str | None,
    worker_id: str | None,
    concurrency: int,
    lease: timedelta,
    tags: tuple[str, ...],
    path_prefix: str | None,
    until_idle: bool,
    max_items: int | None,
    as_json: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND once per claimed item: NEXUS_PATH and NEXUS_PATH_ID are in its
    environment, and an argument {path} (or {path_id}) is replaced by the item's. Exit code 0
    completes the item; anything else fails it (retried with back-off until max_attempts).
    A COMMAND that cannot be run (not found, not executable, or exit code 126/127) stops the
    worker and gives its item back (attempt not counted). Ctrl-C: finish the running
    commands, then stop; twice: terminate them and release their items.

    \b
    Exit codes: 0 every command succeeded
                1 some command failed (its item failed or awaits a retry)
                2 COMMAND cannot be run, or a usage error
                130 aborted by a second Ctrl-C"""
    from rich.console import Console

    status_console = Console(stderr=True)
    with open_queue(db) as queue:
        runner = CommandRunner(queue, command)
        nexus_worker = Worker(
            queue,
            runner,
            worker_id=worker_id or default_worker_id(),
            concurrency=concurrency,
            lease_seconds=lease.total_seconds(),
            tags=list(tags) or None,
            path_prefix=path_prefix,
        )
        failure: list[BaseException] = []
        stopped: list[StopWorker] = []

        def loop() -> None:
            try:
                nexus_worker.run(stop_when_idle=until_idle, max_items=max_items)
            except StopWorker as exc:  # the items are settled: report below
                stopped.append(exc)
            except BaseException as exc:
                failure.append(exc)

        started = time.monotonic()
        thread = threading.Thread(target=loop, name="nexus-worker-run")
        with _signals(nexus_worker, runner), _status_line(status_console) as show:
            thread.start()
            while thread.is_alive():
                thread.join(0.25)
                show(_status(nexus_worker, runner, started))
        if failure:
            raise failure[0]
    stats = nexus_worker.stats
    values = {
        "worker_id": nexus_worker.worker_id,
        "claimed": stats.claimed,
        "completed": stats.completed,
        "promoted": stats.promoted,
        "failed": stats.failed,
        "lost": stats.lost,
        "released": stats.released,
        "seconds": round(time.monotonic() - started, 3),
    }
    document = {key: values[key] for key in WORKER_KEYS}
    refusal: Refused | None = None
    if runner.aborting.is_set():
        pass  # the abort's own StopWorker: exit 130 below, after the counts
    elif stopped:
        message = f"{stopped[0]}; its item was released, not failed"
        refusal = CannotRunError(message, details=document)
    elif stats.failed:
        message = f"{stats.failed} of {stats.claimed} commands failed (warnings above)"
        refusal = Refused(message, details=document)
    # With --json a failed run is one document: the error's, carrying the counts.
    if not (as_json and refusal):
        text = " ".join(f"{key} {values[key]}" for key in WORKER_KEYS[1:-1])
        emit(document, as_json, text)
    if runner.aborting.is_set():
        click.get_current_context().exit(ABORTED_EXIT_CODE)
    if refusal is not None:
        raise refusal


@contextmanager
def _status_line(out: Console) -> Iterator[Callable[[Text], None]]:
    """A status line redrawn in place on a terminal; nothing elsewhere (logs, pipes)."""
    if not out.is_terminal:
        yield lambda _text: None
        return
    from rich.live import Live
    from rich.text import Text

    with Live(Text(""), console=out, auto_refresh=False, transient=True) as live:
        yield lambda text: live.update(text, refresh=True)
