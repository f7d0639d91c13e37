"""ImgEditComfyModel in a real ComfyUI, on the tiny SD1.5 checkpoints of ``tiny_checkpoint.py``.

Every result is compared with the core graph doing the same job in the same prompt
(CLIPTextEncode -> VAEEncode -> KSamplerAdvanced -> VAEDecode, start_at_step = steps -
int(steps * strength)); saved PNGs must agree within 1 of 255 per channel. Both run in one prompt, so
the parity tests also prove the edit node runs in turn with a KSampler on the same MODEL (a local
provider must not overlap other nodes as the remote ones do).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfyui_server import PACK_ROOT
from comfyui_workflow import api_node
from test_comfyui_5_runtime import _wait_until

pytestmark = pytest.mark.comfyui

HERE = Path(__file__).resolve().parent
PROMPT, NEGATIVE = "a red house by the sea", "blurry"


def _checkpoint(info: dict, inpaint: bool) -> str:
    name = "tiny-sd15-inpaint.safetensors" if inpaint else "tiny-sd15.safetensors"
    spec = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
    options = spec[0] if isinstance(spec[0], list) else spec[1].get("options", [])
    assert name in options, f"the tiny checkpoint {name} is not in this ComfyUI's checkpoints: {options}"
    return name


def _upload(comfy, tmp_path, name: str, pixels: np.ndarray) -> str:
    path = tmp_path / name
    Image.fromarray(pixels).save(path)
    return comfy.client.upload_image(path, name)


def _picture(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth colours plus some noise: a picture the VAE and the mask compositing both see clearly."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, 0.5 + 0.4 * np.sin(x / 7.0 + y / 5.0)], axis=-1) * 220
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _mask_picture(width: int, height: int, soft: bool) -> np.ndarray:
    """White rectangle in the middle (1 = change); ``soft`` gives it a 6 px linear edge."""
    y, x = np.mgrid[0:height, 0:width]
    inside = np.minimum.reduce([x - width // 4, 3 * width // 4 - x, y - height // 4, 3 * height // 4 - y])
    ramp = np.clip((inside + 6) / 6.0, 0, 1) if soft else (inside >= 0).astype(float)
    return np.repeat((ramp * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def _saved(comfy, entry: dict, node: str) -> list[np.ndarray]:
    images = entry["outputs"][node]["images"]
    return [np.asarray(Image.open(io.BytesIO(comfy.client.view(i["filename"], i["subfolder"], i["type"]))).convert("RGB"))
            for i in images]


def _loader_nodes(info, image_name: str, inpaint: bool, sampler="euler", scheduler="normal") -> dict:
    return {
        "1": api_node(info, "LoadImage", image=image_name),
        "2": api_node(info, "CheckpointLoaderSimple", ckpt_name=_checkpoint(info, inpaint)),
        "3": api_node(info, "ImgEditComfyModel", model=["2", 0], clip=["2", 1], vae=["2", 2],
                      sampler_name=sampler, scheduler=scheduler),
    }


def _core_nodes(info, prefix: str, seed: int, steps: int, strength: float, guidance: float, sampler: str,
                scheduler: str, latent: list, positive: list, negative: list, model: list = None) -> dict:
    """KSamplerAdvanced as the parity reference, then VAEDecode and SaveImage (ids prefix+a/b/c)."""
    return {
        prefix + "a": api_node(info, "KSamplerAdvanced", model=model or ["2", 0], add_noise="enable",
                               noise_seed=seed, steps=steps, cfg=guidance, sampler_name=sampler, scheduler=scheduler,
                               positive=positive, negative=negative, latent_image=latent,
                               start_at_step=steps - int(steps * strength), end_at_step=steps,
                               return_with_leftover_noise="disable"),
        prefix + "b": api_node(info, "VAEDecode", samples=[prefix + "a", 0], vae=["2", 2]),
        prefix + "c": api_node(info, "SaveImage", images=[prefix + "b", 0], filename_prefix=f"imgedit_itest/{prefix}"),
    }


def _text_nodes(info) -> dict:
    return {
        "20": api_node(info, "CLIPTextEncode", clip=["2", 1], text=PROMPT),
        "21": api_node(info, "CLIPTextEncode", clip=["2", 1], text=NEGATIVE),
    }


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.mark.parametrize("sampler,scheduler", [("euler", "normal"), ("euler_ancestral", "karras")])
def test_img2img_equals_core_ksampler_advanced(comfy, tmp_path, sampler, scheduler):
    info = comfy.object_info
    name = _upload(comfy, tmp_path, f"parity_{sampler}.png", _picture(96, 64, seed=1))
    steps, strength, guidance, seed = 10, 0.6, 5.0, 1234
    nodes = _loader_nodes(info, name, inpaint=False, sampler=sampler, scheduler=scheduler)
    nodes.update(_text_nodes(info))
    nodes["4"] = api_node(info, "ImgEditImg2Img", provider=["3", 0], image=["1", 0], prompt=PROMPT,
                          negative_prompt=NEGATIVE, strength=strength, steps=steps, guidance=guidance, seed=seed,
                          samples=1)
    nodes["5"] = api_node(info, "SaveImage", images=["4", 0], filename_prefix="imgedit_itest/parity")
    nodes["22"] = api_node(info, "VAEEncode", pixels=["1", 0], vae=["2", 2])
    nodes.update(_core_nodes(info, "30", seed, steps, strength, guidance, sampler, scheduler,
                             latent=["22", 0], positive=["20", 0], negative=["21", 0]))
    entry = comfy.client.run(nodes, timeout=300)
    ours, = _saved(comfy, entry, "5")
    core, = _saved(comfy, entry, "30c")
    original = np.asarray(Image.open(tmp_path / name).convert("RGB"))
    print(f"\nparity {sampler}/{scheduler}: max difference {_max_diff(ours, core)}/255")
    assert _max_diff(ours, core) <= 1
    assert _max_diff(ours, original) > 20, "img2img left the picture as it was"


def test_batch_and_samples_use_seed_plus_k(comfy, tmp_path):
    """Two pictures x two samples: output k of picture p equals a core run of p with seed + k."""
    info = comfy.object_info
    names = [_upload(comfy, tmp_path, f"batch_{p}.png", _picture(64, 48, seed=10 + p)) for p in range(2)]
    steps, strength, guidance, seed = 8, 0.75, 6.0, 77
    nodes = _loader_nodes(info, names[0], inpaint=False)
    nodes.update(_text_nodes(info))
    nodes["6"] = api_node(info, "LoadImage", image=names[1])
    nodes["7"] = api_node(info, "ImageBatch", image1=["1", 0], image2=["6", 0])
    nodes["4"] = api_node(info, "ImgEditImg2Img", provider=["3", 0], image=["7", 0], prompt=PROMPT,
                          negative_prompt=NEGATIVE, strength=strength, steps=steps, guidance=guidance, seed=seed,
                          samples=2)
    nodes["5"] = api_node(info, "SaveImage", images=["4", 0], filename_prefix="imgedit_itest/batch")
    for p, loader in enumerate(("1", "6")):
        nodes[f"4{p}"] = api_node(info, "VAEEncode", pixels=[loader, 0], vae=["2", 2])
        for k in range(2):
            nodes.update(_core_nodes(info, f"5{p}{k}", seed + k, steps, strength, guidance, "euler", "normal",
                                     latent=[f"4{p}", 0], positive=["20", 0], negative=["21", 0]))
    entry = comfy.client.run(nodes, timeout=300)
    ours = _saved(comfy, entry, "5")
    assert len(ours) == 4
    cores = [_saved(comfy, entry, f"5{p}{k}c")[0] for p in range(2) for k in range(2)]
    diffs = [_max_diff(a, b) for a, b in zip(ours, cores)]
    print(f"\nbatch x samples: max differences {diffs}/255")
    assert max(diffs) <= 1
    assert _max_diff(ours[0], ours[1]) > 20, "samples 0 and 1 of a picture are the same: seed + k not used"


@pytest.mark.parametrize("inpaint_model", [True, False], ids=["9-channel", "4-channel-soft-mask"])
def test_inpaint_matches_core_and_keeps_the_outside(comfy, tmp_path, inpaint_model):
    """9-channel: core InpaintModelConditioning; 4-channel with a soft mask: SetLatentNoiseMask +
    DifferentialDiffusion. keep_unmasked off equals the core graph; on, the outside is the input's."""
    info = comfy.object_info
    width, height = 96, 64
    name = _upload(comfy, tmp_path, f"inpaint_{inpaint_model}.png", _picture(width, height, seed=3))
    mask_name = _upload(comfy, tmp_path, f"inpaint_mask_{inpaint_model}.png",
                        _mask_picture(width, height, soft=not inpaint_model))
    steps, strength, guidance, seed = 10, 1.0, 7.0, 5
    nodes = _loader_nodes(info, name, inpaint=inpaint_model)
    nodes.update(_text_nodes(info))
    nodes["8"] = api_node(info, "LoadImage", image=mask_name)
    nodes["9"] = api_node(info, "ImageToMask", image=["8", 0], channel="red")
    for node, keep in (("4", False), ("6", True)):
        nodes[node] = api_node(info, "ImgEditInpaint", provider=["3", 0], image=["1", 0], mask=["9", 0], prompt=PROMPT,
                               negative_prompt=NEGATIVE, strength=strength, steps=steps, guidance=guidance, seed=seed,
                               samples=1, keep_unmasked=keep)
        nodes[node + "s"] = api_node(info, "SaveImage", images=[node, 0], filename_prefix=f"imgedit_itest/inp{node}")
    if inpaint_model:
        nodes["22"] = api_node(info, "InpaintModelConditioning", positive=["20", 0], negative=["21", 0],
                               vae=["2", 2], pixels=["1", 0], mask=["9", 0], noise_mask=True)
        positive, negative, latent, model = ["22", 0], ["22", 1], ["22", 2], ["2", 0]
    else:
        nodes["22"] = api_node(info, "VAEEncode", pixels=["1", 0], vae=["2", 2])
        nodes["23"] = api_node(info, "SetLatentNoiseMask", samples=["22", 0], mask=["9", 0])
        nodes["24"] = api_node(info, "DifferentialDiffusion", model=["2", 0])
        positive, negative, latent, model = ["20", 0], ["21", 0], ["23", 0], ["24", 0]
    nodes.update(_core_nodes(info, "30", seed, steps, strength, guidance, "euler", "normal",
                             latent=latent, positive=positive, negative=negative, model=model))
    entry = comfy.client.run(nodes, timeout=300)
    (plain,), (kept,), (core,) = (_saved(comfy, entry, n) for n in ("4s", "6s", "30c"))
    original = np.asarray(Image.open(tmp_path / name).convert("RGB"))
    mask = np.asarray(Image.open(tmp_path / mask_name).convert("L")) / 255.0
    print(f"\ninpaint ({'9' if inpaint_model else '4'} channels): max difference to core {_max_diff(plain, core)}/255")
    assert _max_diff(plain, core) <= 1
    outside, inside = mask == 0, mask == 1
    assert np.array_equal(kept[outside], original[outside]), "keep_unmasked changed pixels outside the mask"
    assert np.abs(kept[inside].astype(int) - original[inside]).mean() > 20, "the masked part did not change"


def test_odd_sizes_and_zero_steps(comfy, tmp_path):
    """67x45 comes back 67x45 (padded to the VAE's multiple and cropped); int(steps*strength) = 0 is the input."""
    info = comfy.object_info
    name = _upload(comfy, tmp_path, "odd.png", _picture(67, 45, seed=4))
    mask_name = _upload(comfy, tmp_path, "odd_mask.png", _mask_picture(67, 45, soft=False))
    nodes = _loader_nodes(info, name, inpaint=True)
    nodes["8"] = api_node(info, "LoadImage", image=mask_name)
    nodes["9"] = api_node(info, "ImageToMask", image=["8", 0], channel="red")
    common = dict(provider=["3", 0], image=["1", 0], prompt=PROMPT, steps=10, seed=9, samples=1)
    nodes["4"] = api_node(info, "ImgEditInpaint", mask=["9", 0], strength=1.0, keep_unmasked=True, **common)
    nodes["5"] = api_node(info, "ImgEditImg2Img", strength=0.7, **common)
    nodes["6"] = api_node(info, "ImgEditImg2Img", strength=0.05, **common)
    for node in ("4", "5", "6"):
        nodes[node + "s"] = api_node(info, "SaveImage", images=[node, 0], filename_prefix=f"imgedit_itest/odd{node}")
    entry = comfy.client.run(nodes, timeout=300)
    original = np.asarray(Image.open(tmp_path / name).convert("RGB"))
    mask = np.asarray(Image.open(tmp_path / mask_name).convert("L")) / 255.0
    (inpainted,), (redone,), (unchanged,) = (_saved(comfy, entry, n + "s") for n in ("4", "5", "6"))
    assert inpainted.shape == redone.shape == unchanged.shape == original.shape == (45, 67, 3)
    assert np.array_equal(inpainted[mask == 0], original[mask == 0])
    assert np.abs(inpainted[mask == 1].astype(int) - original[mask == 1]).mean() > 20
    assert _max_diff(redone, original) > 20
    assert np.array_equal(unchanged, original), "0 denoising steps must return the picture as it was"


def _img2img_graph(comfy, tmp_path, name: str, **edit) -> dict:
    """LoadImage (a new 64x48 picture) + the tiny checkpoint -> ImgEditImg2Img (node "4") -> SaveImage."""
    info = comfy.object_info
    nodes = _loader_nodes(info, _upload(comfy, tmp_path, f"{name}.png", _picture(64, 48, seed=len(name))), inpaint=False)
    nodes["4"] = api_node(info, "ImgEditImg2Img", provider=["3", 0], image=["1", 0], prompt=PROMPT, **edit)
    nodes["5"] = api_node(info, "SaveImage", images=["4", 0], filename_prefix=f"imgedit_itest/ckpt_{name}")
    return nodes


def test_progress_and_previews_count_the_steps_that_run(comfy, tmp_path):
    """steps 12, strength 0.5, 2 samples: two runs of int(12 * 0.5) = 6 steps on the edit node's bar,
    each step with a latent preview (the session runs ComfyUI with --preview-method latent2rgb)."""
    nodes = _img2img_graph(comfy, tmp_path, "progress", strength=0.5, steps=12, seed=3, samples=2)
    with comfy.client.socket() as ws:
        comfy.client.run(nodes, timeout=300)
        time.sleep(0.5)  # the last frames are sent from the server's loop after the prompt ends
        steps = [(p["value"], p["max"]) for p in ws.of_type("progress") if p.get("node") == "4"]
        previews = ws.previews()
    print(f"\nprogress of the edit node: {steps}; {len(previews)} preview frames")
    assert steps == [(v, 6) for v in range(1, 7)] * 2
    assert len(previews) == 12 and all(p[:2] == b"\xff\xd8" for p in previews)  # JPEG, one per step


def interrupt_at_step(comfy, nodes: dict, node: str = "4", step: int = 3) -> tuple[float, int, dict]:
    """Queue ``nodes``, ``POST /interrupt`` once ``node`` reports ``step``: (seconds until ComfyUI said the
    run ended, the last step reported, the prompt's history entry)."""
    with comfy.client.socket() as ws:
        prompt_id = comfy.client.queue_prompt(nodes)
        _wait_until(lambda: any(p.get("node") == node and p["value"] >= step for p in ws.of_type("progress")),
                    timeout=120, poll=0.01)
        asked = time.monotonic()
        comfy.client.post_json("/interrupt", {})
        _wait_until(lambda: ws.of_type("execution_interrupted") or ws.of_type("execution_success"),
                    timeout=30, poll=0.01)
        took = time.monotonic() - asked
        time.sleep(0.5)  # the last frames are sent from the server's loop after the prompt ends
        last_step = max(p["value"] for p in ws.of_type("progress") if p.get("node") == node)
    return took, last_step, comfy.client.history(prompt_id)[prompt_id]


def test_cancel_stops_a_long_run_within_a_second(comfy, tmp_path):
    nodes = _img2img_graph(comfy, tmp_path, "cancel", strength=1.0, steps=150, seed=8, samples=1)
    took, last_step, entry = interrupt_at_step(comfy, nodes)
    assert "execution_interrupted" in [m[0] for m in entry["status"]["messages"]], entry["status"]
    print(f"\ncancel (ComfyUI model): interrupted {took:.2f} s after POST /interrupt, at step {last_step} of 150")
    assert took <= 1.0, f"Cancel took {took:.2f} s"
    assert last_step < 150
    # the sampling thread stopped too: the next run starts and finishes normally
    nodes["4"]["inputs"].update(steps=4, seed=9)
    comfy.client.run(nodes, timeout=120)


def test_prompts_are_encoded_once_per_run(comfy, tmp_path):
    """2 pictures x 3 samples make 6 sampling calls but one encode of each text; a changed prompt is
    encoded again and sampled with its own conditioning, and a new provider (new CLIP) encodes anew."""
    (tmp_path / "comfyui_imgedit").symlink_to(PACK_ROOT, target_is_directory=True)
    comfy_dir, checkpoint = comfy.server.comfy_dir, comfy.models["checkpoint_tiny-sd15"]
    done = subprocess.run([comfy.server.python, str(HERE / "count_encodes.py"), str(checkpoint), str(tmp_path)],
                          cwd=comfy_dir, env={**os.environ, "COMFYUI_DIR": str(comfy_dir)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    first, second, again, new_clip = json.loads(done.stdout.strip().splitlines()[-1])
    for run in (first, second, again, new_clip):
        assert run["pictures"] == 6 and len(run["sampled_with"]) == 6
        assert run["encoded"] == [run["prompt"], "blurry"], run  # once each, not once per sampling call
        assert len(set(run["sampled_with"])) == 1
    assert second["sampled_with"] != first["sampled_with"], "the changed prompt was sampled with stale conditioning"
    assert again["sampled_with"] == first["sampled_with"] == new_clip["sampled_with"]
