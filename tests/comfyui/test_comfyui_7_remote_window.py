"""Issue 10 in a real ComfyUI: a small crop (64x168) around a mask, inpainted on ModelsLab and stitched back.

The sandbox enforces ModelsLab's documented validation (width and height 256-1024, multiples of
8; ``size_window`` is on for these runs), which refused every crop under 256 px before the pack
fitted pictures into the window. Two samples per picture: ``info.seeds`` names the first seed
and ``null`` for the second (ModelsLab reports only the first).
"""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from comfyui_workflow import api_node

pytestmark = pytest.mark.comfyui


def test_small_crop_inpainted_on_modelslab_and_stitched(comfy):
    info = comfy.object_info
    if "PreviewAny" not in info:
        pytest.skip("this ComfyUI has no PreviewAny node to show a STRING")
    nodes = {
        "1": api_node(info, "LoadImage", image=comfy.samples["sample.png"].name),
        "2": api_node(info, "LoadImage", image=comfy.samples["sample_mask.png"].name),
        "3": api_node(info, "ImgEditMaskFromImage", image=["2", 0], threshold=0.5, invert=False),
        "4": api_node(info, "ImgEditGrowMask", mask=["3", 0], pixels=-24, shape="round"),
        "5": api_node(info, "ImgEditCropToMask", image=["1", 0], mask=["4", 0], context=0.0, max_edge=1024,
                      multiple_of=8),
        "6": api_node(info, "ImgEditModelsLab", model_id="sandbox-inpaint", deadline_s=60),
        "7": api_node(info, "ImgEditInpaint", provider=["6", 0], image=["5", 0], mask=["5", 1],
                      prompt="a red hot-air balloon", seed=41, steps=31, samples=2),
        "8": api_node(info, "ImgEditStitch", stitch=["5", 2], image=["7", 0], feather=4),
        "9": api_node(info, "SaveImage", images=["8", 0], filename_prefix="imgedit_itest/window"),
        "10": api_node(info, "PreviewAny", source=["7", 1]),
    }
    before = comfy.sandbox.count("modelslab.inpaint")
    entry = comfy.client.run(nodes, timeout=120)
    sent = comfy.sandbox.requests_to("modelslab.inpaint")[before:]
    assert len(sent) == 1
    width, height = sent[0].json["width"], sent[0].json["height"]
    assert min(width, height) >= 256 and max(width, height) <= 1024 and width % 8 == 0 and height % 8 == 0
    saved = comfy.client.output_images(entry)
    assert len(saved) == 2
    picture = Image.open(io.BytesIO(comfy.client.view(saved[0]["filename"], saved[0]["subfolder"])))
    assert picture.size == Image.open(comfy.samples["sample.png"]).size
    shown = " ".join(str(v) for value in entry["outputs"]["10"].values()
                     for v in (value if isinstance(value, list) else [value]))
    seeds = json.loads(shown[shown.index("{"):])["seeds"]
    assert seeds == [41, None], seeds
    print(f"\nwindow: crop sent as {width}x{height}, seeds {seeds}")
