"""The sandbox itself: visible deterministic edit, key checks, no outbound fetches, scripting, CLI, env."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import requests
from PIL import Image

from comfyui_imgedit.sandbox import Canned, SandboxServer, render
from remote_support import KEY, sandbox  # noqa: F401


def png(color=(40, 90, 160), size=(24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_render_is_deterministic_and_visible():
    image = Image.new("RGB", (16, 8), (100, 100, 100))
    a, b = render(image, None, 5, 0.5), render(image, None, 5, 0.5)
    assert a.tobytes() == b.tobytes()
    assert render(image, None, 6, 0.5).tobytes() != a.tobytes()
    assert np.abs(np.asarray(a, dtype=int) - 100).max() > 20  # clearly visible
    mask = Image.new("L", (16, 8), 0)
    mask.paste(255, (0, 0, 8, 8))
    out = np.asarray(render(image, mask, 5, 0.5), dtype=int)
    assert (out[:, 8:] == 100).all()  # outside the mask untouched
    assert (out[:, :8] != 100).any()


def test_dezgo_checks_the_key_header(sandbox):
    files = {"init_image": ("i.png", png(), "image/png")}
    url = sandbox.service_url("dezgo") + "/image2image"
    assert requests.post(url, data={"prompt": "x"}, files=files, timeout=5).status_code == 401
    ok = requests.post(url, data={"prompt": "x", "seed": "9"}, files=files, headers={"X-Dezgo-Key": KEY}, timeout=5)
    assert ok.status_code == 200 and ok.headers["Content-Type"] == "image/png" and ok.headers["x-input-seed"] == "9"
    assert Image.open(io.BytesIO(ok.content)).size == (24, 16)
    as_json = requests.post(url, json={"prompt": "x", "init_image": base64.b64encode(png()).decode()},
                            headers={"X-Dezgo-Key": KEY}, timeout=5)
    assert as_json.status_code == 200


def test_modelslab_queued_protocol(sandbox):
    sandbox.job_delay = 0.3
    base = sandbox.service_url("modelslab")
    body = {"key": KEY, "model_id": "m", "prompt": "x", "init_image": data_uri(png()), "samples": 2}
    first = requests.post(base + "/api/v6/images/img2img", json=body, timeout=5).json()
    assert first["status"] == "processing" and first["messege"] and first["future_links"]
    assert requests.get(first["future_links"][0], timeout=5).status_code == 404  # not ready yet
    import time

    time.sleep(0.35)
    done = requests.post(base + "/api/v6/images/fetch", json={"key": KEY, "request_id": first["id"]}, timeout=5).json()
    assert done["status"] == "success" and len(done["output"]) == 2
    assert requests.get(done["output"][0], timeout=5).status_code == 200
    wrong = requests.post(base + "/api/v6/images/fetch/" + str(first["id"]), json={"key": "nope"}, timeout=5)
    assert wrong.status_code == 401


def test_no_outbound_fetch(sandbox):
    base = sandbox.service_url("modelslab")
    body = {"key": KEY, "model_id": "m", "prompt": "x", "init_image": "https://example.org/cat.png"}
    answer = requests.post(base + "/api/v6/images/img2img", json=body, timeout=5)
    assert answer.status_code == 400 and "Unable to fetch image" in answer.json()["message"]
    uploaded = requests.post(base + "/api/v6/base64_to_url", json={"key": KEY, "base64_string": data_uri(png())},
                             timeout=5).json()["output"][0]
    body["init_image"] = uploaded
    assert requests.post(base + "/api/v6/images/img2img", json=body, timeout=5).json()["status"] == "success"


def test_sdapi_errors_come_with_http_200(sandbox):
    base = sandbox.service_url("sdapi")
    answer = requests.post(base + "/api/v3/img2img", json={"key": "nope", "prompt": "x"}, timeout=5)
    assert answer.status_code == 200 and answer.json() == {"status": "error", "message": "Invalid Api Key",
                                                           "tip": "Get your key from modelslab.com"}
    answer = requests.post(base + "/api/v3/img2img", json={"key": KEY, "prompt": "x", "num_inference_steps": 30,
                                                           "init_image": data_uri(png())}, timeout=5)
    assert answer.json()["message"] == {"num_inference_steps": ["The selected num inference steps is invalid."]}


def test_scripts_are_used_in_order_then_normal(sandbox):
    sandbox.script("imagepipeline.submit", Canned(503, {"a": 1}), Canned(200, {"b": 2}))
    url = sandbox.service_url("imagepipeline") + "/sdxl/image2image/v1"
    headers = {"API-Key": KEY}
    body = {"model_id": "sdxl", "prompt": "x", "init_image": data_uri(png())}
    assert requests.post(url, json=body, headers=headers, timeout=5).status_code == 503
    assert requests.post(url, json=body, headers=headers, timeout=5).json() == {"b": 2}
    assert requests.post(url, json=body, headers=headers, timeout=5).json()["status"] == "SUCCESS"
    assert sandbox.count("imagepipeline.submit") == 3


def test_environ_and_patch_env():
    with SandboxServer(key="k-not-real") as sb:
        env = sb.environ()
        assert env["IMGEDIT_DEZGO_URL"] == f"{sb.url}/dezgo" and env["MODELSLAB_API_KEY"] == "k-not-real"
        assert sb.urls()["imagepipeline"] == f"{sb.url}/imagepipeline"
        before = os.environ.get("IMGEDIT_SDAPI_URL")
        with sb.patch_env():
            assert os.environ["IMGEDIT_SDAPI_URL"] == f"{sb.url}/sdapi"
        assert os.environ.get("IMGEDIT_SDAPI_URL") == before
        assert sb.url.startswith("http://127.0.0.1:")


def test_cli_prints_the_exports():
    process = subprocess.Popen([sys.executable, "-m", "comfyui_imgedit.sandbox", "--port", "0", "--key", "cli-not-real"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [process.stdout.readline().strip() for _ in range(7)]
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert lines[0].startswith("export IMGEDIT_DEZGO_URL=http://127.0.0.1:")
    assert "export MODELSLAB_API_KEY=cli-not-real" in lines
    assert len([line for line in lines if line.startswith("export ")]) == 7


def test_unknown_paths_answer_404(sandbox):
    answer = requests.get(sandbox.url + "/nothing", timeout=5)
    assert answer.status_code == 404 and json.loads(answer.text)["status"] == "error"
    with pytest.raises(ValueError):
        sandbox.service_url("openai")
