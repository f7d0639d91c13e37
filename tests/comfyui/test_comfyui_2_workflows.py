"""Each example workflow, converted from the UI format to the API format, runs in a real ComfyUI.

Remote providers talk to the offline sandbox; local ones use tiny random-weight models (the example
files name real models; :func:`adapt_for_test` swaps in the tiny ones). Outputs must exist and have
the input's size (outpainting: the extended size).
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from comfyui_server import PACK_ROOT
from comfyui_session import SAMPLE_INPUTS
from comfyui_workflow import UI_ONLY_TYPES, adapt_for_test, ui_to_api, widget_slots
from example_specs import OUTPAINT_RIGHT

pytestmark = pytest.mark.comfyui

WORKFLOWS = ["mask_prep", "img2img_local", "inpaint_local", "img2img_checkpoint", "inpaint_checkpoint",
             "edit_kontext", "inpaint_flux_fill",
             "img2img_remote", "inpaint_crop_stitch_remote", "outpaint_remote", "regions_two_prompts_remote"]
#: Workflows whose output is larger than the input: (extra width, extra height).
GROWS = {"outpaint_remote": (OUTPAINT_RIGHT, 0)}
WORKFLOW_DIR = PACK_ROOT / "example_workflows"


def load(name: str) -> dict:
    path = WORKFLOW_DIR / f"{name}.json"
    assert path.is_file(), f"missing example workflow {path}"
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_file_is_ui_format_with_thumbnail(comfy, name):
    workflow = load(name)
    assert workflow.get("version") == 0.4
    assert isinstance(workflow.get("nodes"), list) and isinstance(workflow.get("links"), list)
    assert (WORKFLOW_DIR / f"{name}.jpg").is_file(), "no same-name .jpg thumbnail"
    for node in workflow["nodes"]:
        assert {"id", "type", "pos", "size", "widgets_values"} <= set(node), node.get("type")
        if node["type"] in UI_ONLY_TYPES:
            continue
        assert node["type"] in comfy.object_info, f"{name}: unknown node type {node['type']}"
        expected = len(widget_slots(comfy.object_info[node["type"]]))
        assert len(node["widgets_values"]) == expected, (name, node["type"])


def test_templates_route_lists_the_examples(comfy):
    templates = comfy.client.get_json("/workflow_templates")
    assert sorted(templates.get("comfyui-imgedit", [])) == sorted(WORKFLOWS), templates


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_runs(comfy, name):
    workflow = load(name)
    prompt = adapt_for_test(ui_to_api(workflow, comfy.object_info), comfy.object_info)
    loaded = {node["inputs"]["image"] for node in prompt.values() if node["class_type"] == "LoadImage"}
    assert loaded <= set(SAMPLE_INPUTS.values()), loaded
    inpaints_before = len(comfy.sandbox.requests_to("modelslab.inpaint")) if comfy.sandbox else 0
    entry = comfy.client.run(prompt, timeout=600)
    if name == "regions_two_prompts_remote" and comfy.sandbox:
        # Two regions, two --- separated prompts: each crop's request carries only its own prompt.
        sent = [r.json["prompt"] for r in comfy.sandbox.requests_to("modelslab.inpaint")[inpaints_before:]]
        assert sorted(sent) == ["a red hot-air balloon in the sky, detailed", "a small white sailing boat on a blue lake, detailed"]
    saved = [i for i in comfy.client.output_images(entry) if i["type"] == "output"]
    assert saved, f"{name}: nothing saved; outputs {entry.get('outputs')}"
    with Image.open(comfy.samples["sample.png"]) as src:
        extra = GROWS.get(name, (0, 0))
        size = (src.size[0] + extra[0], src.size[1] + extra[1])
    for item in saved:
        path = comfy.server.output_dir / item["subfolder"] / item["filename"]
        assert path.is_file(), path
        with Image.open(path) as out:
            assert out.size == size, f"{name}: {item['filename']} is {out.size}, input is {size}"
