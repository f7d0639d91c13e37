"""The diffusers provider inside ComfyUI's machinery: step previews reach the UI's websocket as
KSampler's do, and ComfyUI freeing memory (*Unload models*, ``POST /free``) frees the pack's
cached pipelines."""

from __future__ import annotations

import io
import random
import time

import pytest
from PIL import Image

from comfyui_workflow import api_node

pytestmark = pytest.mark.comfyui

CACHE_ROUTE = "/imgedit/local/cache"


def _tiny_sd(info: dict) -> str:
    models = info["ImgEditLocalDiffusers"]["input"]["required"]["model"]
    options = models[0] if isinstance(models[0], list) else models[1].get("options", [])
    model = next((m for m in options if m == "tiny-sd"), None)
    if model is None:
        pytest.skip("the tiny local models are not in this ComfyUI's diffusers folder")
    return model


def _img2img(comfy, steps: int, prefix: str) -> dict:
    info = comfy.object_info
    return {
        "1": api_node(info, "LoadImage", image=comfy.samples["sample.png"].name),
        "2": api_node(info, "ImgEditLocalDiffusers", model=_tiny_sd(info), scheduler="EulerDiscreteScheduler"),
        # a fresh seed each time, so ComfyUI's output cache never skips the run
        "3": api_node(info, "ImgEditImg2Img", provider=["2", 0], image=["1", 0], prompt="a castle",
                      strength=1.0, steps=steps, seed=random.randrange(1 << 32)),
        "4": api_node(info, "SaveImage", images=["3", 0], filename_prefix=prefix),
    }


def test_local_steps_send_latent_previews_over_the_websocket(comfy):
    steps = 6
    with comfy.client.socket() as ws:
        comfy.client.run(_img2img(comfy, steps, "imgedit_itest/local_previews"), timeout=300)
        time.sleep(0.5)  # the last frames are sent from the server's loop after the prompt ends
        previews = ws.previews()
        progress = [p for p in ws.of_type("progress") if p.get("node") == "3"]
    assert [p["value"] for p in progress] == list(range(1, steps + 1)), progress
    assert len(previews) == steps, f"{len(previews)} preview frames for {steps} steps"
    assert all(p[:2] == b"\xff\xd8" for p in previews)  # JPEG
    with Image.open(io.BytesIO(previews[-1])) as frame:
        width, height = frame.size
    with Image.open(comfy.samples["sample.png"]) as src:
        assert abs(width / height - src.width / src.height) < 0.1, (frame.size, src.size)
    first, last = (Image.open(io.BytesIO(p)).convert("L") for p in (previews[0], previews[-1]))
    assert first.tobytes() != last.tobytes(), "every step showed the same picture"


def test_post_free_empties_the_pipeline_cache(comfy):
    comfy.client.run(_img2img(comfy, 2, "imgedit_itest/local_free"), timeout=300)
    before = comfy.client.get_json(CACHE_ROUTE)
    assert "tiny-sd" in before["models"], before
    assert "Requested to load ImgEditDiffusersModel" in comfy.log()  # listed with ComfyUI's models
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        # ComfyUI's prompt worker reads the /free flags when its queue wait wakes; a POST that lands
        # while it is busy between waits wakes nobody (a race of ComfyUI's own), so post again.
        status, _ = comfy.client.post_json("/free", {"unload_models": True, "free_memory": True})
        assert status == 200
        time.sleep(1.0)
        if not comfy.client.get_json(CACHE_ROUTE)["models"]:
            break
    after = comfy.client.get_json(CACHE_ROUTE)
    assert after["models"] == [], after
    comfy.client.run(_img2img(comfy, 2, "imgedit_itest/local_free"), timeout=300)  # loads again
    again = comfy.client.get_json(CACHE_ROUTE)
    assert again["models"] == ["tiny-sd"] and again["loads"] == before["loads"] + 1, (before, again)
