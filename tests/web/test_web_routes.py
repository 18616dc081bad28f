"""The dashboard's routes over a seeded real database (SQLite and PostgreSQL), through
httpx's ASGI transport: every page and its JSON twin agree with the store and queue API
(counts with ``work_stats()``, pages with the views, chains with ``explain_blocked``),
pages follow cursors and filters, user data is escaped, the app is read-only unless
``admin``, admin POSTs need the CSRF token and the same origin, basic auth guards every
route when configured, and the app works mounted under a prefix of a host app."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from webtools import XSS_ERROR, XSS_PATH, Client, Seeded

from nexus.errors import NexusConfigError
from nexus.web import create_app, data
from nexus.web.security import PASSWORD_ENV, USER_ENV
from nexus.work import WorkQueue


def _stat(html: str, name: str) -> str:
    found = re.search(rf'data-stat="{name}">([^<]*)<', html)
    assert found, name
    return found.group(1)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


# ------------------------------------------------------------------------------ reading


def _tiles(html: str) -> dict[str, str]:
    """{label: number} of the overview's tiles."""
    found = re.findall(
        r'<span class="label">([^<]*)</span>\s*<span class="value" data-stat="[^"]*">([^<]*)<',
        html,
    )
    return dict(found)


def test_overview_counts_are_work_stats(client: Client, seeded: Seeded) -> None:
    stats = seeded.queue.work_stats()
    document = client.get("/api/overview").json()
    assert document["by_status"] == stats["by_status"]
    assert document["ready_now"] == stats["ready_now"] == stats["ready"]
    assert document["waiting_on_dependencies"] == stats["waiting_on_dependencies"]
    assert document["blocked"] == stats["blocked"] == stats["waiting_on_dependencies"]
    assert document["dead_letters"] == 1
    assert document["events"]["claimed"] == 4
    assert document["oldest_ready_age_seconds"] > 0
    hours = document["throughput_hourly"]
    assert len(hours) == 24
    assert hours[-1]["completed"] == 1 and hours[-1]["failed"] == 1
    html = client.get("/").text
    for status, count in stats["by_status"].items():
        assert _stat(html, f"status_{status}") == str(count)
    assert _stat(html, "ready_now") == str(stats["ready_now"])
    assert _stat(html, "waiting_on_dependencies") == str(stats["waiting_on_dependencies"])


def test_overview_names_status_counts_and_views_apart(
    client: Client, seeded: Seeded, queue: WorkQueue
) -> None:
    """The tiles "ready now" and "waiting on dependencies" count the views' rows, the tiles
    "status ready", "status blocked"... the items per status; here they differ: an item of
    status ready waits on a dependency, one of status blocked waits on none, one of status
    ready is deferred (the retried one)."""
    queue.enqueue("/jobs/words/ready-but-waiting", depends_on="/jobs/dag/extract")
    queue.enqueue("/jobs/words/blocked-alone", status="blocked")
    store = queue.store
    ready_now = len(store.get_ready_work())
    waiting = len(store.get_blocked_work())
    by_status = queue.work_stats()["by_status"]
    assert (ready_now, waiting) != (by_status["ready"], by_status["blocked"])
    tiles = _tiles(client.get("/").text)
    assert tiles["ready now"] == str(ready_now)
    assert tiles["waiting on dependencies"] == str(waiting)
    for status, count in by_status.items():
        assert tiles[f"status {status.replace('_', ' ')}"] == str(count)
    assert "ready" not in tiles and "blocked" not in tiles  # no bare word means two things
    document = client.get("/api/overview").json()
    assert (document["ready_now"], document["waiting_on_dependencies"]) == (ready_now, waiting)


def test_ready_pages_follow_cursors_in_view_order(client: Client, seeded: Seeded) -> None:
    expected = [row["path_id"] for row in seeded.queue.store.get_ready_work()]
    seen: list[str] = []
    url = "/api/ready?limit=4"
    while True:
        page = client.get(url).json()
        assert page["returned"] == len(page["items"]) <= 4
        seen += [item["path_id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        url = f"/api/ready?limit=4&after={page['next_cursor']}"
    assert seen == expected
    html = client.get("/ready?limit=4").text
    assert "next page" in html


def test_ready_filters_by_tag_and_prefix(client: Client, seeded: Seeded) -> None:
    etl = client.get("/api/ready?tag=etl").json()["items"]
    assert etl and all(
        "etl" in (seeded.queue.get_work_item(i["path_id"]) or {}).get("tags", []) for i in etl
    )
    prefixed = client.get("/api/ready", params={"prefix": "/jobs/dag/"}).json()["items"]
    assert [i["virtual_path"] for i in prefixed] == ["/jobs/dag/extract"]
    # The prefix is literal: '_' and '%' are no wildcards.
    assert client.get("/api/ready", params={"prefix": "/jobs/_ag/"}).json()["items"] == []


def test_blocked_page_and_chain(client: Client, seeded: Seeded) -> None:
    blocked = client.get("/api/blocked").json()["items"]
    assert {b["virtual_path"]: b["blocker_count"] for b in blocked} == {
        "/jobs/dag/transform": 1,
        "/jobs/dag/load": 1,
    }
    load = seeded.ids["load"]
    document = client.get(f"/api/items/{load}").json()
    chain = document["blocking_chain"]
    assert chain == seeded.queue.explain_blocked(load)
    assert [(c["path"], c["depth"]) for c in chain] == [
        ("/jobs/dag/transform", 1),
        ("/jobs/dag/extract", 2),
    ]
    html = client.get("/blocked").text
    assert f'href="/items/{load}#chain"' in html
    assert "<h1>Waiting on dependencies</h1>" in html
    item_html = client.get(f"/items/{load}").text
    assert f'href="/items/{seeded.ids["extract"]}"' in item_html.split('id="chain"')[1]


def test_waiting_rows_show_status_and_how_many_dependencies(
    client: Client, seeded: Seeded, queue: WorkQueue
) -> None:
    queue.enqueue("/jobs/words/two", depends_on=["/jobs/dag/extract", "/jobs/words/nowhere"])
    html = client.get("/blocked").text
    rows = re.findall(
        r'<td class="path"><a [^>]*>(.*?)</a></td>\s*'
        r'<td data-col="status"><span class="badge status-\w+">(\w+)</span></td>\s*'
        r'<td data-col="blocker_count" data-count="(\d+)">([^<]*)</td>',
        html,
    )
    shown = {re.sub("<[^>]*>", "", path): (status, n, text) for path, status, n, text in rows}
    assert shown == {
        "/jobs/words/two": ("ready", "2", "2 dependencies"),
        "/jobs/dag/transform": ("blocked", "1", "1 dependency"),
        "/jobs/dag/load": ("blocked", "1", "1 dependency"),
    }
    item = client.get(f"/items/{queue.store.get_path_id('/jobs/words/two')}").text
    assert 'data-field="view">waiting on 2 dependencies<' in item
    ready = client.get(f"/items/{seeded.ids['extract']}").text
    assert 'data-field="view">ready now<' in ready


def _segments(*pieces: str) -> str:
    return "<wbr>".join(f'<span class="seg">{piece}</span>' for piece in pieces)


def test_paths_may_break_after_a_slash_only(client: Client, seeded: Seeded) -> None:
    html = client.get("/blocked").text
    assert f">{_segments('/', 'jobs/', 'dag/', 'load')}</a>" in html
    item = client.get(f"/items/{seeded.ids['xss']}").text
    xss = _segments("/", "jobs/", "&lt;script&gt;alert(1)&lt;/", "script&gt;")
    assert f"<code>{xss}</code>" in item


def test_in_progress_shows_worker_and_lease_left(client: Client, seeded: Seeded) -> None:
    rows = client.get("/api/in-progress").json()["items"]
    assert [(r["virtual_path"], r["worker_id"]) for r in rows] == [
        (seeded.paths["held"], "worker-a")
    ]
    assert 0 < rows[0]["lease_seconds_left"] <= 300
    assert rows[0]["lease_expires_at"] is not None
    assert "worker-a" in client.get("/in-progress").text


def test_failed_page_shows_last_error_and_pages(
    client: Client, seeded: Seeded, queue: WorkQueue
) -> None:
    for name in ("/jobs/x/1", "/jobs/x/2"):
        queue.enqueue(name, priority=-1)
        (held,) = queue.claim_ready_work("worker-b", path_prefix="/jobs/x/")
        queue.fail_work(held["virtual_path"], held["lease_token"], f"bad {name}", retry=False)
    queue.cancel_work(seeded.paths["pending"])
    first = client.get("/api/failed?limit=2").json()
    second = client.get(f"/api/failed?limit=2&after={first['next_cursor']}").json()
    assert second["next_cursor"] is None
    listed = first["items"] + second["items"]
    paths = [i["virtual_path"] for i in listed]
    assert set(paths) == {"/jobs/pending/one", "/jobs/x/2", "/jobs/x/1", seeded.paths["dead"]}
    # Most recently finished first (ties: the newer path_id first).
    keys = [(i["finished_at"], i["path_id"]) for i in listed]
    assert keys == sorted(keys, reverse=True)
    assert paths[-1] == seeded.paths["dead"]
    by_path = {i["virtual_path"]: i for i in first["items"] + second["items"]}
    assert by_path[seeded.paths["dead"]]["last_error"] == XSS_ERROR
    assert by_path["/jobs/pending/one"]["dead_letter"] is False
    assert by_path["/jobs/x/1"]["dead_letter"] is True


def test_workers_seen_recently(client: Client, seeded: Seeded) -> None:
    (worker,) = client.get("/api/workers").json()["items"]
    assert worker["worker_id"] == "worker-a"
    assert (worker["holding"], worker["claimed"], worker["completed"], worker["failed"]) == (
        1,
        4,
        1,
        2,
    )
    assert "worker-a" in client.get("/workers").text


def test_item_page_has_metadata_history_and_graph(client: Client, seeded: Seeded) -> None:
    seeded.queue.store.set_file_metadata(seeded.paths["transform"], "owner", "team-a")
    transform = seeded.ids["transform"]
    document = client.get(f"/api/items/{transform}").json()
    assert document["item"]["virtual_path"] == "/jobs/dag/transform"
    assert "lease_token" not in document["item"]
    assert document["metadata"]["owner"] == "team-a"
    assert [h["event"] for h in document["history"]] == ["enqueued"]
    graph = client.get(f"/api/items/{transform}/graph").json()
    paths = {n["id"]: n["path"] for n in graph["nodes"]}
    edges = {(paths[e["from"]], paths[e["to"]]) for e in graph["edges"]}
    assert ("/jobs/dag/extract", "/jobs/dag/transform") in edges
    assert ("/jobs/dag/transform", "/jobs/dag/load") in edges
    assert graph["root"] == transform
    html = client.get(f"/items/{transform}").text
    assert "team-a" in html and f"/api/items/{transform}/graph" in html


def test_graph_marks_missing_dependencies_and_truncates(queue: WorkQueue) -> None:
    queue.enqueue_many(
        [{"path": f"/g/{i}", "depends_on": f"/g/{i + 1}"} for i in range(5)]
        + [{"path": "/g/5", "depends_on": "/g/nowhere"}]
    )
    root = str(queue.store.get_path_id("/g/0"))
    whole = data.graph(queue, root)
    statuses = {n["path"]: n["status"] for n in whole["nodes"]}
    assert statuses["/g/nowhere"] == "missing" and statuses["/g/5"] == "ready"
    assert len(whole["edges"]) == 6 and not whole["truncated"]
    cut = data.graph(queue, root, max_nodes=3)
    assert [n["path"] for n in cut["nodes"]] == ["/g/0", "/g/1", "/g/2"]
    assert cut["truncated"] and len(cut["edges"]) == 2


def test_find_redirects_to_the_item(client: Client, seeded: Seeded) -> None:
    found = client.get("/find", params={"path": "/jobs/dag/load"})
    assert found.status_code == 303
    assert found.headers["location"] == f"/items/{seeded.ids['load']}"
    assert client.get("/find", params={"path": "/nowhere"}).status_code == 404


def test_user_data_is_escaped(client: Client, seeded: Seeded) -> None:
    pages = [
        client.get("/ready").text,
        client.get(f"/items/{seeded.ids['xss']}").text,
        client.get("/failed").text,
        client.get(f"/items/{seeded.ids['dead']}").text,
        client.get("/find", params={"path": "<script>x</script>"}).text,
    ]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "<script>x</script>" not in html
    listed = re.sub("<(wbr|/?span[^>]*)>", "", pages[0])
    assert "/jobs/&lt;script&gt;alert(1)&lt;/script&gt;" in listed
    assert "<title>/jobs/&lt;script&gt;alert(1)&lt;/script&gt; · nexus</title>" in pages[1]
    assert "&lt;b&gt;x&lt;/b&gt;" in pages[1]
    assert "&lt;img src=x onerror=alert(2)&gt; exploded" in pages[2]
    # JSON carries the text as it is (a client escapes where it renders).
    item = client.get(f"/api/items/{seeded.ids['xss']}").json()["item"]
    assert item["virtual_path"] == XSS_PATH


def test_bad_input_is_a_client_error(client: Client, seeded: Seeded) -> None:
    assert client.get("/api/ready?after=not-a-cursor").status_code == 400
    assert "error" in client.get("/api/ready?after=not-a-cursor").json()
    assert client.get("/api/failed?after=bm9wZQ").status_code == 400
    assert client.get("/ready?limit=0").status_code == 400
    assert client.get("/api/ready?limit=many").status_code == 400
    assert client.get("/api/items/not-an-id").status_code == 400
    missing = "01a00000-0000-7000-8000-000000000000"
    assert client.get(f"/api/items/{missing}").status_code == 404
    assert client.get(f"/items/{missing}").status_code == 404


def test_security_headers(client: Client) -> None:
    response = client.get("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_static_files_are_served(client: Client) -> None:
    htmx = client.get("/static/htmx.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text
    assert client.get("/static/app.js").status_code == 200


def test_favicon_is_served(client: Client) -> None:
    html = client.get("/").text
    found = re.search(r'<link rel="icon" href="([^"]+)"', html)
    assert found
    for url in (found.group(1), "/favicon.ico"):
        icon = client.get(url)
        assert icon.status_code == 200, url
        assert icon.headers["content-type"].startswith("image/svg+xml"), url
        assert icon.text.startswith("<svg")


def test_metrics_route_serves_prometheus_text(client: Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "nexus_work_oldest_ready_age_seconds" in response.text


# ------------------------------------------------------------------------------ admin


def test_read_only_by_default(client: Client, seeded: Seeded) -> None:
    html = client.get(f"/items/{seeded.ids['dead']}").text
    assert "csrf_token" not in html and '<button type="submit" class="retry"' not in html
    refused = client.post(f"/items/{seeded.ids['dead']}/retry", data={"csrf_token": "x"})
    assert refused.status_code == 403
    assert (seeded.queue.get_work_item(seeded.ids["dead"]) or {})["status"] == "failed"


def test_admin_retry_same_origin_with_token(admin_client: Client, seeded: Seeded) -> None:
    dead = seeded.ids["dead"]
    token = _csrf(admin_client.get(f"/items/{dead}").text)
    done = admin_client.post(
        f"/items/{dead}/retry",
        data={"csrf_token": token},
        headers={"Origin": "http://testserver"},
    )
    assert done.status_code == 303 and done.headers["location"] == f"/items/{dead}"
    item = seeded.queue.get_work_item(dead) or {}
    assert (item["status"], item["attempts"], item["last_error"]) == ("ready", 0, None)
    assert dead in [row["path_id"] for row in seeded.queue.store.get_ready_work()]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/page"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://testserver:8080"},
    ],
)
def test_admin_refuses_cross_origin_posts(
    admin_client: Client, seeded: Seeded, headers: dict[str, str]
) -> None:
    dead = seeded.ids["dead"]
    token = _csrf(admin_client.get(f"/items/{dead}").text)
    refused = admin_client.post(f"/items/{dead}/retry", data={"csrf_token": token}, headers=headers)
    assert refused.status_code == 403
    assert (seeded.queue.get_work_item(dead) or {})["status"] == "failed"


def test_admin_needs_the_csrf_token(admin_client: Client, seeded: Seeded) -> None:
    dead = seeded.ids["dead"]
    for form in ({}, {"csrf_token": "wrong"}):
        refused = admin_client.post(f"/items/{dead}/retry", data=form)
        assert refused.status_code == 403
    assert (seeded.queue.get_work_item(dead) or {})["status"] == "failed"
    token = _csrf(admin_client.get(f"/items/{dead}").text)
    # A script client (no Origin) with the token in a header is accepted.
    assert (
        admin_client.post(f"/items/{dead}/retry", headers={"X-CSRF-Token": token}).status_code
        == 303
    )


def test_admin_cancel_and_release(admin_client: Client, seeded: Seeded) -> None:
    token = _csrf(admin_client.get(f"/items/{seeded.ids['held']}").text)
    headers = {"X-CSRF-Token": token}
    released = admin_client.post(f"/items/{seeded.ids['held']}/release", headers=headers)
    assert released.status_code == 303
    held = seeded.queue.get_work_item(seeded.ids["held"]) or {}
    assert (held["status"], held["attempts"], held["lease_expires_at"]) == ("ready", 0, None)
    assert seeded.queue.get_work_history(seeded.ids["held"])[-1]["event"] == "released"
    cancelled = admin_client.post(f"/items/{seeded.ids['load']}/cancel", headers=headers)
    assert cancelled.status_code == 303
    load = seeded.queue.get_work_item(seeded.ids["load"]) or {}
    assert (load["status"], load["last_error"]) == ("failed", "cancelled")
    # Wrong states are conflicts, and change nothing.
    again = admin_client.post(f"/items/{seeded.ids['held']}/release", headers=headers)
    assert again.status_code == 409
    done = admin_client.post(f"/items/{seeded.ids['completed']}/cancel", headers=headers)
    assert done.status_code == 409
    assert (seeded.queue.get_work_item(seeded.ids["completed"]) or {})["status"] == "completed"


def test_refusals_are_404_when_nothing_is_there_and_409_in_the_wrong_state(
    admin_client: Client, seeded: Seeded
) -> None:
    seeded.queue.store.put("/plain/file")
    plain = str(seeded.queue.store.get_path_id("/plain/file"))
    missing = "01a00000-0000-7000-8000-000000000000"
    token = _csrf(admin_client.get(f"/items/{seeded.ids['dead']}").text)
    headers = {"X-CSRF-Token": token}
    for action in ("retry", "cancel", "release"):
        for path_id in (plain, missing):  # no work item, no path: not found
            refused = admin_client.post(f"/items/{path_id}/{action}", headers=headers)
            assert refused.status_code == 404, (action, path_id, refused.text)
    for path_id in (plain, missing):
        assert admin_client.get(f"/items/{path_id}").status_code == 404
        assert admin_client.get(f"/api/items/{path_id}").status_code == 404
        assert admin_client.get(f"/api/items/{path_id}/graph").status_code == 404
    # The item is there but its status does not allow the action: a conflict naming both.
    wrong = [
        ("retry", "extract", "ready", "retry_work needs failed"),
        ("cancel", "completed", "completed", "cancel_work needs"),
        ("release", "pending", "pending", "revoke_lease needs in_progress"),
    ]
    for action, role, status, needs in wrong:
        refused = admin_client.post(f"/items/{seeded.ids[role]}/{action}", headers=headers)
        assert refused.status_code == 409, (action, role, refused.text)
        assert f"is {status}; {needs}" in refused.text
        assert (seeded.queue.get_work_item(seeded.ids[role]) or {})["status"] == status


def test_admin_buttons_show_only_with_admin(
    admin_client: Client, client: Client, seeded: Seeded
) -> None:
    assert 'data-action="retry"' in admin_client.get(f"/items/{seeded.ids['dead']}").text
    assert 'data-action="release"' in admin_client.get(f"/items/{seeded.ids['held']}").text
    assert 'data-action="retry"' in admin_client.get("/failed").text
    assert 'data-action="retry"' not in client.get("/failed").text


# ------------------------------------------------------------------------------ auth, mount


def test_basic_auth_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., Client], seeded: Seeded
) -> None:
    monkeypatch.setenv(USER_ENV, "ops")
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    guarded = make_client()
    refused = guarded.get("/")
    assert refused.status_code == 401 and "Basic" in refused.headers["www-authenticate"]
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/api/overview", auth=("ops", "wrong")).status_code == 401
    assert guarded.get("/api/overview", auth=("ops", "s3cret")).status_code == 200
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(NexusConfigError):
        make_client()


def test_mounted_under_a_prefix(queue: WorkQueue, seeded: Seeded) -> None:
    dashboard = create_app(queue.store)
    host = Client(Starlette(routes=[Mount("/ops/queue", app=dashboard)]))
    try:
        html = host.get("/ops/queue/").text
        assert 'href="/ops/queue/ready"' in html and 'src="/ops/queue/static/app.js"' in html
        assert host.get("/ops/queue/api/overview").json()["by_status"]["ready"] >= 1
        assert host.get("/ops/queue/static/htmx.min.js").status_code == 200
        found = host.get("/ops/queue/find", params={"path": "/jobs/dag/load"})
        assert found.headers["location"] == f"/ops/queue/items/{seeded.ids['load']}"
    finally:
        dashboard.state.nexus.close()
