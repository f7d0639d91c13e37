"""ImgEditComfyModel with each model family against that family's core graph, in one prompt.

Models: tiny Flux dev / Flux Fill / Qwen-Image built by the test-only nodes of ``tiny_families`` (ComfyUI's
own classes, small widths), a stand-in CLIP and small VAEs; and one Flux dev file (full width, one double
block, ~770 MiB, built into the session's temp folder by ``tiny_flux_file.py``) loaded by the real
``UNETLoader``. Saved PNGs of the edit node and of the core graph must agree within 1/255 per channel.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfyui_workflow import api_node
from test_comfyui_9_comfy_model import _mask_picture, _max_diff, _picture, _saved, _upload, interrupt_at_step

pytestmark = pytest.mark.comfyui

HERE = Path(__file__).resolve().parent
PROMPT = "make the sky purple"
#: family -> (tiny model, stand-in CLIP kind, VAE kind)
FAMILIES = {"flux_dev": ("flux_dev", "flux", "flux"), "flux_fill": ("flux_fill", "flux", "flux"),
            "qwen_image": ("qwen_image", "qwen", "qwen")}


def _loaders(info, family: str, picture: str, reference=False, references=None, scheduler="simple") -> dict:
    """M/C/V: the family's tiny MODEL, CLIP, VAE; 1: the picture; 3: ImgEditComfyModel on them."""
    model, clip, vae = FAMILIES[family]
    nodes = {
        "M": api_node(info, "TestTinyFamilyModel", family=model),
        "C": api_node(info, "TestStandInClip", kind=clip),
        "V": api_node(info, "TestTinyVae", kind=vae),
        "1": api_node(info, "LoadImage", image=picture),
    }
    extra = {"references": references} if references is not None else {}
    nodes["3"] = api_node(info, "ImgEditComfyModel", model=["M", 0], clip=["C", 0], vae=["V", 0], sampler_name="euler",
                          scheduler=scheduler, reference=reference, **extra)
    return nodes


def _core_sampler(info, seed, steps, strength, cfg, positive, negative, latent, model=("M", 0), scheduler="simple"):
    return {
        "30": api_node(info, "KSamplerAdvanced", model=list(model), add_noise="enable", noise_seed=seed, steps=steps,
                       cfg=cfg, sampler_name="euler", scheduler=scheduler, positive=positive, negative=negative,
                       latent_image=latent, start_at_step=steps - int(steps * strength), end_at_step=steps,
                       return_with_leftover_noise="disable"),
        "31": api_node(info, "VAEDecode", samples=["30", 0], vae=["V", 0]),
        "32": api_node(info, "SaveImage", images=["31", 0], filename_prefix="imgedit_itest/fam_core"),
    }


def _edit(info, kind: str, seed, steps, strength, guidance, negative="", **more) -> dict:
    nodes = {"4": api_node(info, kind, provider=["3", 0], image=["1", 0], prompt=PROMPT, negative_prompt=negative,
                           strength=strength, steps=steps, guidance=guidance, seed=seed, samples=1, **more),
             "5": api_node(info, "SaveImage", images=["4", 0], filename_prefix="imgedit_itest/fam_ours")}
    if "PreviewAny" in info:
        nodes["6"] = api_node(info, "PreviewAny", source=["4", 1])
    return nodes


def _run(comfy, nodes) -> tuple[np.ndarray, np.ndarray, dict]:
    entry = comfy.client.run(nodes, timeout=300)
    (ours,), (core,) = _saved(comfy, entry, "5"), _saved(comfy, entry, "32")
    shown = entry["outputs"].get("6", {})
    text = " ".join(str(v) for value in shown.values() for v in (value if isinstance(value, list) else [value]))
    return ours, core, (json.loads(text) if text.strip().startswith("{") else {})


def _check(ours, core, original, what: str, changed=True):
    print(f"\n{what}: max difference to core {_max_diff(ours, core)}/255, to the input {_max_diff(ours, original)}")
    assert _max_diff(ours, core) <= 1
    if changed:
        assert _max_diff(ours, original) > 10, "the edit left the picture as it was"


def test_flux_fill_inpaints_with_the_picture_around_the_hole(comfy, tmp_path):
    """Flux Fill (no concat_keys; its img_in is wider): InpaintModelConditioning -> FluxGuidance 30, CFG 1."""
    info = comfy.object_info
    name = _upload(comfy, tmp_path, "fill.png", _picture(64, 48, seed=21))
    mask_name = _upload(comfy, tmp_path, "fill_mask.png", _mask_picture(64, 48, soft=False))
    seed, steps, strength, guidance = 7, 4, 1.0, 30.0
    nodes = _loaders(info, "flux_fill", name)
    nodes["8"] = api_node(info, "LoadImage", image=mask_name)
    nodes["9"] = api_node(info, "ImageToMask", image=["8", 0], channel="red")
    nodes.update(_edit(info, "ImgEditInpaint", seed, steps, strength, guidance, negative="blurry", mask=["9", 0],
                       keep_unmasked=False))
    nodes["20"] = api_node(info, "CLIPTextEncode", clip=["C", 0], text=PROMPT)
    nodes["21"] = api_node(info, "CLIPTextEncode", clip=["C", 0], text="blurry")
    nodes["22"] = api_node(info, "InpaintModelConditioning", positive=["20", 0], negative=["21", 0], vae=["V", 0],
                           pixels=["1", 0], mask=["9", 0], noise_mask=True)
    nodes["23"] = api_node(info, "FluxGuidance", conditioning=["22", 0], guidance=guidance)
    nodes.update(_core_sampler(info, seed, steps, strength, 1.0, ["23", 0], ["22", 1], ["22", 2]))
    ours, core, shown = _run(comfy, nodes)
    _check(ours, core, np.asarray(Image.open(tmp_path / name).convert("RGB")), "Flux Fill inpaint")
    assert shown, "no info from PreviewAny"
    assert shown["inpaint_model"] is True and shown["model"] == "FluxInpaint"
    assert shown["cfg"] == 1.0 and shown["guidance"] == guidance
    assert "InpaintModelConditioning" in shown["conditioning"]
    assert any("negative prompt is ignored" in w for w in shown["warnings"]), shown["warnings"]


@pytest.mark.parametrize("extra_references", [0, 1])
def test_kontext_reference_edit_equals_the_core_template(comfy, tmp_path, extra_references):
    """CLIPTextEncode -> ReferenceLatent (picture, then each extra one) -> FluxGuidance 2.5; CFG 1; strength 1."""
    info = comfy.object_info
    name = _upload(comfy, tmp_path, f"kontext{extra_references}.png", _picture(64, 48, seed=30 + extra_references))
    seed, steps, strength, guidance = 11, 4, 1.0, 2.5
    references = None
    if extra_references:
        ref = _upload(comfy, tmp_path, "kontext_ref.png", _picture(48, 32, seed=99))
        references = ["R", 0]
    nodes = _loaders(info, "flux_dev", name, reference=True, references=references)
    nodes.update(_edit(info, "ImgEditImg2Img", seed, steps, strength, guidance))
    nodes["20"] = api_node(info, "CLIPTextEncode", clip=["C", 0], text=PROMPT)
    nodes["22"] = api_node(info, "VAEEncode", pixels=["1", 0], vae=["V", 0])
    nodes["23"] = api_node(info, "ReferenceLatent", conditioning=["20", 0], latent=["22", 0])
    last = ["23", 0]
    if extra_references:
        nodes["R"] = api_node(info, "LoadImage", image=ref)
        nodes["24"] = api_node(info, "VAEEncode", pixels=["R", 0], vae=["V", 0])
        nodes["25"] = api_node(info, "ReferenceLatent", conditioning=last, latent=["24", 0])
        last = ["25", 0]
    nodes["26"] = api_node(info, "FluxGuidance", conditioning=last, guidance=guidance)
    nodes["27"] = api_node(info, "ConditioningZeroOut", conditioning=["20", 0])
    nodes.update(_core_sampler(info, seed, steps, strength, 1.0, ["26", 0], ["27", 0], ["22", 0]))
    ours, core, shown = _run(comfy, nodes)
    _check(ours, core, np.asarray(Image.open(tmp_path / name).convert("RGB")), f"Kontext, {1 + extra_references} refs")
    assert shown, "no info from PreviewAny"
    assert shown["references"] == 1 + extra_references and shown["cfg"] == 1.0 and shown["guidance"] == guidance
    assert f"ReferenceLatent x{1 + extra_references}" in shown["conditioning"] and shown["warnings"] == []


def test_kontext_inpaint_is_reference_plus_soft_noise_mask(comfy, tmp_path):
    """ImgEditInpaint with reference on: SetLatentNoiseMask + DifferentialDiffusion + ReferenceLatent + FluxGuidance."""
    info = comfy.object_info
    name = _upload(comfy, tmp_path, "kontext_inpaint.png", _picture(64, 48, seed=35))
    mask_name = _upload(comfy, tmp_path, "kontext_inpaint_mask.png", _mask_picture(64, 48, soft=True))
    seed, steps, strength, guidance = 12, 4, 1.0, 2.5
    nodes = _loaders(info, "flux_dev", name, reference=True)
    nodes["8"] = api_node(info, "LoadImage", image=mask_name)
    nodes["9"] = api_node(info, "ImageToMask", image=["8", 0], channel="red")
    nodes.update(_edit(info, "ImgEditInpaint", seed, steps, strength, guidance, mask=["9", 0], keep_unmasked=False))
    nodes["20"] = api_node(info, "CLIPTextEncode", clip=["C", 0], text=PROMPT)
    nodes["22"] = api_node(info, "VAEEncode", pixels=["1", 0], vae=["V", 0])
    nodes["23"] = api_node(info, "SetLatentNoiseMask", samples=["22", 0], mask=["9", 0])
    nodes["24"] = api_node(info, "DifferentialDiffusion", model=["M", 0])
    nodes["25"] = api_node(info, "ReferenceLatent", conditioning=["20", 0], latent=["22", 0])
    nodes["26"] = api_node(info, "FluxGuidance", conditioning=["25", 0], guidance=guidance)
    nodes["27"] = api_node(info, "ConditioningZeroOut", conditioning=["20", 0])
    nodes.update(_core_sampler(info, seed, steps, strength, 1.0, ["26", 0], ["27", 0], ["23", 0], model=("24", 0)))
    ours, core, shown = _run(comfy, nodes)
    _check(ours, core, np.asarray(Image.open(tmp_path / name).convert("RGB")), "Kontext inpaint (soft mask)")
    assert shown, "no info from PreviewAny"
    assert "DifferentialDiffusion" in shown["conditioning"] and "ReferenceLatent x1" in shown["conditioning"]


@pytest.mark.parametrize("plus", [False, True], ids=["edit", "edit-plus"])
def test_qwen_image_edit_equals_the_core_template(comfy, tmp_path, plus):
    """TextEncodeQwenImageEdit(Plus) for the prompt and the (empty) negative, VAEEncode latent, CFG 2.5."""
    info = comfy.object_info
    name = _upload(comfy, tmp_path, f"qwen{plus}.png", _picture(64, 48, seed=40 + plus))
    seed, steps, strength, guidance = 13, 4, 1.0, 2.5
    ref = _upload(comfy, tmp_path, "qwen_ref.png", _picture(32, 32, seed=98)) if plus else None
    nodes = _loaders(info, "qwen_image", name, reference=True, references=["R", 0] if plus else None)
    nodes.update(_edit(info, "ImgEditImg2Img", seed, steps, strength, guidance))
    if plus:
        nodes["R"] = api_node(info, "LoadImage", image=ref)
        encode = dict(class_type="TextEncodeQwenImageEditPlus", image1=["1", 0], image2=["R", 0])
    else:
        encode = dict(class_type="TextEncodeQwenImageEdit", image=["1", 0])
    kind = encode.pop("class_type")
    nodes["20"] = api_node(info, kind, clip=["C", 0], prompt=PROMPT, vae=["V", 0], **encode)
    nodes["21"] = api_node(info, kind, clip=["C", 0], prompt="", vae=["V", 0], **encode)
    nodes["22"] = api_node(info, "VAEEncode", pixels=["1", 0], vae=["V", 0])
    nodes.update(_core_sampler(info, seed, steps, strength, guidance, ["20", 0], ["21", 0], ["22", 0]))
    ours, core, shown = _run(comfy, nodes)
    _check(ours, core, np.asarray(Image.open(tmp_path / name).convert("RGB")), f"Qwen-Image-Edit{' Plus' if plus else ''}")
    assert shown, "no info from PreviewAny"
    assert kind in shown["conditioning"] and shown["cfg"] == guidance and shown["references"] == 1 + plus


def test_reference_on_a_model_without_a_reference_path_says_so(comfy, tmp_path):
    info = comfy.object_info
    name = _upload(comfy, tmp_path, "noref.png", _picture(64, 48, seed=50))
    nodes = {
        "2": api_node(info, "CheckpointLoaderSimple", ckpt_name="tiny-sd15.safetensors"),
        "1": api_node(info, "LoadImage", image=name),
        "3": api_node(info, "ImgEditComfyModel", model=["2", 0], clip=["2", 1], vae=["2", 2], reference=True),
    }
    nodes.update({k: v for k, v in _edit(info, "ImgEditImg2Img", 1, 4, 1.0, 5.0).items() if k != "6"})
    with pytest.raises(Exception) as raised:
        comfy.client.run(nodes, timeout=120)
    assert "has no reference path" in str(raised.value) and "SD15" in str(raised.value)


@pytest.fixture(scope="module")
def flux_file(comfy) -> str:
    """The 1-double-block Flux dev file in the session's diffusion_models folder (built once, ~6 s)."""
    folder = comfy.work / "models" / "diffusion_models"
    done = subprocess.run([os.environ.get("COMFYUI_PYTHON") or "python", str(HERE / "tiny_flux_file.py"), str(folder)],
                          cwd=comfy.server.comfy_dir, env={**os.environ, "COMFYUI_DIR": str(comfy.server.comfy_dir)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.split()[-1]).name


def test_flux_dev_file_img2img_uses_embedded_guidance(comfy, tmp_path, flux_file):
    """UNETLoader's Flux dev: CLIPTextEncode -> FluxGuidance 3.5 -> KSamplerAdvanced CFG 1 over VAEEncode."""
    info = comfy.object_info
    name = _upload(comfy, tmp_path, "fluxfile.png", _picture(64, 48, seed=60))
    seed, steps, strength, guidance = 17, 4, 0.75, 3.5
    nodes = _loaders(info, "flux_dev", name)
    nodes["M"] = api_node(info, "UNETLoader", unet_name=flux_file, weight_dtype="default")
    nodes["C"] = api_node(info, "TestStandInClip", kind="flux_full")
    nodes.update(_edit(info, "ImgEditImg2Img", seed, steps, strength, guidance))
    nodes["20"] = api_node(info, "CLIPTextEncode", clip=["C", 0], text=PROMPT)
    nodes["21"] = api_node(info, "FluxGuidance", conditioning=["20", 0], guidance=guidance)
    nodes["22"] = api_node(info, "VAEEncode", pixels=["1", 0], vae=["V", 0])
    nodes.update(_core_sampler(info, seed, steps, strength, 1.0, ["21", 0], ["20", 0], ["22", 0]))
    ours, core, shown = _run(comfy, nodes)
    _check(ours, core, np.asarray(Image.open(tmp_path / name).convert("RGB")), "Flux dev file img2img")
    assert shown, "no info from PreviewAny"
    assert shown["model"] == "Flux" and shown["embedded_guidance"] is True
    assert shown["cfg"] == 1.0 and shown["guidance"] == guidance


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_progress_previews_and_cancel_per_family(comfy, tmp_path, family):
    """4 steps at strength 0.5: two steps on the bar, each with a JPEG preview; then Cancel at step 3 of 150."""
    info = comfy.object_info
    name = _upload(comfy, tmp_path, f"steps_{family}.png", _picture(64, 48, seed=70))
    reference = family != "flux_fill"
    nodes = _loaders(info, family, name, reference=reference)
    nodes.update({k: v for k, v in _edit(info, "ImgEditImg2Img", 3, 4, 0.5, 3.0).items() if k != "6"})
    with comfy.client.socket() as ws:
        comfy.client.run(nodes, timeout=300)
        time.sleep(0.5)  # the last frames are sent from the server's loop after the prompt ends
        steps = [(p["value"], p["max"]) for p in ws.of_type("progress") if p.get("node") == "4"]
        previews = ws.previews()
    print(f"\n{family}: progress {steps}; {len(previews)} previews")
    assert steps == [(1, 2), (2, 2)]
    assert len(previews) == 2 and all(p[:2] == b"\xff\xd8" for p in previews)

    nodes["4"]["inputs"].update(steps=150, strength=1.0, seed=4)
    took, last_step, entry = interrupt_at_step(comfy, nodes)
    print(f"{family}: cancelled in {took:.2f} s at step {last_step} of 150")
    assert "execution_interrupted" in [m[0] for m in entry["status"]["messages"]], entry["status"]
    assert took <= 1.0 and last_step < 150
