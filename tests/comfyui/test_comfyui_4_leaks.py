"""Keys never leak: not in saved PNGs (pixels' metadata included), /history, /queue, the workflow
files, the settings, the user folder (except the key file itself) or the server log.

Runs last (file order), after the workflows and the browser test used both test keys.
"""

from __future__ import annotations

import json
import urllib.parse

import pytest
from PIL import Image

from comfyui_server import PACK_ROOT
from comfyui_session import BROWSER_TEST_KEY
from comfyui_workflow import adapt_for_test, ui_to_api

pytestmark = pytest.mark.comfyui


def _forms(secret: str) -> set[str]:
    return {secret, urllib.parse.quote(secret, safe=""), json.dumps(secret)[1:-1]}


def _hits(text: str, secrets: list[str]) -> list[str]:
    return [form for secret in secrets for form in _forms(secret) if form and form in text]


@pytest.fixture(scope="module")
def secrets(comfy) -> list[str]:
    return [comfy.test_key, BROWSER_TEST_KEY]


@pytest.fixture(scope="module")
def ran_remote(comfy):
    """Make sure at least one remote job ran with the key (in case the workflow tests were deselected)."""
    path = PACK_ROOT / "example_workflows" / "inpaint_crop_stitch_remote.json"
    if not path.is_file():
        pytest.skip("no remote example workflow yet")
    prompt = adapt_for_test(ui_to_api(json.loads(path.read_text()), comfy.object_info), comfy.object_info)
    comfy.client.run(prompt, timeout=300)
    if comfy.sandbox is not None and hasattr(comfy.sandbox, "requests"):
        assert comfy.sandbox.requests, "the remote workflow never reached the sandbox"


def test_saved_pictures_carry_no_key(comfy, secrets, ran_remote):
    pictures = [p for folder in (comfy.server.output_dir, comfy.server.base / "temp")
                for p in folder.rglob("*") if p.is_file()]
    assert any(p.suffix == ".png" for p in pictures), "no saved pictures to check"
    for path in pictures:
        data = path.read_bytes().decode("latin-1")
        assert not _hits(data, secrets), f"key in {path}"
        if path.suffix == ".png":
            with Image.open(path) as im:
                meta = json.dumps({k: str(v) for k, v in (getattr(im, "text", {}) or {}).items()})
            assert not _hits(meta, secrets), f"key in the metadata of {path}"


def test_history_and_queue_carry_no_key(comfy, secrets, ran_remote):
    history = comfy.client.get("/history?max_items=10000").decode("utf-8", "replace")
    assert len(history) > 2
    assert not _hits(history, secrets)
    assert not _hits(comfy.client.get("/queue").decode("utf-8", "replace"), secrets)


def test_workflow_files_carry_no_key(secrets):
    files = list((PACK_ROOT / "example_workflows").glob("*.json"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not _hits(text, secrets), path


def test_no_node_has_a_key_input(comfy):
    """Keys are server-side only: no input of the pack's nodes can carry one into a workflow."""
    import re

    secretish = re.compile(r"(^|_)(api_?key|key|token|secret|password|auth)($|_)", re.I)
    for node_id, info in comfy.object_info.items():
        if not node_id.startswith("ImgEdit"):
            continue
        names = [n for group in ("required", "optional") for n in info.get("input", {}).get(group, {})]
        assert not [n for n in names if secretish.search(n)], (node_id, names)


def test_settings_and_user_folder_carry_no_key(comfy, secrets):
    assert not _hits(comfy.client.get("/settings").decode("utf-8", "replace"), secrets)
    key_file = comfy.server.user_dir / "imgedit" / "keys.json"
    for path in comfy.server.user_dir.rglob("*"):
        if path.is_file() and path != key_file:
            assert not _hits(path.read_bytes().decode("latin-1"), secrets), path


def test_server_log_carries_no_key(comfy, secrets, ran_remote):
    log = comfy.log()
    assert "Starting server" in log or "To see the GUI" in log
    assert not _hits(log, secrets)
