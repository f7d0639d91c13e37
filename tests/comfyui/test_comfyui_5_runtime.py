"""Edits at run time inside a real ComfyUI: Cancel (remote and local), overlap of remote nodes, info.

The sandbox stands in for ModelsLab: ``processing_forever`` makes a queued job never finish and
``job_delay`` makes each job take a known time.
"""

from __future__ import annotations

import time

import pytest

from comfyui_workflow import api_node

pytestmark = pytest.mark.comfyui


def _wait_until(predicate, timeout: float, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"not reached within {timeout} s")


def _inpaint_nodes(info: dict, prefix: str, first_id: int, image: list, mask: list, seed: int) -> dict:
    provider, edit, save = (str(first_id + k) for k in range(3))
    return {
        provider: api_node(info, "ImgEditModelsLab", model_id="sandbox-inpaint", deadline_s=60),
        edit: api_node(info, "ImgEditInpaint", provider=[provider, 0], image=image, mask=mask,
                       prompt="a red hot-air balloon", seed=seed, steps=31),
        save: api_node(info, "SaveImage", images=[edit, 0], filename_prefix=prefix),
    }


def _inputs(info: dict, comfy) -> tuple[dict, list, list]:
    nodes = {
        "1": api_node(info, "LoadImage", image=comfy.samples["sample.png"].name),
        "2": api_node(info, "LoadImage", image=comfy.samples["sample_mask.png"].name),
        "3": api_node(info, "ImgEditMaskFromImage", image=["2", 0], threshold=0.5, invert=False),
    }
    return nodes, ["1", 0], ["3", 0]


def _status(comfy, prompt_id: str):
    entry = comfy.client.history(prompt_id).get(prompt_id)
    return entry and entry.get("status", {}).get("completed") is not None and entry["status"]


def test_cancel_stops_a_queued_remote_job_within_a_second(comfy):
    info = comfy.object_info
    nodes, image, mask = _inputs(info, comfy)
    nodes.update(_inpaint_nodes(info, "imgedit_itest/cancel", 10, image, mask, seed=7))
    comfy.sandbox.processing_forever = True
    try:
        prompt_id = comfy.client.queue_prompt(nodes)
        # running once the sandbox has the job and is being polled
        _wait_until(lambda: comfy.sandbox.count("modelslab.fetch") >= 1, timeout=60)
        started = time.monotonic()
        status, _ = comfy.client.post_json("/interrupt", {})
        assert status == 200
        final = _wait_until(lambda: _status(comfy, prompt_id), timeout=10, poll=0.02)
        took = time.monotonic() - started
    finally:
        comfy.sandbox.processing_forever = False
    kinds = [message[0] for message in final.get("messages", [])]
    assert "execution_interrupted" in kinds, final
    print(f"\ncancel: interrupted {took:.2f} s after POST /interrupt")
    assert took < 1.5, f"Cancel took {took:.2f} s"


def test_two_remote_nodes_in_one_graph_overlap(comfy):
    info = comfy.object_info
    nodes, image, mask = _inputs(info, comfy)
    nodes.update(_inpaint_nodes(info, "imgedit_itest/overlap_a", 10, image, mask, seed=1))
    nodes.update(_inpaint_nodes(info, "imgedit_itest/overlap_b", 20, image, mask, seed=2))
    delay = 2.0
    previous, comfy.sandbox.job_delay = comfy.sandbox.job_delay, delay
    try:
        started = time.monotonic()
        entry = comfy.client.run(nodes, timeout=120)
        wall = time.monotonic() - started
    finally:
        comfy.sandbox.job_delay = previous
    print(f"\noverlap: two {delay} s remote jobs in one graph took {wall:.2f} s")
    assert len(comfy.client.output_images(entry)) == 2
    # two jobs of `delay` seconds each: sequential would take over 2 * delay
    assert wall < 1.6 * delay, f"{wall:.2f} s for two {delay} s jobs"


def test_edit_node_reports_seeds_and_warnings_in_info(comfy):
    info = comfy.object_info
    nodes, image, mask = _inputs(info, comfy)
    nodes.update(_inpaint_nodes(info, "imgedit_itest/info", 10, image, mask, seed=99))
    nodes["13"] = api_node(info, "PreviewAny", source=["11", 1]) if "PreviewAny" in info else None
    if nodes["13"] is None:
        pytest.skip("this ComfyUI has no PreviewAny node to show a STRING")
    entry = comfy.client.run(nodes, timeout=120)
    shown = entry["outputs"]["13"]
    text = " ".join(str(v) for value in shown.values() for v in (value if isinstance(value, list) else [value]))
    assert '"provider": "modelslab"' in text and "99" in text


def test_cancel_stops_a_local_run_within_a_step(comfy):
    """A long local img2img (tiny model) is interrupted mid-denoising, not run to the end."""
    info = comfy.object_info
    models = info["ImgEditLocalDiffusers"]["input"]["required"]["model"]
    options = models[0] if isinstance(models[0], list) else models[1].get("options", [])
    model = next((m for m in options if "tiny-sd" in m and "inpaint" not in m and "xl" not in m), None)
    if model is None:
        pytest.skip("the tiny local models are not in this ComfyUI's diffusers folder")
    nodes = {
        "1": api_node(info, "LoadImage", image=comfy.samples["sample.png"].name),
        "2": api_node(info, "ImgEditLocalDiffusers", model=model),
        "3": api_node(info, "ImgEditImg2Img", provider=["2", 0], image=["1", 0], prompt="a castle",
                      strength=1.0, steps=150, seed=5),
        "4": api_node(info, "SaveImage", images=["3", 0], filename_prefix="imgedit_itest/local_cancel"),
    }
    prompt_id = comfy.client.queue_prompt(nodes)
    _wait_until(lambda: comfy.client.get_json("/queue")["queue_running"], timeout=30)
    time.sleep(3.0)  # well into the denoising loop (model load included)
    assert not _status(comfy, prompt_id), "the run finished before it could be cancelled; make it longer"
    started = time.monotonic()
    comfy.client.post_json("/interrupt", {})
    final = _wait_until(lambda: _status(comfy, prompt_id), timeout=30, poll=0.02)
    took = time.monotonic() - started
    print(f"\nlocal cancel: interrupted {took:.2f} s after POST /interrupt")
    assert "execution_interrupted" in [m[0] for m in final.get("messages", [])], final
    assert took < 2.0
