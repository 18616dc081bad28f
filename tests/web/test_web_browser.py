"""The dashboard end to end in headless Chromium (Debian's ``chromium`` package driven by
Python Playwright; no browser download), the app served by uvicorn in a thread over a seeded
database (both dialects): the overview shows the numbers of ``work_stats()`` and follows a
change made elsewhere without a reload (server-sent events); the blocked list leads to the
item's blocking chain and its dependency graph drawn from the JSON endpoint; with admin,
pressing retry on a failed item brings it back to ready; markup in a path stays text.

Screenshots go to the test's temporary directory, or to ``$NEXUS_WEB_SCREENSHOT_DIR`` when
set (``NEXUS_WEB_SCREENSHOT_DIR=docs/img`` refreshes the ones docs/web.md shows). Under
CI=true a missing Chromium or Playwright fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from webtools import XSS_PATH, LiveServer, Seeded, etl_graph, wide_graph

from nexus.web import create_app, data
from nexus.work import WorkQueue

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    expect = sync_playwright = None

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if sync_playwright is None:
        _unavailable("the browser test needs Playwright (pip install playwright)")
    if not os.path.exists(CHROMIUM):
        _unavailable(f"the browser test needs Debian's chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield opened
    context.close()
    assert errors == [], errors  # no script error, no CSP violation


def _shots(tmp_path: Path, backend: str) -> Callable[[Any, str], None]:
    target = os.environ.get("NEXUS_WEB_SCREENSHOT_DIR")
    directory = Path(target) if target and backend == "sqlite" else tmp_path

    def shoot(page: Any, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(directory / f"{name}.png"), full_page=True)

    return shoot


def _stat(page: Any, name: str) -> str:
    text: str = page.locator(f'[data-stat="{name}"]').inner_text()
    return text


def test_dashboard_in_chromium(
    page: Any,
    seeded: Seeded,
    make_queue: Callable[..., WorkQueue],
    serve_app: Callable[..., LiveServer],
    backend: str,
    tmp_path: Path,
) -> None:
    shoot = _shots(tmp_path, backend)
    queue = seeded.queue
    server = serve_app(create_app(queue.store, admin=True))
    page.set_default_timeout(10_000)

    # The overview: the numbers of work_stats().
    page.goto(server.url + "/")
    stats = queue.work_stats()
    for status, count in stats["by_status"].items():
        assert _stat(page, f"status_{status}") == str(count)
    assert _stat(page, "ready_now") == str(stats["ready_now"])
    assert _stat(page, "waiting_on_dependencies") == str(stats["waiting_on_dependencies"])
    page.wait_for_selector("#live-status.on")  # the event stream is open
    shoot(page, "dashboard")

    # A change made by another connection shows up without a reload.
    make_queue().enqueue("/jobs/live/new")
    expected = str(stats["by_status"]["ready"] + 1)
    expect(page.locator('[data-stat="status_ready"]')).to_have_text(expected)

    # Waiting on dependencies -> the item's blocking chain and its graph.
    page.click("nav >> text=Waiting on dependencies")
    page.wait_for_url(re.compile(r"/blocked$"))
    row = page.locator("tr", has_text="/jobs/dag/load")
    assert row.locator('[data-col="status"]').inner_text() == "blocked"
    assert row.locator('[data-col="blocker_count"]').inner_text() == "1 dependency"
    row.locator("text=blocking chain").click()
    page.wait_for_url(re.compile(rf"/items/{seeded.ids['load']}#chain$"))
    chain = page.locator("ol.chain li").all_inner_texts()
    assert [c.split(" — ")[0] for c in chain] == ["/jobs/dag/transform", "/jobs/dag/extract"]
    page.wait_for_selector('#graph[data-drawn="true"] svg')
    drawn = page.locator("#graph g.node").evaluate_all("ns => ns.map(n => n.dataset.path)")
    assert set(drawn) >= {"/jobs/dag/load", "/jobs/dag/transform", "/jobs/dag/extract"}
    shoot(page, "item")
    page.locator("ol.chain a", has_text="/jobs/dag/extract").click()
    page.wait_for_url(re.compile(rf"/items/{seeded.ids['extract']}$"))

    # Admin: retry a dead letter from the failed list; it is ready again.
    page.click("nav >> text=Failed")
    failed_row = page.locator("tr", has_text=seeded.paths["dead"])
    assert "onerror" in failed_row.inner_text()  # the markup is shown as text
    failed_row.locator('button[data-action="retry"]').click()
    page.wait_for_url(re.compile(rf"/items/{seeded.ids['dead']}$"))
    assert page.locator('[data-field="status"]').inner_text() == "ready"
    assert (queue.get_work_item(seeded.ids["dead"]) or {})["status"] == "ready"
    page.click("nav >> text=Ready now")
    assert page.locator("td.path", has_text=seeded.paths["dead"]).count() == 1

    # A path made of markup is text, not markup.
    page.goto(server.url + f"/items/{seeded.ids['xss']}")
    assert page.locator("p.path-title code").inner_text() == XSS_PATH
    assert page.locator("main script").count() == 0


# Every node box and every edge of the drawn graph in the SVG's coordinates: boxes from their
# rect's bounding box through its transform, edges sampled every pixel along the path.
GEOMETRY = """svg => {
  const at = (el, x, y) => {
    const m = el.getCTM(), s = svg.getCTM().inverse().multiply(m);
    return { x: s.a * x + s.c * y + s.e, y: s.b * x + s.d * y + s.f };
  };
  const boxes = [...svg.querySelectorAll("g.node")].map(g => {
    const rect = g.querySelector("rect"), b = rect.getBBox();
    const p = at(rect, b.x, b.y), q = at(rect, b.x + b.width, b.y + b.height);
    return { path: g.dataset.path, x1: p.x, y1: p.y, x2: q.x, y2: q.y };
  });
  const edges = [...svg.querySelectorAll("path.edge")].map(e => {
    const length = e.getTotalLength(), points = [];
    for (let d = 0; d < length; d += 1) {
      const p = e.getPointAtLength(d);
      points.push(at(e, p.x, p.y));
    }
    const end = e.getPointAtLength(length);
    points.push(at(e, end.x, end.y));
    return { from: e.dataset.from, to: e.dataset.to, points: points };
  });
  return { boxes, edges };
}"""

Point = dict[str, float]


def _inside(point: Point, box: dict[str, Any], margin: float) -> bool:
    return (
        box["x1"] + margin < point["x"] < box["x2"] - margin
        and box["y1"] + margin < point["y"] < box["y2"] - margin
    )


def _on_border(point: Point, box: dict[str, Any]) -> bool:
    near_x = box["x1"] - 1 <= point["x"] <= box["x2"] + 1
    near_y = box["y1"] - 1 <= point["y"] <= box["y2"] + 1
    return near_x and near_y and not _inside(point, box, 1)


def _shared_fraction(edge: list[Point], other: list[Point]) -> float:
    """The share of ``edge``'s points within a pixel of ``other``."""
    close = sum(
        1
        for p in edge
        if any(abs(p["x"] - q["x"]) <= 1 and abs(p["y"] - q["y"]) <= 1 for q in other)
    )
    return close / len(edge)


@pytest.mark.parametrize("build", [etl_graph, wide_graph], ids=["etl", "wide"])
def test_graph_edges_pass_through_no_box(
    page: Any,
    queue: WorkQueue,
    serve_app: Callable[..., LiveServer],
    backend: str,
    tmp_path: Path,
    build: Callable[[WorkQueue], str],
) -> None:
    """Every edge of an item's dependency graph is drawn from its dependency's box to its
    dependent's, through no box at all (not even its own two: it touches their borders), and
    no two edges run along each other indistinguishably."""
    root = build(queue)
    root_id = str(queue.store.get_path_id(root))
    server = serve_app(create_app(queue.store))
    page.set_default_timeout(10_000)
    page.goto(server.url + f"/items/{root_id}")
    page.wait_for_selector('#graph[data-drawn="true"] svg')
    drawn = page.locator("#graph svg").evaluate(GEOMETRY)
    page.locator("#graph").screenshot(path=str(tmp_path / f"{build.__name__}.png"))

    expected = data.graph(queue, root_id)
    path_of = {n["id"]: n["path"] for n in expected["nodes"]}
    wanted = sorted((path_of[e["from"]], path_of[e["to"]]) for e in expected["edges"])
    assert sorted((e["from"], e["to"]) for e in drawn["edges"]) == wanted
    assert sorted(b["path"] for b in drawn["boxes"]) == sorted(path_of.values())
    boxes = {b["path"]: b for b in drawn["boxes"]}
    for edge in drawn["edges"]:
        name = f"{edge['from']} -> {edge['to']}"
        points = edge["points"]
        assert _on_border(points[0], boxes[edge["from"]]), name
        assert _on_border(points[-1], boxes[edge["to"]]), name
        for box in drawn["boxes"]:
            through = [p for p in points if _inside(p, box, 1)]
            assert not through, f"{name} passes through {box['path']} at {through[0]}"
    edges = drawn["edges"]
    for i, edge in enumerate(edges):
        for other in edges[i + 1 :]:
            shared = _shared_fraction(edge["points"], other["points"])
            assert shared < 0.25, (edge["from"], edge["to"], other["from"], other["to"], shared)


# Where each line of an element's text starts: the text before each character that begins a
# new line box (read per character with Range.getClientRects).
LINE_BREAKS = """el => {
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  const chars = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.data.length; i++) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const rect = range.getClientRects()[0];
      if (rect) { chars.push({ c: node.data[i], top: Math.round(rect.top) }); }
    }
  }
  const text = chars.map(x => x.c).join("");
  const breaks = [];
  for (let i = 1; i < chars.length; i++) {
    if (chars[i].top > chars[i - 1].top) { breaks.push(text.slice(0, i)); }
  }
  return { text: text, breaks: breaks };
}"""

LONG_PATH = "/warehouse/exports/customer-segments/quarterly-rollups/region-north-east/" + (
    "2026-q4/customer-lifetime-value-by-cohort.parquet"
)


def test_long_paths_wrap_after_a_slash(
    page: Any, queue: WorkQueue, serve_app: Callable[..., LiveServer], backend: str
) -> None:
    """In a narrow window a long path wraps onto several lines, and every line but the
    first starts right after a '/': on the list of items waiting on dependencies, in the
    item page's title and in its blocking chain."""
    queue.enqueue("/warehouse/exports/source-of-everything.parquet", status="pending")
    queue.enqueue(LONG_PATH, depends_on="/warehouse/exports/source-of-everything.parquet")
    queue.enqueue("/warehouse/report.json", depends_on=LONG_PATH, status="blocked")
    server = serve_app(create_app(queue.store))
    page.set_viewport_size({"width": 420, "height": 800})
    page.set_default_timeout(10_000)
    long_id = queue.store.get_path_id(LONG_PATH)
    report_id = queue.store.get_path_id("/warehouse/report.json")
    places = [
        ("/blocked", "td.path a"),
        (f"/items/{long_id}", "p.path-title code"),
        (f"/items/{report_id}", "ol.chain li a"),
    ]
    for url, selector in places:
        page.goto(server.url + url)
        shown = page.locator(selector, has_text="lifetime")
        laid = shown.evaluate(LINE_BREAKS)
        assert laid["text"] == LONG_PATH, url
        assert len(laid["breaks"]) >= 2, (url, laid)  # it did wrap
        for before in laid["breaks"]:
            assert before.endswith("/"), (url, before)
