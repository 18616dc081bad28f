"""The dashboard's Starlette application: pages, JSON endpoints, live events, metrics.

Routes (docs/web.md has the full list with the JSON keys): each page ``/x`` has its JSON twin
``/api/x`` built by the same function of :mod:`nexus.web.data`. Pages are server-rendered
Jinja2 (autoescaped: paths and errors are user data) with a live region that htmx refreshes
when ``/events`` (server-sent events) says the queue changed, or every 30 seconds without.
Admin actions (retry, cancel, release) are POST routes that exist only with ``admin=True``
and pass :mod:`nexus.web.security`'s origin and CSRF checks.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import markupsafe
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from nexus.errors import (
    InvalidArgumentError,
    InvalidPathError,
    LeaseLostError,
    NexusDatabaseError,
    NexusError,
    NexusFileNotFoundError,
    WorkItemNotFoundError,
    WorkItemStateError,
)
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.validation import is_path_id
from nexus.web import data
from nexus.web.live import ChangeFeed, TooManyStreams
from nexus.web.metrics import render_metrics
from nexus.web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    GuardMiddleware,
    credentials_from_env,
    cross_origin,
    token_matches,
)
from nexus.work import WorkQueue

HERE = Path(__file__).parent
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class Dashboard:
    """The state behind one app: the store, its queue, the live feed, the CSRF token."""

    def __init__(self, store: SQLAlchemyMetadataStore, *, admin: bool) -> None:
        self.store = store
        self.queue = WorkQueue(store)
        self.admin = admin
        self.csrf_token = secrets.token_urlsafe(32)
        self.feed = ChangeFeed(self.queue)
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True
        )
        env.globals["query"] = _query
        env.filters["when"] = _when
        env.filters["duration"] = _duration
        env.filters["path"] = _path
        self.templates = Jinja2Templates(env=env)

    def close(self) -> None:
        """End the live streams and the queue's waiter (the store stays open: it is the
        caller's)."""
        self.feed.close()
        self.queue.close()

    # ------------------------------------------------------------------ helpers

    def render(
        self, request: Request, template: str, *, status_code: int = 200, **context: Any
    ) -> Response:
        context.update(
            admin=self.admin,
            csrf_token=self.csrf_token,
            csrf_field=CSRF_FIELD,
            root=request.scope.get("root_path", ""),
        )
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)

    def error(self, request: Request, status_code: int, message: str) -> Response:
        return self.render(
            request, "error.html", status_code=status_code, error=message, title="Error"
        )


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    """12s, 4m 03s, 2h 10m, 3d 4h; negative (an expired lease) as "expired"."""
    if seconds is None:
        return ""
    if seconds < 0:
        return "expired"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def _path(path: str | None) -> markupsafe.Markup:
    """A path, escaped, that a line may break after a ``/`` and nowhere else: each segment
    with its ``/`` is a span that does not wrap (CSS ``.seg``; a hyphen or a dot would
    otherwise be a break), with a ``<wbr>`` between them."""
    pieces = [piece for piece in re.split(r"(?<=/)", path or "") if piece]
    seg = markupsafe.Markup('<span class="seg">{}</span>')
    return markupsafe.Markup("<wbr>").join(seg.format(piece) for piece in pieces)


def _query(base: dict[str, Any], **changes: Any) -> str:
    """A query string: ``base`` with ``changes`` (None removes a key)."""
    merged = {**base, **changes}
    pairs: list[tuple[str, str]] = []
    for key, value in merged.items():
        if value is None or value == "" or value == []:
            continue
        for one in value if isinstance(value, list) else [value]:
            pairs.append((key, str(one)))
    return "?" + urlencode(pairs) if pairs else ""


def _filters(request: Request) -> dict[str, Any]:
    params = request.query_params
    tags = [t for raw in params.getlist("tag") for t in raw.split(",") if t.strip()]
    limit_text = params.get("limit")
    limit = data.PAGE_SIZE
    if limit_text:
        try:
            limit = int(limit_text)
        except ValueError as exc:
            raise InvalidArgumentError("limit", limit_text, "must be a whole number") from exc
        if not 1 <= limit <= data.MAX_PAGE:
            raise InvalidArgumentError("limit", limit, f"must be 1 to {data.MAX_PAGE}")
    return {
        "limit": limit,
        "tags": [t.strip() for t in tags] or None,
        "prefix": params.get("prefix") or None,
        "after": params.get("after") or None,
    }


def _status_of(exc: NexusError) -> int:
    """The HTTP status of a refusal: no such path or work item 404; an item in the wrong
    state for the action (or a lease that is gone) 409; bad input 400."""
    if isinstance(exc, (WorkItemNotFoundError, NexusFileNotFoundError)):
        return 404
    if isinstance(exc, (WorkItemStateError, LeaseLostError)):
        return 409
    if isinstance(exc, (InvalidArgumentError, InvalidPathError)):
        return 400
    if isinstance(exc, NexusDatabaseError):
        return 503
    return 500


def _page_route(
    dash: Dashboard,
    path: str,
    template: str,
    build: Callable[[Request], dict[str, Any]],
    *,
    name: str,
    kind: str = "",
) -> list[BaseRoute]:
    """A page and its JSON twin (``/api`` + path) from one builder; ``kind`` tells a list
    template which list it draws."""

    def page(request: Request) -> Response:
        try:
            document = build(request)
        except NexusError as exc:
            return dash.error(request, _status_of(exc), str(exc))
        return dash.render(
            request, template, page=document, title=name, kind=kind, params=_raw(request)
        )

    def api(request: Request) -> Response:
        try:
            document = build(request)
        except NexusError as exc:
            return JSONResponse({"error": str(exc)}, status_code=_status_of(exc))
        return JSONResponse(data.jsonable(document))

    api_path = "/api" + (path if path != "/" else "/overview")
    return [
        Route(path, page, methods=["GET"], name=name),
        Route(api_path, api, methods=["GET"], name=f"api_{name}"),
    ]


def _raw(request: Request) -> dict[str, Any]:
    params = request.query_params
    return {
        "tag": params.getlist("tag"),
        "prefix": params.get("prefix"),
        "limit": params.get("limit"),
    }


def _routes(dash: Dashboard) -> list[BaseRoute]:
    store, queue = dash.store, dash.queue

    def views(view: str, extra: tuple[str, ...] = ()) -> Callable[[Request], dict[str, Any]]:
        def build(request: Request) -> dict[str, Any]:
            return data.view_page(store, view, extra=extra, **_filters(request))

        return build

    def in_progress(request: Request) -> dict[str, Any]:
        return data.in_progress_page(store, queue, **_filters(request))

    def failed(request: Request) -> dict[str, Any]:
        filters = _filters(request)
        return data.failed_page(queue, limit=filters["limit"], after=filters["after"])

    def path_id_of(request: Request) -> str:
        path_id = str(request.path_params["path_id"])
        if not is_path_id(path_id):
            raise InvalidArgumentError("path_id", path_id, "is not a path_id")
        return path_id

    def item(request: Request) -> dict[str, Any]:
        return data.item(store, queue, path_id_of(request))

    def item_graph(request: Request) -> Response:
        try:
            document = data.graph(queue, path_id_of(request))
        except NexusError as exc:
            return JSONResponse({"error": str(exc)}, status_code=_status_of(exc))
        return JSONResponse(data.jsonable(document))

    def find(request: Request) -> Response:
        """``/find?path=...``: the item page of a path (a form on every page)."""
        path = request.query_params.get("path", "")
        try:
            found = queue.get_work_item(path) if path else None
        except NexusError:
            found = None
        if found is None:
            return dash.error(request, 404, f"no work item at {path!r}")
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/items/{found['path_id']}", status_code=303)

    async def events(request: Request) -> Response:
        try:
            stream = dash.feed.stream()
        except TooManyStreams as exc:
            return PlainTextResponse(str(exc), status_code=503, headers={"Retry-After": "5"})
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def metrics(request: Request) -> Response:
        try:
            text = render_metrics(queue)
        except NexusError as exc:
            return PlainTextResponse(str(exc), status_code=_status_of(exc))
        return Response(text, media_type=PROMETHEUS_TEXT)

    def favicon(request: Request) -> Response:
        """The SVG icon, also where browsers look without a ``<link rel=icon>``."""
        return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")

    routes: list[BaseRoute] = [
        *_page_route(dash, "/", "overview.html", lambda r: data.overview(queue), name="Overview"),
        *_page_route(
            dash, "/ready", "list.html", views("ready_work"), name="Ready now", kind="ready"
        ),
        *_page_route(
            dash, "/pending", "list.html", views("pending_work"), name="Pending", kind="pending"
        ),
        *_page_route(
            dash,
            "/blocked",
            "list.html",
            views("blocked_work", ("blocker_count",)),
            name="Waiting on dependencies",
            kind="blocked",
        ),
        *_page_route(
            dash, "/in-progress", "list.html", in_progress, name="In progress", kind="in_progress"
        ),
        *_page_route(dash, "/failed", "list.html", failed, name="Failed", kind="failed"),
        *_page_route(
            dash, "/workers", "workers.html", lambda r: data.workers(queue), name="Workers"
        ),
        *_page_route(dash, "/items/{path_id}", "item.html", item, name="Item"),
        Route("/api/items/{path_id}/graph", item_graph, methods=["GET"]),
        Route("/find", find, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    actions: dict[str, Callable[[str], None]] = {
        "retry": queue.retry_work,
        "cancel": queue.cancel_work,
        "release": queue.revoke_lease,
    }
    for action, run in actions.items():
        routes.append(
            Route(
                f"/items/{{path_id}}/{action}",
                _action(dash, run),
                methods=["POST"],
                name=f"action_{action}",
            )
        )
    return routes


def _action(dash: Dashboard, run: Callable[[str], None]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        if not dash.admin:
            return PlainTextResponse("read-only dashboard (start it with admin=True)", 403)
        if cross_origin(request):
            return PlainTextResponse("cross-origin request refused", 403)
        given = request.headers.get(CSRF_HEADER)
        if given is None:
            form = await request.form()
            field = form.get(CSRF_FIELD)
            given = field if isinstance(field, str) else None
        if not token_matches(given, dash.csrf_token):
            return PlainTextResponse("missing or wrong CSRF token", 403)
        path_id = str(request.path_params["path_id"])
        if not is_path_id(path_id):
            return PlainTextResponse("not a path_id", 400)
        try:
            await run_in_threadpool(run, path_id)
        except NexusError as exc:
            return PlainTextResponse(str(exc), status_code=_status_of(exc))
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/items/{path_id}", status_code=303)

    return endpoint


def build_app(store: SQLAlchemyMetadataStore, *, admin: bool = False) -> Starlette:
    credentials = credentials_from_env()
    dash = Dashboard(store, admin=admin)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            dash.close()

    app = Starlette(routes=_routes(dash), lifespan=lifespan)
    app.state.nexus = dash
    app.add_middleware(GuardMiddleware, credentials=credentials)
    return app
