"""Crop and stitch for real inpainting inside a real ComfyUI: target_edge, separate regions, colour
match, against the sandbox's provider; CropLike and FillMasked registered and running."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_workflow import api_node, output_index

from comfyui_imgedit.nodes.core import masks as M

pytestmark = pytest.mark.comfyui

SIZE = (320, 240)  # width, height
REGIONS = [(20, 20, 80, 60), (230, 160, 300, 220)]  # x0, y0, x1, y1: two far-apart parts


def _write_inputs(folder) -> tuple[str, str]:
    """A colourful picture and a mask picture with two separate white rectangles."""
    w, h = SIZE
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(9)
    picture = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], axis=-1) // 2 + rng.integers(0, 120, (h, w, 3))
    mask = np.zeros((h, w), np.uint8)
    for x0, y0, x1, y1 in REGIONS:
        mask[y0:y1, x0:x1] = 255
    Image.fromarray(picture.astype(np.uint8)).save(folder / "imgedit_regions.png")
    Image.fromarray(mask).save(folder / "imgedit_regions_mask.png")
    return "imgedit_regions.png", "imgedit_regions_mask.png"


def _as_tensor(path) -> torch.Tensor:
    """What LoadImage gives: RGB float32 / 255, batch of one."""
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)[None]


def _schema_names(info: dict, node: str) -> list[str]:
    spec = info[node]["input"]
    return list(spec.get("required", {})) + list(spec.get("optional", {}))


def test_new_inputs_are_appended_and_new_nodes_registered(comfy):
    info = comfy.object_info
    assert _schema_names(info, "ImgEditCropToMask") == ["image", "mask", "context", "max_edge", "multiple_of", "target_edge", "regions"]
    assert _schema_names(info, "ImgEditStitch") == ["stitch", "image", "feather", "color_match"]
    assert info["ImgEditCropToMask"]["input"]["required"]["target_edge"][1]["default"] == 0
    assert info["ImgEditCropToMask"]["input"]["required"]["regions"][1]["default"] == "together"
    assert info["ImgEditStitch"]["input"]["required"]["color_match"][1]["default"] == "none"
    assert set(info["ImgEditCropLike"]["input"]["optional"]) == {"image", "mask"}
    assert list(info["ImgEditCropLike"]["input"]["required"]) == ["stitch"]
    assert info["ImgEditCropLike"]["output"] == ["IMAGE", "MASK"]
    assert list(info["ImgEditFillMasked"]["input"]["required"]) == ["image", "mask", "mode"]
    assert _schema_names(info, "ImgEditExtendCanvas") == ["image", "left", "top", "right", "bottom", "fill", "overlap"]
    assert info["ImgEditExtendCanvas"]["category"] == "ImgEdit/mask" and info["ImgEditExtendCanvas"]["output"] == ["IMAGE", "MASK"]
    assert info["ImgEditExtendCanvas"]["input"]["required"]["fill"][1]["default"] == "surround"


def test_crop_separately_edit_remotely_stitch_with_colour_match(comfy):
    info = comfy.object_info
    picture_name, mask_name = _write_inputs(comfy.server.input_dir)
    crop, samples = "ImgEditCropToMask", 2
    prompt = {
        "1": api_node(info, "LoadImage", image=picture_name),
        "2": api_node(info, "LoadImage", image=mask_name),
        "3": api_node(info, "ImgEditMaskFromImage", image=["2", 0], threshold=0.5, invert=False),
        "4": api_node(info, crop, image=["1", 0], mask=["3", 0], context=0.5, max_edge=1024, multiple_of=8,
                      target_edge=256, regions="separately"),
        "5": api_node(info, "ImgEditModelsLab", model_id="sandbox-inpaint", deadline_s=60),
        "6": api_node(info, "ImgEditInpaint", provider=["5", 0], image=["4", output_index(info, crop, "image")],
                      mask=["4", output_index(info, crop, "mask")], prompt="a red hot-air balloon", seed=7,
                      steps=31, samples=samples),
        "7": api_node(info, "ImgEditStitch", stitch=["4", output_index(info, crop, "stitch")], image=["6", 0],
                      feather=4, color_match="lab"),
        "8": api_node(info, "SaveImage", images=["7", 0], filename_prefix="imgedit_itest/regions"),
    }
    entry = comfy.client.run(prompt, timeout=240)
    saved = [i for i in comfy.client.output_images(entry) if i["type"] == "output"]
    assert len(saved) == samples, saved

    source = comfy.server.input_dir / picture_name
    original = _as_tensor(source)
    mask = M.mask_from_image(_as_tensor(comfy.server.input_dir / mask_name), 0.5, False)
    _, _, record = M.crop_to_mask(original, mask, 0.5, 1024, 8, 256, "separately")
    assert len(record.boxes) == 2 and max(record.crop_size) == 256
    keep = np.ones(SIZE[::-1], bool)
    for x0, y0, x1, y1 in record.boxes:
        keep[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = False
    with Image.open(source) as im:
        before = np.asarray(im.convert("RGB"))
    for image in saved:
        with Image.open(comfy.server.output_dir / image["subfolder"] / image["filename"]) as im:
            after = np.asarray(im.convert("RGB"))
        assert after.shape == before.shape
        assert np.array_equal(after[keep], before[keep]), "pixels outside the crop boxes changed"
        for x0, y0, x1, y1 in REGIONS:  # the sandbox's edit is visible inside each region
            assert np.abs(after[y0:y1, x0:x1].astype(int) - before[y0:y1, x0:x1]).mean() > 2


def test_crop_like_and_fill_masked_run(comfy):
    info = comfy.object_info
    picture_name, mask_name = _write_inputs(comfy.server.input_dir)
    crop = "ImgEditCropToMask"
    prompt = {
        "1": api_node(info, "LoadImage", image=picture_name),
        "2": api_node(info, "LoadImage", image=mask_name),
        "3": api_node(info, "ImgEditMaskFromImage", image=["2", 0], threshold=0.5, invert=False),
        "4": api_node(info, crop, image=["1", 0], mask=["3", 0], target_edge=128, regions="separately"),
        "5": api_node(info, "ImgEditCropLike", stitch=["4", output_index(info, crop, "stitch")], image=["2", 0]),
        "6": api_node(info, "ImgEditFillMasked", image=["4", output_index(info, crop, "image")],
                      mask=["4", output_index(info, crop, "mask")], mode="surround"),
        "7": api_node(info, "SaveImage", images=["5", 0], filename_prefix="imgedit_itest/crop_like"),
        "8": api_node(info, "SaveImage", images=["6", 0], filename_prefix="imgedit_itest/fill"),
    }
    entry = comfy.client.run(prompt, timeout=120)
    saved = [i for i in comfy.client.output_images(entry) if i["type"] == "output"]
    assert len(saved) == 4  # two crops from each SaveImage
    for image in saved:
        with Image.open(comfy.server.output_dir / image["subfolder"] / image["filename"]) as im:
            assert max(im.size) == 128
