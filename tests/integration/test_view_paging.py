"""Paged and filtered work views on SQLite and PostgreSQL.

Intent: walking any of the five views page by page (``page_*_work`` / ``get_*_work(after=)``)
with a small limit returns exactly the rows of the unpaged view, in its order, with no
duplicate and no gap: also across ties in priority, created_at and started_at, NULL
priorities and NULL started_at (which sort last), and while items change state between
pages. ``tags`` keeps items having any of the tags; ``path_prefix`` is a literal prefix
(``%`` and ``_`` match only themselves). Cursors are opaque and checked: garbage, a cursor
of another view or one with values of the wrong types raise InvalidCursorError before any
query. Each store sees only its tenant's rows. A hypothesis property compares paged walks
with a Python model of the view order.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexus.errors import InvalidArgumentError, InvalidCursorError, InvalidPathError, NexusError
from nexus.storage import WorkPage, metadata_store
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue

VIEWS = ["ready", "pending", "blocked", "by_priority", "in_progress"]
Row = dict[str, Any]


def getter(store: SQLAlchemyMetadataStore, view: str) -> Callable[..., list[Row]]:
    name = "get_work_by_priority" if view == "by_priority" else f"get_{view}_work"
    return getattr(store, name)  # type: ignore[no-any-return]


def pager(store: SQLAlchemyMetadataStore, view: str) -> Callable[..., WorkPage]:
    name = "page_work_by_priority" if view == "by_priority" else f"page_{view}_work"
    return getattr(store, name)  # type: ignore[no-any-return]


def walk(store: SQLAlchemyMetadataStore, view: str, limit: int, **filters: Any) -> list[Row]:
    """Every page of the view, concatenated; fails on a page longer than the limit."""
    rows: list[Row] = []
    cursor = None
    for _ in range(10_000):
        items, cursor = pager(store, view)(limit, after=cursor, **filters)
        assert len(items) <= limit
        rows += items
        if cursor is None:
            return rows
        assert items, "a next cursor after an empty page"
    raise AssertionError("the walk did not end")


def walk_from(
    store: SQLAlchemyMetadataStore, view: str, limit: int, cursor: str | None
) -> list[Row]:
    rows: list[Row] = []
    while cursor is not None:
        items, cursor = pager(store, view)(limit, after=cursor)
        rows += items
    return rows


def walk_with_get(store: SQLAlchemyMetadataStore, view: str, limit: int) -> list[Row]:
    """The same walk through get_*_work(limit, after=cursor-of-the-last-row)."""
    first = pager(store, view)(limit)
    rows, cursor = list(first.items), first.next_cursor
    while cursor is not None:
        more = getter(store, view)(limit, after=cursor)
        assert more
        rows += more
        # The cursor after the page just read (only page_* hands cursors out).
        cursor = pager(store, view)(limit, after=cursor).next_cursor
    return rows


def ids(rows: list[Row]) -> list[str]:
    return [row["path_id"] for row in rows]


def seed(queue: WorkQueue, root: str = "/p") -> None:
    """Ties everywhere: each batch shares one created_at, priorities repeat, a third have
    none; blocked items have 1-3 missing blockers; in-progress items share start times."""
    pool = ["red", "green", "blue"]
    priorities = [None, 1, 1, 0, None, 2, 1, None, 0, 5]
    for batch in range(3):
        items: list[dict[str, Any]] = []
        for i, priority in enumerate(priorities):
            for status in ("ready", "pending", "in_progress", "completed"):
                items.append(
                    {
                        "path": f"{root}/{status}/b{batch}-{i}",
                        "status": status,
                        "priority": priority,
                        "tags": [pool[(i + batch) % 3]] if i % 4 else None,
                    }
                )
            items.append(
                {
                    "path": f"{root}/blocked/b{batch}-{i}",
                    "status": ("blocked", "ready", "pending")[i % 3],
                    "priority": priority,
                    "depends_on": [f"/missing/{j}" for j in range(i % 3 + 1)],
                    "tags": [pool[i % 3], "multi"],
                }
            )
        queue.enqueue_many([{k: v for k, v in it.items() if v is not None} for it in items])
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows: list[tuple[str, str, Any]] = []
    for batch in range(3):
        for i in range(len(priorities)):
            if i % 5 != 4:  # every fifth has no started_at
                moment = start + timedelta(seconds=i % 3)
                rows.append((f"{root}/in_progress/b{batch}-{i}", "started_at", moment))
                rows.append((f"{root}/in_progress/b{batch}-{i}", "worker_id", f"w{i}"))
    queue.store.set_file_metadata_many(rows)


@pytest.fixture(params=["through_filter_index", "on_order_walk"])
def filter_strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """On PostgreSQL filters selecting few paths are read through their own index, others are
    checked on the walk in the view's order: every filter test runs both ways (on SQLite,
    which always walks, twice the same way)."""
    if request.param == "on_order_walk":
        monkeypatch.setattr(metadata_store, "FEW_FILTERED", 0)
    return str(request.param)


@pytest.fixture
def seeded(queue: WorkQueue) -> SQLAlchemyMetadataStore:
    seed(queue)
    return queue.store


@pytest.mark.parametrize("view", VIEWS)
def test_paging_returns_the_unpaged_view_exactly(
    seeded: SQLAlchemyMetadataStore, view: str
) -> None:
    full = getter(seeded, view)()
    assert len(full) >= 20
    assert len(set(ids(full))) == len(full)
    for limit in (1, 2, 3, 7, len(full) - 1, len(full), len(full) + 1):
        assert walk(seeded, view, limit) == full, limit
    assert walk_with_get(seeded, view, 4) == full


def test_ties_and_nulls_are_in_the_dataset(seeded: SQLAlchemyMetadataStore) -> None:
    """The walk above crossed ties and NULL keys (else it would prove little)."""
    ready = seeded.get_ready_work()
    assert sum(row["priority"] is None for row in ready) >= 9
    assert len({(row["priority"], row["created_at"]) for row in ready}) < len(ready)
    started = [row["started_at"] for row in seeded.get_in_progress_work()]
    assert started[-1] is None and len(set(started)) < len(started)
    assert {row["blocker_count"] for row in seeded.get_blocked_work()} == {1, 2, 3}


@pytest.mark.parametrize("view", VIEWS)
def test_last_page_has_no_cursor_and_an_empty_view_has_one_empty_page(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, view: str
) -> None:
    assert pager(store, view)() == WorkPage([], None)
    seed(queue)
    full = getter(store, view)()
    page = pager(store, view)(len(full))
    assert page.items == full and page.next_cursor is None
    items, cursor = pager(store, view)(len(full) - 1)
    assert cursor is not None and items == full[:-1]
    assert pager(store, view)(5, after=cursor) == WorkPage(full[-1:], None)


def test_get_with_limit_and_after_continues_where_the_page_ended(
    seeded: SQLAlchemyMetadataStore,
) -> None:
    full = seeded.get_ready_work()
    _items, cursor = seeded.page_ready_work(5)
    assert seeded.get_ready_work(after=cursor) == full[5:]
    assert seeded.get_ready_work(3, after=cursor) == full[5:8]
    assert seeded.get_ready_work(0, after=cursor) == []


def test_state_changes_between_pages_give_no_duplicates_and_lose_no_unchanged_row(
    seeded: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    before = seeded.get_ready_work()
    seen: list[Row] = []
    changed: set[str] = set()
    items, cursor = seeded.page_ready_work(4)
    seen += items
    while cursor is not None:
        # Claim and complete the head of the queue; enqueue new items before and after.
        for claimed in queue.claim_ready_work("w", limit=2, lease_seconds=60):
            changed.add(claimed["path_id"])
            assert claimed["lease_token"] is not None
            queue.complete_work(claimed["virtual_path"], claimed["lease_token"])
        new = queue.enqueue_many(
            [{"path": f"/new/{uuid.uuid4().hex}", "status": "ready", "priority": p} for p in (0, 3)]
        )
        changed.update(item["path_id"] for item in new)
        items, cursor = seeded.page_ready_work(4, after=cursor)
        seen += items
    assert len(set(ids(seen))) == len(seen)
    unchanged = [row["path_id"] for row in before if row["path_id"] not in changed]
    assert set(unchanged) <= set(ids(seen))
    # What was seen is in the view's order (for rows that kept their keys).
    assert [i for i in ids(seen) if i in unchanged] == unchanged


def test_rows_entering_the_view_after_the_cursor_are_returned_and_before_it_not(
    seeded: SQLAlchemyMetadataStore, queue: WorkQueue
) -> None:
    first, cursor = seeded.page_ready_work(3)
    queue.enqueue_many(
        [
            {"path": "/late/first", "status": "ready", "priority": -100},  # before the cursor
            {"path": "/late/last", "status": "ready"},  # no priority, newest: after it
        ]
    )
    rest = walk_from(seeded, "ready", 3, cursor)
    paths = [row["virtual_path"] for row in first + rest]
    assert "/late/first" not in paths
    assert paths[-1] == "/late/last"
    assert len(set(paths)) == len(paths)


def test_a_cursor_holds_no_filter(seeded: SQLAlchemyMetadataStore, filter_strategy: str) -> None:
    full = seeded.get_work_by_priority()
    _items, cursor = seeded.page_work_by_priority(10)
    tagged = seeded.get_work_by_priority(tags=["red"])
    assert seeded.get_work_by_priority(tags=["red"], after=cursor) == [
        row for row in tagged if row in full[10:]
    ]


def test_tags_filter_keeps_items_having_any_of_the_tags(
    seeded: SQLAlchemyMetadataStore, filter_strategy: str
) -> None:
    for view in VIEWS:
        full = getter(seeded, view)()
        tags_of = {path: seeded.get_file_metadata(path, "tags") or [] for path in ids(full)}
        for wanted in (["red"], ["red", "blue"], ("multi",), {"nope"}, ["green", "nope"]):
            expected = [row for row in full if set(tags_of[row["path_id"]]) & set(wanted)]
            assert getter(seeded, view)(tags=wanted) == expected, (view, wanted)
            assert walk(seeded, view, 2, tags=wanted) == expected, (view, wanted)
        assert getter(seeded, view)(tags=[]) == full  # no tag given: no tag filter
        assert getter(seeded, view)(tags=None) == full


def test_path_prefix_is_literal(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, filter_strategy: str
) -> None:
    paths = ["/a%b/1", "/axb/1", "/a_b/1", "/ayb/1", "/a%b2", "/A%b/1", "/a%/x", "/é\U0010ffff/z"]
    queue.enqueue_many([{"path": p, "status": "ready"} for p in paths])

    def under(prefix: str) -> list[str]:
        return [row["virtual_path"] for row in store.get_ready_work(path_prefix=prefix)]

    assert under("/a%b") == ["/a%b/1", "/a%b2"]
    assert under("/a%b/") == ["/a%b/1"]
    assert under("/a_b") == ["/a_b/1"]
    assert under("/a%") == ["/a%b/1", "/a%b2", "/a%/x"]
    assert under("/") == paths
    assert under("/a%b/1") == ["/a%b/1"]
    assert under("/zzz") == []
    assert under("/é") == under("/é\U0010ffff") == ["/é\U0010ffff/z"]
    assert under("/\U0010ffff") == []
    pages = walk(store, "ready", 1, path_prefix="/a%")
    assert [row["virtual_path"] for row in pages] == ["/a%b/1", "/a%b2", "/a%/x"]


@pytest.mark.parametrize("bad", ["relative", "/a/../b", "/a\x00", 5, ""])
def test_bad_path_prefix_is_refused(store: SQLAlchemyMetadataStore, bad: Any) -> None:
    with pytest.raises(InvalidPathError):
        store.get_ready_work(path_prefix=bad)
    with pytest.raises(InvalidPathError):
        store.page_blocked_work(path_prefix=bad)


@pytest.mark.parametrize("bad", ["red", b"red", [1], ["a\x00"], 5])
def test_bad_tags_are_refused(store: SQLAlchemyMetadataStore, bad: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        store.get_pending_work(tags=bad)


@pytest.mark.parametrize("bad", [0, -1, None, True, "10"])
def test_a_page_needs_a_positive_limit(store: SQLAlchemyMetadataStore, bad: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        store.page_ready_work(bad)


def forge(tag: Any, values: Any) -> str:
    text = json.dumps([tag, values])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_invalid_cursors_raise_invalid_cursor_error(seeded: SQLAlchemyMetadataStore) -> None:
    _items, ready_cursor = seeded.page_ready_work(2)
    _items, blocked_cursor = seeded.page_blocked_work(2)
    assert ready_cursor is not None and blocked_cursor is not None
    some_id = seeded.get_ready_work(1)[0]["path_id"]
    moment = "2026-01-01T00:00:00+00:00"
    bad_cursors: list[Any] = [
        "",
        "!!!not base64!!!",
        "bm90IGpzb24",  # base64 of "not json"
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        forge("ready", [1, moment]),  # too few values
        forge("ready", ["1", moment, some_id]),  # priority of the wrong type
        forge("ready", [True, moment, some_id]),
        forge("ready", [2**63, moment, some_id]),
        forge("ready", [1, "yesterday", some_id]),
        forge("ready", [1, "2026-01-01T00:00:00", some_id]),  # no time zone
        forge("ready", [1, moment, "x'; DROP TABLE work_items; --"]),
        forge("ready", [1, None, some_id]),
        forge("ready", {"k": 1}),
        forge(["ready"], [1, moment, some_id]),
        json.dumps(["ready", [1, moment, some_id]]),  # not encoded
        blocked_cursor,  # another view's
        ready_cursor[:-3],
        7,
        b"bytes",
    ]
    for bad in bad_cursors:
        with pytest.raises(InvalidCursorError) as raised:
            seeded.get_ready_work(after=bad)
        assert raised.value.cursor is bad or raised.value.cursor == bad
        assert raised.value.value == raised.value.cursor
        assert isinstance(raised.value, NexusError) and isinstance(raised.value, ValueError)
        with pytest.raises(InvalidCursorError):
            seeded.page_ready_work(after=bad)
    with pytest.raises(InvalidCursorError):
        seeded.get_in_progress_work(after=blocked_cursor)
    # A well-formed forged cursor is a position like any other.
    assert seeded.get_ready_work(after=forge("ready", [None, moment, some_id])) is not None


def test_cursors_of_every_view_are_refused_by_every_other(
    seeded: SQLAlchemyMetadataStore,
) -> None:
    cursors = {view: pager(seeded, view)(1).next_cursor for view in VIEWS}
    for view, cursor in cursors.items():
        assert cursor is not None
        for other in VIEWS:
            if other != view:
                with pytest.raises(InvalidCursorError):
                    pager(seeded, other)(1, after=cursor)


def test_tenants_page_their_own_rows_only(
    make_queue: Callable[..., WorkQueue], filter_strategy: str
) -> None:
    mine, theirs = make_queue(tenant_id="mine"), make_queue(tenant_id="theirs")
    seed(mine)
    seed(theirs)
    for view in VIEWS:
        own = getter(mine.store, view)()
        assert {row["tenant_id"] for row in own} == {"mine"}
        assert walk(mine.store, view, 3) == own
        # A cursor from another tenant's walk is a position; it yields this tenant's rows.
        cursor = pager(theirs.store, view)(3).next_cursor
        rows = getter(mine.store, view)(after=cursor)
        assert {row["tenant_id"] for row in rows} <= {"mine"}
        assert walk(theirs.store, view, 5, tags=["red"]) == getter(theirs.store, view)(tags=["red"])


# ---------------------------------------------------------------------------- property

PROPERTY_SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ITEM = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["ready", "pending", "in_progress", "blocked"]),
        "priority": st.one_of(st.none(), st.integers(-2, 2), st.just(2**63 - 1)),
        "tags": st.one_of(st.none(), st.lists(st.sampled_from("abc"), max_size=2)),
        "blockers": st.integers(0, 2),
        "started": st.one_of(st.none(), st.integers(0, 2)),
        "batch": st.integers(0, 2),
    }
)


def model_order(view: str, row: Row) -> tuple[Any, ...]:
    """The documented order of each view, in Python (NULL priorities / started_at last)."""
    by_priority = (row["priority"] is None, row["priority"] or 0, row["created_at"])
    if view == "blocked":
        return (-row["blocker_count"], *by_priority, row["path_id"])
    if view == "in_progress":
        started = row["started_at"]
        return (started is None, -(started.timestamp() if started else 0), row["path_id"])
    return (*by_priority, row["path_id"])


@PROPERTY_SETTINGS
@given(
    items=st.lists(ITEM, min_size=0, max_size=25),
    limit=st.integers(1, 6),
    tags=st.one_of(st.none(), st.lists(st.sampled_from("abc"), min_size=1, max_size=2)),
)
def test_paged_walks_match_a_python_model(
    queue: WorkQueue,
    filter_strategy: str,
    items: list[dict[str, Any]],
    limit: int,
    tags: list[str] | None,
) -> None:
    root = f"/{uuid.uuid4().hex}"  # each example in its own namespace, selected by prefix
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for batch in range(3):
        specs = []
        for n, item in enumerate(items):
            if item["batch"] != batch:
                continue
            spec: dict[str, Any] = {"path": f"{root}/{n}", "status": item["status"]}
            if item["priority"] is not None:
                spec["priority"] = item["priority"]
            if item["tags"] is not None:
                spec["tags"] = item["tags"]
            if item["blockers"] or item["status"] == "blocked":
                spec["depends_on"] = [f"/nowhere/{k}" for k in range(item["blockers"] or 1)]
            specs.append(spec)
        queue.enqueue_many(specs)
    started = [
        (f"{root}/{n}", "started_at", start + timedelta(seconds=item["started"]))
        for n, item in enumerate(items)
        if item["status"] == "in_progress" and item["started"] is not None
    ]
    if started:
        queue.store.set_file_metadata_many(started)
    store = queue.store
    for view in VIEWS:
        every = getter(store, view)(path_prefix=root + "/")
        if tags is not None:
            every = [
                row
                for row in every
                if set(store.get_file_metadata(row["path_id"], "tags") or []) & set(tags)
            ]
        expected = sorted(every, key=lambda row, v=view: model_order(v, row))
        assert getter(store, view)(path_prefix=root + "/", tags=tags) == expected
        assert walk(store, view, limit, path_prefix=root + "/", tags=tags) == expected


def test_tag_filter_follows_tag_changes_by_api_and_plain_sql(
    store: SQLAlchemyMetadataStore, queue: WorkQueue, raw_engine: Any
) -> None:
    """Reading tagged rows through the tag index (PostgreSQL's GIN) agrees with the
    row-by-row check after every kind of change (on SQLite both are the row-by-row check)."""
    queue.enqueue_many(
        [
            {"path": f"/t/{n}", "status": "ready", "tags": ["x"] if n % 2 else ["y"]}
            for n in range(6)
        ]
    )

    def both_ways(tag: str) -> list[str]:
        indexed = [row["virtual_path"] for row in store.get_ready_work(tags=[tag])]
        saved = metadata_store.FEW_FILTERED
        metadata_store.FEW_FILTERED = 0
        try:
            walked = [row["virtual_path"] for row in store.get_ready_work(tags=[tag])]
        finally:
            metadata_store.FEW_FILTERED = saved
        assert indexed == walked
        return indexed

    assert both_ways("x") == ["/t/1", "/t/3", "/t/5"]
    store.set_file_metadata("/t/1", "tags", ["y", "z"])
    store.delete_file_metadata("/t/3", "tags")
    store.delete("/t/5")
    assert both_ways("x") == []
    assert both_ways("z") == ["/t/1"]
    with raw_engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE file_metadata SET value = '[\"x\"]' WHERE key = 'tags'"
                " AND path_id = (SELECT path_id FROM file_paths WHERE virtual_path = '/t/0')"
            )
        )
    assert both_ways("x") == ["/t/0"]
    store.delete_file_metadata("/t/0", "status")  # no longer a work item
    assert both_ways("x") == []
    store.put("/t/5")  # back, empty
    queue.enqueue_many([{"path": "/t/5", "status": "ready", "tags": ["x", "x"]}])
    assert both_ways("x") == ["/t/5"]


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize(
    "options",
    [
        "-c enable_nestloop=off -c enable_mergejoin=off",
        "-c enable_nestloop=off -c enable_hashjoin=off",
    ],
    ids=["hash_joins", "merge_joins"],
)
def test_filtered_pages_keep_the_view_order_whatever_join_postgresql_plans(
    backend: str, db_url: str, filter_strategy: str, options: str
) -> None:
    """With nested loops off, PostgreSQL hashes (or, with hash joins off too, merges by
    path_id) any join it can: a filter planned as a join above the view would come back in
    hash or path_id order, not the view's."""
    hashing = SQLAlchemyMetadataStore(db_url, engine_options={"connect_args": {"options": options}})
    queue = WorkQueue(hashing)
    try:
        seed(queue)
        for view in VIEWS:
            full = getter(hashing, view)()
            for filters in ({"tags": ["red", "multi"]}, {"path_prefix": f"/p/{view}/b1"}):
                kept = getter(hashing, view)(**filters)
                assert kept == [row for row in full if row in kept], (view, filters)
                assert walk(hashing, view, 2, **filters) == kept, (view, filters)
    finally:
        queue.close()
        hashing.close()
