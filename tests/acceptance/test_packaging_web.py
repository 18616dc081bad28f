"""The wheel carries the dashboard: its templates, static files (the vendored htmx and dagre
with their licences) and modules, and the dashboard renders from the unpacked wheel in an unrelated
directory; without the ``web`` extra's packages, ``nexus.web`` says which extra to install
instead of failing on an import."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_packaging import PYTHON, wheel

from nexus.errors import NexusConfigError

__all__ = ["wheel"]  # the module-scoped fixture that builds the wheel

RENDER = """
import sys, tempfile, anyio, httpx, nexus.web
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
store = SQLAlchemyMetadataStore(tempfile.mkdtemp() + "/m.db")
app = nexus.web.create_app(store)

async def main():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        page = await client.get("/")
        script = await client.get("/static/htmx.min.js")
        print(nexus.web.__file__, page.status_code, script.status_code, "Overview" in page.text)

anyio.run(main)
app.state.nexus.close()
store.close()
"""


@pytest.mark.slow
def test_wheel_contains_the_dashboard(wheel: Path, tmp_path: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "nexus/web/app.py",
        "nexus/web/metrics.py",
        "nexus/web/templates/base.html",
        "nexus/web/templates/item.html",
        "nexus/web/static/htmx.min.js",
        "nexus/web/static/htmx.LICENSE.txt",
        "nexus/web/static/dagre.min.js",
        "nexus/web/static/dagre.LICENSE.txt",
        "nexus/web/static/app.js",
        "nexus/web/static/app.css",
    ):
        assert name in names, name
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_DATABASE_URL"}
    env["PYTHONPATH"] = str(unpacked)
    result = subprocess.run(
        [str(PYTHON), "-c", RENDER],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    where, page, script, titled = result.stdout.split()
    assert Path(where).resolve().is_relative_to(unpacked.resolve())
    assert (page, script, titled) == ("200", "200", "True")


def test_without_the_web_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import nexus.web
    from nexus.storage.metadata_store import SQLAlchemyMetadataStore

    for name in [m for m in sys.modules if m.startswith(("starlette", "nexus.web."))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "starlette", None)  # import starlette -> ImportError
    with (
        SQLAlchemyMetadataStore(tmp_path / "m.db") as store,
        pytest.raises(NexusConfigError, match=r"nexus-workqueue\[web\]"),
    ):
        nexus.web.create_app(store)
    with pytest.raises(NexusConfigError, match=r"nexus-workqueue\[web\]"):
        nexus.web.serve(str(tmp_path / "m.db"))
