"""The /imgedit/journal route (the settings panel's switch), driven with aiohttp's test server."""

from __future__ import annotations

import json

import pytest

aiohttp = pytest.importorskip("aiohttp")

from comfyui_imgedit.nodes import journal_routes  # noqa: E402
from comfyui_imgedit.nodes.core import journal as jr  # noqa: E402
from route_support import serve_routes  # noqa: E402


@pytest.fixture(autouse=True)
def _journal_in_the_user_dir(monkeypatch):
    monkeypatch.delenv("IMGEDIT_JOURNAL_DIR")  # as in ComfyUI: <user dir>/imgedit/journal


def run(user_dir, scenario):
    """Serve the route on a RouteTableDef (as ComfyUI does) and run ``scenario(client)``."""
    return serve_routes(journal_routes.register, user_dir, scenario)


async def post(client, payload, content_type="application/json"):
    data = json.dumps(payload) if not isinstance(payload, str) else payload
    resp = await client.post(journal_routes.ROUTE, data=data, headers={"Content-Type": content_type})
    return resp.status, await resp.json()


def test_get_then_turn_off_and_on(tmp_path):
    (tmp_path / "imgedit" / "journal" / ("a" * 64)).mkdir(parents=True)
    (tmp_path / "imgedit" / "journal" / ("a" * 64) / "record.json").write_bytes(b"x" * 1234)

    async def scenario(client):
        first = await (await client.get(journal_routes.ROUTE)).json()
        off = await post(client, {"enabled": False})
        on_disk = jr.open_journal(tmp_path)
        on = await post(client, {"enabled": True})
        return first, off, on_disk, on

    first, (status, off), on_disk, (_, on) = run(tmp_path, scenario)
    assert first == {"enabled": True, "panel": True, "env_off": False, "records": 1, "bytes": 1234,
                     "folder": str(tmp_path / "imgedit" / "journal")}
    assert status == 200 and off["enabled"] is False and on_disk is None
    assert on["enabled"] is True and jr.open_journal(tmp_path) is not None


def test_environment_overrides_the_panel(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGEDIT_JOURNAL", "0")

    async def scenario(client):
        return await (await client.get(journal_routes.ROUTE)).json()

    state = run(tmp_path, scenario)
    assert state["enabled"] is False and state["panel"] is True and state["env_off"] is True


@pytest.mark.parametrize("payload,content_type,status", [
    ({"enabled": "no"}, "application/json", 400),
    ({"enabled": True, "folder": "/tmp"}, "application/json", 400),
    ("{not json", "application/json", 400),
    ({"enabled": False}, "application/x-www-form-urlencoded", 415),
])
def test_bad_requests_change_nothing(tmp_path, payload, content_type, status):
    async def scenario(client):
        return await post(client, payload, content_type)

    got, body = run(tmp_path, scenario)
    assert got == status and body["error"]
    assert not (tmp_path / "imgedit" / "settings.json").exists()
