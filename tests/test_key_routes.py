"""The /imgedit/keys route, driven with aiohttp's test server (no ComfyUI needed)."""

from __future__ import annotations

import json
import os
import stat

import pytest

aiohttp = pytest.importorskip("aiohttp")

from comfyui_imgedit.nodes import key_routes  # noqa: E402
from comfyui_imgedit.nodes.core import keys as keystore  # noqa: E402
from comfyui_imgedit.nodes.core.services import SERVICES
from route_support import serve_routes  # noqa: E402

KEY = "dz-TEST-0123456789abcdef"


def run(user_dir, scenario):
    """Serve the route on a RouteTableDef (as ComfyUI does) and run ``scenario(client)``."""
    return serve_routes(key_routes.register, user_dir, scenario)


async def post(client, payload, **kw):
    data = json.dumps(payload) if isinstance(payload, (dict, list)) else payload
    headers = kw.pop("headers", {"Content-Type": "application/json"})
    resp = await client.post(key_routes.ROUTE, data=data, headers=headers, **kw)
    return resp.status, await resp.text()


def test_get_lists_services_without_keys(tmp_path):
    async def scenario(client):
        resp = await client.get(key_routes.ROUTE)
        return resp.status, await resp.json(), resp.headers.get("Cache-Control")

    status, body, cache = run(tmp_path, scenario)
    assert status == 200 and cache == "no-store"
    assert set(body) == {"keys", "services"}
    assert body["keys"] == {"dezgo": False, "modelslab": False, "imagepipeline": False}


def test_get_gives_the_table_of_services_for_the_web_panel(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSLAB_API_KEY", "env-key-not-real-1234")

    async def scenario(client):
        return await (await client.get(key_routes.ROUTE)).json()

    rows = {row["service"]: row for row in run(tmp_path, scenario)["services"]}
    assert list(rows) == list(SERVICES)
    assert rows["sdapi"] == {"service": "sdapi", "label": "Stable Diffusion API", "node_id": "ImgEditSDAPI",
                             "key_owner": "modelslab", "key_env": "MODELSLAB_API_KEY", "url_env": "IMGEDIT_SDAPI_URL",
                             "default_url": "https://stablediffusionapi.com", "has_key": True}
    assert rows["modelslab"]["has_key"] is True and rows["dezgo"]["has_key"] is False
    assert "env-key-not-real-1234" not in json.dumps(rows)


def test_set_then_get_then_clear(tmp_path):
    async def scenario(client):
        out = [await post(client, {"service": "dezgo", "key": KEY})]
        out.append((await client.get(key_routes.ROUTE)).status)
        out.append(await (await client.get(key_routes.ROUTE)).json())
        out.append(keystore.resolve_key("dezgo", tmp_path))
        out.append(await post(client, {"service": "dezgo", "clear": True}))
        out.append(await (await client.get(key_routes.ROUTE)).json())
        return out

    (status, text), get_status, after_set, resolved, (clear_status, clear_text), after_clear = run(tmp_path, scenario)
    assert status == 200 and KEY not in text
    body = json.loads(text)
    assert body["ok"] and body["action"] == "saved" and body["keys"]["dezgo"] is True
    assert get_status == 200 and after_set["keys"]["dezgo"] is True and KEY not in json.dumps(after_set)
    assert resolved == KEY
    path = keystore.key_file(tmp_path)
    assert json.loads(path.read_text()) == {}  # cleared
    assert clear_status == 200 and json.loads(clear_text)["action"] == "cleared"
    assert after_clear["keys"]["dezgo"] is False
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_empty_key_clears_and_sdapi_is_modelslab(tmp_path):
    async def scenario(client):
        first = await post(client, {"service": "sdapi", "key": KEY})
        stored = keystore.key_file(tmp_path).read_text()
        second = await post(client, {"service": "modelslab", "key": ""})
        return first, stored, second

    (s1, t1), stored, (s2, t2) = run(tmp_path, scenario)
    assert s1 == 200 and json.loads(t1)["service"] == "modelslab"
    assert json.loads(stored) == {"modelslab": KEY}
    assert s2 == 200 and json.loads(t2)["keys"]["modelslab"] is False


@pytest.mark.parametrize("payload, status", [
    ({"service": "openai", "key": KEY}, 400),
    ({"service": "", "key": KEY}, 400),
    ({"service": ["dezgo"], "key": KEY}, 400),
    ({"service": "dezgo", "key": 12345678}, 400),
    ({"service": "dezgo", "key": "short"}, 400),
    ({"service": "dezgo", "key": "has space in it 123"}, 400),
    ({"service": "dezgo", "key": "line\nbreak-123456"}, 400),
    ({"service": "dezgo", "key": 'quote"12345678'}, 400),
    ({"service": "dezgo", "key": "x" * 257}, 400),
    ({"service": "dezgo", "key": KEY, "clear": True}, 400),
    ({"service": "dezgo", "clear": "yes"}, 400),
    ({"service": "dezgo", "key": KEY, "extra": 1}, 400),
    ({"service": "dezgo", KEY: True}, 400),
    (["dezgo", KEY], 400),
    ("not json {", 400),
])
def test_rejects_bad_requests_without_echoing(tmp_path, payload, status):
    async def scenario(client):
        return await post(client, payload)

    got, text = run(tmp_path, scenario)
    assert got == status, text
    assert "error" in json.loads(text)
    for secret in (KEY, "has space in it", "line\nbreak", 'quote"1234', "x" * 40):
        assert secret not in text
    assert not keystore.key_file(tmp_path).exists()


def test_rejects_large_bodies_with_413(tmp_path):
    big = json.dumps({"service": "dezgo", "key": "k" * (key_routes.MAX_BODY + 10)})

    async def scenario(client):
        plain = await post(client, big)

        async def chunks():  # no Content-Length: the route must still stop reading
            for _ in range(8):
                yield b"x" * 1024

        chunked = await post(client, chunks())
        return plain, chunked

    (s1, t1), (s2, _) = run(tmp_path, scenario)
    assert s1 == 413 and "k" * 50 not in t1
    assert s2 == 413
    assert not keystore.key_file(tmp_path).exists()


def test_requires_json_content_type(tmp_path):
    async def scenario(client):
        return await post(client, json.dumps({"service": "dezgo", "key": KEY}),
                          headers={"Content-Type": "text/plain"})

    status, text = run(tmp_path, scenario)
    assert status == 415 and KEY not in text
    assert not keystore.key_file(tmp_path).exists()


def test_env_key_counts_but_is_never_returned(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEPIPELINE_API_KEY", "ip-ENV-abcdef123456")

    async def scenario(client):
        resp = await client.get(key_routes.ROUTE)
        return await resp.text()

    text = run(tmp_path, scenario)
    assert json.loads(text)["keys"]["imagepipeline"] is True
    assert "ip-ENV-abcdef123456" not in text


def test_unwritable_user_dir_is_a_500_without_the_key(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")

    async def scenario(client):
        return await post(client, {"service": "dezgo", "key": KEY})

    status, text = run(blocker, scenario)
    assert status == 500 and KEY not in text and str(tmp_path) not in text
