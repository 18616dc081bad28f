"""``nexus web`` and ``nexus metrics`` on SQLite and PostgreSQL: ``web`` serves the dashboard
of the database given (a real server in a real process answers on the port, and stops on
SIGINT), with its options passed through; ``metrics`` prints Prometheus text that parses and
whose item counts equal ``work_stats()``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest
from click.testing import CliRunner

from nexus.cli.main import cli
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue

parser = pytest.importorskip("prometheus_client.parser")


def test_web_passes_its_options_to_serve(monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    import nexus.web

    calls: list[dict[str, Any]] = []

    def serve(
        db: str,
        host: str = "",
        port: int = 0,
        admin: bool = False,
        tenant: str = "",
        create: bool = True,
    ) -> None:
        calls.append(
            {"db": db, "host": host, "port": port, "admin": admin, "tenant": tenant}
            | {"create": create}
        )

    monkeypatch.setattr(nexus.web, "serve", serve)
    runner = CliRunner()
    assert runner.invoke(cli, ["web", "--db", db_url]).exit_code == 0
    result = runner.invoke(
        cli,
        ["web", "--db", db_url, "--host", "0.0.0.0", "--port", "9", "--admin", "--tenant", "t1"],
    )
    assert result.exit_code == 0, result.output
    assert calls == [
        # The dashboard only reads (and --admin changes existing items): it creates nothing.
        {"db": db_url, "host": "127.0.0.1", "port": 8765, "admin": False, "tenant": "default",
         "create": False},
        {"db": db_url, "host": "0.0.0.0", "port": 9, "admin": True, "tenant": "t1",
         "create": False},
    ]
    assert runner.invoke(cli, ["web", "--db", db_url, "--port", "0"]).exit_code == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_web_serves_its_tenant_until_sigint(db_url: str) -> None:
    for tenant, paths in (("default", ["/d/a", "/d/b"]), ("t1", ["/t/a"])):
        with SQLAlchemyMetadataStore(db_url, tenant_id=tenant) as store:
            queue = WorkQueue(store)
            queue.enqueue_many([{"path": path} for path in paths])
            queue.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_DATABASE_URL"}
    command = ["web", "--db", db_url, "--port", str(port), "--tenant", "t1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus.cli.main", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    assert r.status == 200
                    text = r.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stderr
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    items = {s.labels["status"]: s.value for s in families["nexus_work_items"].samples}
    assert items.get("ready") == 1.0  # t1's one item, not the default tenant's two


def test_metrics_parse_and_match_work_stats(db_url: str) -> None:
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        queue.enqueue_many(
            [{"path": "/m/a"}, {"path": "/m/b", "status": "pending"}, {"path": "/m/c"}]
        )
        [item] = queue.claim_ready_work("w")
        queue.complete_work(item["virtual_path"], str(item["lease_token"]))
        stats = queue.work_stats()
        queue.close()
    result = CliRunner().invoke(cli, ["metrics", "--db", db_url])
    assert result.exit_code == 0, result.output
    families = {f.name: f for f in parser.text_string_to_metric_families(result.stdout)}
    items = {s.labels["status"]: s.value for s in families["nexus_work_items"].samples}
    assert items == {status: float(n) for status, n in stats["by_status"].items()}
