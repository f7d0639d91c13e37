"""The pack inside a real ComfyUI: it loads, fast, and the mask-prep chain runs through ``/prompt``."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from comfyui_server import PACK_FOLDER_NAME, PACK_ROOT, import_times
from comfyui_session import NODE_IDS
from comfyui_workflow import api_node, output_index

pytestmark = pytest.mark.comfyui

#: The pack's import must stay cheap: heavy libraries (diffusers, transformers) load lazily.
MAX_IMPORT_SECONDS = 0.5


def _pack_import(log: str) -> tuple[float, bool]:
    for path, value in import_times(log).items():
        if path.rstrip("/").endswith("/" + PACK_FOLDER_NAME):
            return value
    raise AssertionError("ComfyUI printed no import time for the pack; log tail:\n" + log[-3000:])


def test_every_node_is_registered(comfy):
    missing = [node for node in NODE_IDS if node not in comfy.object_info]
    assert not missing, f"not in /object_info: {missing}"
    for node in NODE_IDS:
        info = comfy.object_info[node]
        assert info["python_module"].startswith("custom_nodes."), info["python_module"]


def test_log_shows_no_import_failure(comfy):
    log = comfy.log()
    seconds, ok = _pack_import(log)
    assert ok, "ComfyUI says (IMPORT FAILED) for the pack"
    bad = [line for line in log.splitlines()
           if PACK_FOLDER_NAME in line and re.search(r"IMPORT FAILED|Error|Traceback|Cannot import|Unable", line)]
    bad += [line for line in log.splitlines() if "comfy_entrypoint" in line]
    lines = log.splitlines()
    bad += [line for line in lines if "ImgEdit: could not" in line]  # the pack's own start-up warnings
    for start, line in enumerate(lines):  # any traceback passing through the pack's files
        if line.startswith("Traceback"):
            block = [line]
            for follow in lines[start + 1:start + 200]:
                block.append(follow)
                if follow and not follow.startswith((" ", "\t")):
                    break
            if any(PACK_FOLDER_NAME in b for b in block):
                bad.extend(block)
    assert not bad, "the log reports a problem with the pack:\n" + "\n".join(bad)


def test_import_time_is_small(comfy):
    seconds, ok = _pack_import(comfy.log())
    assert ok
    assert seconds < MAX_IMPORT_SECONDS, f"ComfyUI printed {seconds} s for the pack's import"


def mask_chain_prompt(info: dict, image_name: str, prefix: str) -> dict:
    """LoadImage -> MaskFromImage -> Grow -> Feather -> CropToMask -> Stitch -> SaveImage (API format)."""
    crop = "ImgEditCropToMask"
    return {
        "1": api_node(info, "LoadImage", image=image_name),
        "2": api_node(info, "ImgEditMaskFromImage", image=["1", 0], threshold=0.5, invert=False),
        "3": api_node(info, "ImgEditGrowMask", mask=["2", 0], pixels=6, shape="round"),
        "4": api_node(info, "ImgEditFeatherMask", mask=["3", 0], radius=4, mode="outward"),
        "5": api_node(info, crop, image=["1", 0], mask=["4", 0], context=0.5, max_edge=512, multiple_of=8),
        "6": api_node(info, "ImgEditStitch", stitch=["5", output_index(info, crop, "stitch")],
                      image=["5", output_index(info, crop, "image")], feather=4),
        "7": api_node(info, "SaveImage", images=["6", 0], filename_prefix=prefix),
    }


def test_mask_workflow_runs(comfy):
    info = comfy.object_info
    needed = ["ImgEditMaskFromImage", "ImgEditGrowMask", "ImgEditFeatherMask", "ImgEditCropToMask", "ImgEditStitch"]
    missing = [n for n in needed if n not in info]
    assert not missing, f"mask nodes not registered: {missing}"

    source = comfy.samples["sample.png"]
    prompt = mask_chain_prompt(info, source.name, "imgedit_itest/mask_chain")
    entry = comfy.client.run(prompt, timeout=180)
    images = comfy.client.output_images(entry)
    assert len(images) == 1 and images[0]["type"] == "output", images
    saved = comfy.server.output_dir / images[0]["subfolder"] / images[0]["filename"]
    assert saved.is_file()
    with Image.open(source) as src, Image.open(saved) as out:
        assert out.size == src.size
    # the same bytes come back over /view
    assert comfy.client.view(images[0]["filename"], images[0]["subfolder"]) == saved.read_bytes()


def test_sample_inputs_are_in_the_input_folder(comfy):
    """The example workflows load imgedit_sample*.png: the pack copies them from assets/ at load."""
    if not comfy.shipped_samples:
        pytest.skip("assets/sample.png and assets/sample_mask.png are not in the pack yet")
    for name, path in comfy.samples.items():
        assert path.is_file(), f"the pack did not copy assets/{name} to {path}"
        assert path.read_bytes() == (PACK_ROOT / "assets" / name).read_bytes()
