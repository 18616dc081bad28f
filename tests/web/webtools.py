"""Helpers of the dashboard tests: the seeded queue, a synchronous client over the ASGI app
(httpx's ASGI transport), and the app served by uvicorn in a thread on a free port."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette

from nexus.web.server import DashboardServer
from nexus.work import WorkQueue

XSS_PATH = "/jobs/<script>alert(1)</script>"
XSS_ERROR = "<img src=x onerror=alert(2)> exploded"


@dataclass
class Seeded:
    """What :func:`seed` made, by role."""

    queue: WorkQueue
    paths: dict[str, str]  # role -> path
    ids: dict[str, str]  # role -> path_id


def seed(queue: WorkQueue) -> Seeded:
    """A small queue with every state: 12 ready (tags etl/ml, priorities 0-4), a blocked
    chain extract <- transform <- load, a pending item, one item whose path is markup, one
    in progress (worker-a), one completed, one dead letter (error text with markup) and one
    retried (ready, deferred)."""
    queue.enqueue_many(
        [
            {
                "path": f"/jobs/ready/{i:03d}",
                "priority": i % 5,
                "tags": ["etl" if i % 2 else "ml"],
            }
            for i in range(12)
        ]
    )
    queue.enqueue_many(
        [
            {"path": "/jobs/dag/extract", "priority": 9},
            {"path": "/jobs/dag/transform", "depends_on": "/jobs/dag/extract", "status": "blocked"},
            {"path": "/jobs/dag/load", "depends_on": ["/jobs/dag/transform"], "status": "blocked"},
            {"path": XSS_PATH, "tags": ["<b>x</b>"], "priority": 9},
            {"path": "/jobs/pending/one", "status": "pending"},
        ]
    )
    claimed = queue.claim_ready_work("worker-a", limit=4, tags=["ml"])
    done, dead, retried, held = claimed
    queue.complete_work(done["virtual_path"], done["lease_token"])
    queue.fail_work(dead["virtual_path"], dead["lease_token"], XSS_ERROR, retry=False)
    queue.fail_work(retried["virtual_path"], retried["lease_token"], "transient")
    paths = {
        "completed": done["virtual_path"],
        "dead": dead["virtual_path"],
        "retried": retried["virtual_path"],
        "held": held["virtual_path"],
        "extract": "/jobs/dag/extract",
        "transform": "/jobs/dag/transform",
        "load": "/jobs/dag/load",
        "xss": XSS_PATH,
        "pending": "/jobs/pending/one",
    }
    ids = {role: str(queue.store.get_path_id(path)) for role, path in paths.items()}
    return Seeded(queue, paths, ids)


class Client:
    """A synchronous httpx client over the ASGI app (no server, no lifespan)."""

    def __init__(self, app: Starlette, base_url: str = "http://testserver") -> None:
        self.app = app
        self.base_url = base_url

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url) as client:
                return await client.request(method, url, **kwargs)

        return anyio.run(send)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """The app served by uvicorn in a thread on a free 127.0.0.1 port."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = DashboardServer(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> float:
        """Stop the server; returns the seconds the shutdown took."""
        began = time.monotonic()
        self.server.should_exit = True
        self.thread.join(timeout=20)
        return time.monotonic() - began


def etl_graph(queue: WorkQueue) -> str:
    """The issue's /etl pipeline: extract <- clean <- train <- report, and report also waits
    on clean (a long edge past train) and on /etl/missing.json (no such path). Returns the
    path whose item page draws it all."""
    queue.enqueue_many(
        [
            {"path": "/etl/extract.json"},
            {"path": "/etl/clean.json", "depends_on": "/etl/extract.json", "status": "blocked"},
            {"path": "/etl/train.json", "depends_on": "/etl/clean.json", "status": "blocked"},
            {
                "path": "/etl/report.json",
                "depends_on": ["/etl/train.json", "/etl/clean.json", "/etl/missing.json"],
                "status": "blocked",
            },
        ]
    )
    return "/etl/report.json"


def wide_graph(queue: WorkQueue) -> str:
    """Fan-in and fan-out with edges skipping one, two and three layers: a base, four items
    on it, three on those (and on the base), a hub waiting on the three, on two of the four,
    on the base and on a missing path, and five items waiting on the hub. Returns the hub."""
    base = "/wide/base.json"
    mids = [f"/wide/mid/{i}.json" for i in range(4)]
    tops = [f"/wide/top/{i}.json" for i in range(3)]
    hub = "/wide/hub.json"
    queue.enqueue_many(
        [
            {"path": base},
            *({"path": m, "depends_on": base, "status": "blocked"} for m in mids),
            {"path": tops[0], "depends_on": [mids[0], mids[1]], "status": "blocked"},
            {"path": tops[1], "depends_on": [mids[1], mids[2], base], "status": "blocked"},
            {"path": tops[2], "depends_on": [mids[3]], "status": "blocked"},
            {
                "path": hub,
                "depends_on": [*tops, mids[0], mids[3], base, "/wide/missing.json"],
                "status": "blocked",
            },
            *(
                {"path": f"/wide/out/{i}.json", "depends_on": hub, "status": "blocked"}
                for i in range(5)
            ),
        ]
    )
    return hub
