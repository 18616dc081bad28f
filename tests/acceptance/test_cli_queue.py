"""The ``nexus work`` and ``nexus put/get/ls/rm/meta`` commands through click's CliRunner on
SQLite and PostgreSQL, by their effect on the database: an item goes through enqueue, claim,
complete/fail/release, cancel and retry from the shell; refusals (nothing to claim, a lost
lease, a missing path or key, a bad cursor) exit 1 with one line on stderr; ``stats --watch``
redraws; metadata values are read as JSON."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from click.testing import CliRunner, Result

from nexus.cli.main import cli
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkItem, WorkQueue


def invoke(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--db", db_url])


def run(db_url: str, *args: str) -> str:
    result = invoke(db_url, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def run_json(db_url: str, *args: str) -> Any:
    return json.loads(run(db_url, *args, "--json"))


def refused(db_url: str, *args: str) -> str:
    """Run a command that must be refused: exit 1, one line on stderr, no traceback."""
    result = invoke(db_url, *args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ")
    return line


def item(db_url: str, path: str) -> WorkItem:
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        found = queue.get_work_item(path)
        queue.close()
    assert found is not None
    return found


def test_an_item_through_claim_complete_and_promotion(db_url: str) -> None:
    assert "ready blockers=0" in run(db_url, "work", "enqueue", "/q/a", "--priority", "1")
    out = run(db_url, "work", "enqueue", "/q/b", "--depends-on", "/q/a", "--status", "blocked")
    assert "blocked blockers=1" in out
    assert "status is ready, needs completed" in run(db_url, "work", "explain", "/q/b")
    claimed = run_json(db_url, "work", "claim", "--worker-id", "cli-1", "--lease", "1m")
    [mine] = claimed["items"]
    assert mine["virtual_path"] == "/q/a" and mine["worker_id"] == "cli-1"
    assert item(db_url, "/q/a")["status"] == "in_progress"
    done = run_json(
        db_url, "work", "complete", "/q/a", "--token", mine["lease_token"], "--result", '{"n": 3}'
    )
    assert done == {"path": "/q/a", "status": "completed", "promoted": ["/q/b"]}
    assert item(db_url, "/q/b")["status"] == "ready"
    with SQLAlchemyMetadataStore(db_url) as store:
        assert store.get_file_metadata("/q/a", "result") == {"n": 3}
    # The old token is fenced now.
    line = refused(db_url, "work", "complete", "/q/a", "--token", mine["lease_token"])
    assert "LeaseLostError" in line
    events = [e["event"] for e in run_json(db_url, "work", "history", "/q/b")["items"]]
    assert events == ["enqueued", "promoted"]


def test_fail_release_cancel_retry(db_url: str) -> None:
    run(db_url, "work", "enqueue", "/q/f", "--max-attempts", "2")
    [first] = run_json(db_url, "work", "claim")["items"]
    token = first["lease_token"]
    assert run_json(db_url, "work", "release", "/q/f", "--token", token)["status"] == "ready"
    assert item(db_url, "/q/f")["attempts"] == 0
    [again] = run_json(db_url, "work", "claim")["items"]
    out = run(db_url, "work", "fail", "/q/f", "--token", again["lease_token"], "--error", "disk")
    assert out == "/q/f ready\n"
    assert item(db_url, "/q/f")["last_error"] == "disk"
    run(db_url, "work", "cancel", "/q/f")
    cancelled = item(db_url, "/q/f")
    assert cancelled["status"] == "failed" and cancelled["last_error"] == "cancelled"
    run(db_url, "work", "retry", "/q/f")
    back = item(db_url, "/q/f")
    assert back["status"] == "ready" and back["attempts"] == 0
    [third] = run_json(db_url, "work", "claim")["items"]
    fail = run_json(
        db_url,
        "work",
        "fail",
        "/q/f",
        "--token",
        third["lease_token"],
        "--error",
        "x",
        "--no-retry",
    )
    assert fail == {"path": "/q/f", "status": "failed"}
    assert "not failed" not in refused(db_url, "work", "cancel", "/nope")


def test_refusals_exit_1(db_url: str) -> None:
    assert refused(db_url, "work", "claim") == "Error: nothing ready to claim"
    empty = invoke(db_url, "work", "claim", "--json")
    assert empty.exit_code == 1
    assert json.loads(empty.stdout)["error"] == "Refused"
    assert empty.stderr == ""
    assert "NexusFileNotFoundError" in refused(db_url, "work", "show", "/missing")
    run(db_url, "put", "/plain")
    line = refused(db_url, "work", "show", "/plain")
    assert line == "Error: WorkItemNotFoundError: '/plain' is not a work item"
    assert "WorkItemNotFoundError" in refused(db_url, "work", "retry", "/plain")
    assert "NexusFileNotFoundError" in refused(db_url, "get", "/missing")
    assert "NexusFileNotFoundError" in refused(db_url, "rm", "/missing")
    assert "no metadata key" in refused(db_url, "meta", "get", "/plain", "k")
    assert "no metadata key" in refused(db_url, "meta", "rm", "/plain", "k")
    assert "InvalidMetadataError" in refused(db_url, "meta", "set", "/plain", "priority", "high")
    assert "InvalidCursorError" in refused(db_url, "ls", "--after", "!!!")
    assert "InvalidPathError" in refused(db_url, "work", "enqueue", "relative")
    run(db_url, "work", "enqueue", "/q/x")
    # A wrong state is named as one: the item, its status, what the call needs.
    line = refused(db_url, "work", "retry", "/q/x")
    assert line == "Error: WorkItemStateError: '/q/x' is ready; retry_work needs failed"
    line = refused(db_url, "work", "release", "/q/x", "--token", "x")
    assert line == "Error: WorkItemStateError: '/q/x' is ready; release_work needs in_progress"
    assert "InvalidCursorError" in refused(db_url, "work", "ready", "--after", "not-a-cursor")
    [page_cursor] = [json.loads(run(db_url, "ls", "--limit", "1", "--json"))["next_cursor"]]
    assert "InvalidCursorError" in refused(db_url, "work", "ready", "--after", page_cursor)
    # Nothing was written by the refused calls.
    with SQLAlchemyMetadataStore(db_url) as store:
        assert [r.virtual_path for r in store.list()] == ["/plain", "/q/x"]
        assert store.get_all_file_metadata("/plain") == {}


def test_paths_and_metadata(db_url: str) -> None:
    record = run_json(db_url, "put", "/m/a.csv", "--size", "12", "--file-type", "text/csv")
    assert record["size_bytes"] == 12 and record["file_type"] == "text/csv"
    run(db_url, "put", "/m/b.csv")
    run(db_url, "meta", "set", "/m/a.csv", "owner", '{"team": "data"}')
    run(db_url, "meta", "set", "/m/a.csv", "note", "plain words")
    run(db_url, "meta", "set", "/m/a.csv", "code", "42", "--string")
    run(db_url, "meta", "set", "/m/a.csv", "priority", "3")
    with SQLAlchemyMetadataStore(db_url) as store:
        assert store.get_all_file_metadata("/m/a.csv") == {
            "code": "42",
            "note": "plain words",
            "owner": {"team": "data"},
            "priority": 3,
        }
    assert run(db_url, "meta", "get", "/m/a.csv", "note") == "plain words\n"
    assert run(db_url, "meta", "get", "/m/a.csv", "owner") == '{"team": "data"}\n'
    got = run_json(db_url, "get", record["path_id"])
    assert got["virtual_path"] == "/m/a.csv" and got["metadata"]["priority"] == 3
    assert run_json(db_url, "meta", "rm", "/m/a.csv", "note")["removed"] is True
    names = [i["virtual_path"] for i in run_json(db_url, "ls", "/m/")["items"]]
    assert names == ["/m/a.csv", "/m/b.csv"]
    run(db_url, "rm", "/m/b.csv")
    assert [i["virtual_path"] for i in run_json(db_url, "ls")["items"]] == ["/m/a.csv"]


def test_views_filter_by_tag_and_prefix(db_url: str) -> None:
    run(db_url, "work", "enqueue", "/v/etl/a", "--tag", "etl", "--priority", "2")
    run(db_url, "work", "enqueue", "/v/etl/b", "--tag", "etl", "--tag", "x", "--priority", "1")
    run(db_url, "work", "enqueue", "/v/ml/c", "--tag", "ml")
    run(db_url, "work", "enqueue", "/v/ml/d", "--status", "pending")

    def paths(*args: str) -> list[str]:
        return [i["virtual_path"] for i in run_json(db_url, "work", *args)["items"]]

    assert paths("ready") == ["/v/etl/b", "/v/etl/a", "/v/ml/c"]
    assert paths("ready", "--tag", "etl") == ["/v/etl/b", "/v/etl/a"]
    assert paths("ready", "--tag", "x", "--tag", "ml") == ["/v/etl/b", "/v/ml/c"]
    assert paths("ready", "--prefix", "/v/ml") == ["/v/ml/c"]
    assert paths("pending") == ["/v/ml/d"]
    assert paths("by-priority", "--prefix", "/v/ml/") == ["/v/ml/c", "/v/ml/d"]
    table = run(db_url, "work", "ready", "--limit", "1")
    assert "/v/etl/b" in table and "/v/etl/a" not in table and "more: --after " in table


def test_enqueue_options(db_url: str) -> None:
    first = run_json(db_url, "work", "enqueue", "/o/a", "--idempotency-key", "k1", "--delay", "1h")
    again = run_json(db_url, "work", "enqueue", "/o/other", "--idempotency-key", "k1")
    assert again["path_id"] == first["path_id"]
    assert first["run_after"] is not None
    assert run_json(db_url, "work", "ready")["items"] == []
    assert run_json(db_url, "work", "stats")["ready"] == 0


def test_enqueue_warns_of_each_missing_dependency(db_url: str) -> None:
    """A typo in --depends-on is kept (it blocks) but named on stderr, and in --json."""
    run(db_url, "work", "enqueue", "/m/there")
    args = ["work", "enqueue", "/m/c1", "--depends-on", "/m/c2", "--depends-on", "/m/there"]
    result = invoke(db_url, *args)
    assert result.exit_code == 0, result.output
    assert result.stdout == "/m/c1 ready blockers=2\n"
    [warning] = result.stderr.splitlines()
    assert warning.startswith("warning: /m/c1 depends on /m/c2, which does not exist")
    result = invoke(db_url, *args, "--json")
    document = json.loads(result.stdout)
    assert document["missing_dependencies"] == ["/m/c2"]
    assert "/m/c2" in result.stderr
    assert run_json(db_url, "work", "enqueue", "/m/there")["missing_dependencies"] == []


def test_enqueue_says_when_the_item_exists_unchanged(db_url: str) -> None:
    first = run_json(db_url, "work", "enqueue", "/u/a", "--priority", "1")
    assert first["created"] is True
    out = run(db_url, "work", "enqueue", "/u/a", "--priority", "7", "--tag", "x")
    assert out == "/u/a exists, unchanged: ready blockers=0\n"
    again = run_json(db_url, "work", "enqueue", "/u/a", "--priority", "7")
    assert (again["created"], again["priority"], again["tags"]) == (False, 1, None)
    by_key = run_json(db_url, "work", "enqueue", "/u/b", "--idempotency-key", "k")
    assert by_key["created"] is True
    reused = run_json(db_url, "work", "enqueue", "/u/other", "--idempotency-key", "k")
    assert (reused["virtual_path"], reused["created"]) == ("/u/b", False)


@pytest.mark.parametrize("count", [1, 3])
def test_stats_watch_redraws(db_url: str, count: int) -> None:
    run(db_url, "work", "enqueue", "/w/a")
    out = run(db_url, "work", "stats", "--watch", "--interval", "0.1", "--count", str(count))
    assert out.count("status counts") >= 1
    assert run_json(db_url, "work", "stats")["by_status"]["ready"] == 1


def test_reclaim(db_url: str) -> None:
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        queue.enqueue("/r/lease")
        assert len(queue.claim_ready_work("gone", lease_seconds=0.05)) == 1
        queue.close()
    time.sleep(0.15)
    assert run(db_url, "work", "reclaim") == "reclaimed 1\n"
    assert item(db_url, "/r/lease")["status"] == "ready"


def test_prune_deletes_what_finished_before_the_cutoff(db_url: str) -> None:
    run(db_url, "work", "enqueue", "/p/done")
    run(db_url, "work", "enqueue", "/p/dead", "--max-attempts", "1")
    run(db_url, "work", "enqueue", "/p/open", "--status", "pending")
    for path in ("/p/done", "/p/dead"):
        [claimed] = run_json(db_url, "work", "claim", "--prefix", path)["items"]
        token = claimed["lease_token"]
        if path == "/p/done":
            run(db_url, "work", "complete", path, "--token", token)
        else:
            run(db_url, "work", "fail", path, "--token", token, "--error", "x")
    time.sleep(0.05)
    assert run(db_url, "work", "prune", "--older-than", "1h") == "pruned 0\n"
    document = run_json(db_url, "work", "prune", "--older-than", "0s")
    assert document["pruned"] == 1 and document["statuses"] == ["completed"]
    assert document["cutoff"].endswith("+00:00")
    with SQLAlchemyMetadataStore(db_url) as store:
        assert [r.virtual_path for r in store.list("/p/")] == ["/p/dead", "/p/open"]
    both = run_json(
        db_url, "work", "prune", "--older-than", "0s", "--status", "completed", "--status", "failed"
    )
    assert both["pruned"] == 1
    with SQLAlchemyMetadataStore(db_url) as store:
        assert [r.virtual_path for r in store.list("/p/")] == ["/p/open"]
    assert invoke(db_url, "work", "prune").exit_code == 2  # --older-than is required
    assert invoke(db_url, "work", "prune", "--older-than", "1d", "--status", "ready").exit_code == 2
