"""The local diffusers provider on tiny random-weight models (built by tests/tiny_models.py): runs.

Sizes, batches and seeds, step counts, Cancel, the model cache, LoRA, clip skip, dtype/device and
previews. Discovery, schedulers and imports are in test_local_models.py. Everything loads through
the pack's real loader from a temp ``diffusers``/``checkpoints``/``loras`` tree; nothing is
downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

from comfyui_imgedit.nodes.core.errors import InputError, MissingDependency  # noqa: E402
from comfyui_imgedit.nodes.core.providers import local_diffusers as ld  # noqa: E402
from comfyui_imgedit.nodes.core.providers import local_models as lm  # noqa: E402
from comfyui_imgedit.nodes.core.providers.local_diffusers import LocalDiffusersProvider  # noqa: E402
from comfyui_imgedit.nodes.core.request import Cancelled, Hooks  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_support import EULER, UnetCounter, blob_mask, fresh_cache_one_thread, one_sentence, picture, req  # noqa: E402,F401


# -- running -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sd-inpaint", "tiny-sdxl", "tiny-sd.safetensors"])
def test_img2img_and_inpaint_keep_the_size(roots, name):
    provider = LocalDiffusersProvider(lm.resolve_model(name, roots), scheduler=EULER)
    image = picture(45, 67)
    for mask in (None, blob_mask(45, 67)):
        out = provider.edit(req(image, mask=mask, samples=2), Hooks())
        assert len(out.images) == 2 and out.seeds == [7, 8]
        for im in out.images:
            assert im.shape == (45, 67, 3) and im.dtype == torch.float32
            assert 0.0 <= float(im.min()) and float(im.max()) <= 1.0 and torch.isfinite(im).all()
        assert out.metadata["denoising_steps"] == 5


def test_run_edit_odd_sizes_batches_and_samples(roots):
    edit = pytest.importorskip("comfyui_imgedit.nodes.core.edit")
    provider = LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots), scheduler=EULER)
    batch = torch.stack([picture(45, 67, 1), picture(45, 67, 2)])
    out = edit.run_edit(provider, batch, prompt="a cat", steps=10, strength=0.5, seed=5, samples=3)
    assert out.images.shape == (6, 45, 67, 3)
    assert out.info["seeds"] == [5, 6, 7, 5, 6, 7]
    # picture 1's first sample equals a lone call on picture 1 with the same seed
    alone = provider.edit(req(batch[1], prompt="a cat", steps=10, seed=5), Hooks()).images[0]
    assert torch.allclose(out.images[3], alone, atol=1e-4)
    masked = edit.run_edit(provider, batch, mask=blob_mask(45, 67), prompt="a cat", steps=10, strength=0.8,
                           seed=5, keep_unmasked=True)
    assert masked.images.shape == (2, 45, 67, 3)
    outside = blob_mask(45, 67) == 0
    assert torch.allclose(masked.images[0][outside], batch[0][outside], atol=1e-6)


def test_run_edit_gives_each_picture_its_own_prompt(roots):
    """Two equal pictures, one seed, ``---``-separated prompts: each output is the lone run of its prompt."""
    edit = pytest.importorskip("comfyui_imgedit.nodes.core.edit")
    provider = LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots), scheduler=EULER)
    same = picture(32, 32, 3)[None].expand(2, -1, -1, -1)
    out = edit.run_edit(provider, same, prompt="a red cat\n---\na blue whale on the moon", negative_prompt="dark\n---\nbright",
                        steps=4, strength=0.8, seed=11)
    assert [p["prompt"] for p in out.info["prompts"]] == ["a red cat", "a blue whale on the moon"]
    for item, (prompt, negative) in enumerate([("a red cat", "dark"), ("a blue whale on the moon", "bright")]):
        alone = provider.edit(req(same[item], prompt=prompt, negative_prompt=negative, steps=4, strength=0.8, seed=11), Hooks())
        assert torch.allclose(out.images[item], alone.images[0], atol=1e-4)
    assert not torch.allclose(out.images[0], out.images[1], atol=1e-3)


def test_same_seed_same_pixels_in_any_batch(roots):
    provider = LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots), scheduler="EulerAncestralDiscreteScheduler")
    a = provider.edit(req(samples=3, seed=10), Hooks())
    b = provider.edit(req(samples=3, seed=10), Hooks())
    assert all(torch.equal(x, y) for x, y in zip(a.images, b.images))
    lone = provider.edit(req(samples=1, seed=11), Hooks())
    assert torch.allclose(a.images[1], lone.images[0], atol=1e-4)
    assert not torch.allclose(a.images[0], a.images[1], atol=1e-3)
    # seed None: picked and reported, consecutive per sample
    c = provider.edit(req(samples=2, seed=None), Hooks())
    assert c.seeds[1] == (c.seeds[0] + 1) % 2**32
    again = provider.edit(req(samples=1, seed=c.seeds[0]), Hooks())
    assert torch.allclose(again.images[0], c.images[0], atol=1e-4)
    # seeds wrap at 2**32
    assert provider.edit(req(samples=2, seed=2**32 - 1), Hooks()).seeds == [2**32 - 1, 0]


@pytest.mark.parametrize("steps,strength", [(20, 0.5), (10, 0.75), (7, 0.3), (12, 1.0)])
def test_unet_runs_steps_times_strength(roots, steps, strength):
    provider = LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots), scheduler=EULER)
    done = []
    with UnetCounter(provider) as counter:
        provider.edit(req(steps=steps, strength=strength), Hooks(progress=lambda d, t, s: done.append((d, t))))
    assert counter.calls == int(steps * strength)
    assert done == [(i + 1, int(steps * strength)) for i in range(int(steps * strength))]


def test_strength_below_one_step_returns_the_picture(roots):
    provider = LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots))
    image = picture(45, 67)
    with UnetCounter(provider) as counter:
        out = provider.edit(req(image, steps=10, strength=0.05, samples=2), Hooks())
    assert counter.calls == 0 and len(out.images) == 2 and torch.equal(out.images[1], image)
    assert "unchanged" in out.warnings[0]


def test_cancel_stops_within_one_step(roots):
    provider = LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots), scheduler=EULER)
    seen = []
    hooks = Hooks(progress=lambda d, t, s: seen.append(d), cancelled=lambda: len(seen) >= 2)
    with UnetCounter(provider) as counter:
        with pytest.raises(Cancelled):
            provider.edit(req(steps=20, strength=1.0), hooks)
    assert seen == [1, 2] and counter.calls == 3 < 20
    assert provider.pipeline().interrupt is True
    # cancel before anything runs, and a normal run afterwards
    with pytest.raises(Cancelled):
        provider.edit(req(), Hooks(cancelled=lambda: True))
    assert len(provider.edit(req(), Hooks()).images) == 1


def test_second_run_loads_nothing(roots, monkeypatch):
    import diffusers

    ld.clear_cache()
    provider = LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots), scheduler="DDIMScheduler")
    provider.edit(req(), Hooks())
    assert ld.cache_stats()["loads"] == 1

    def no_loading(*a, **k):
        raise AssertionError("loaded again")

    for cls in (diffusers.AutoPipelineForImage2Image, diffusers.AutoPipelineForInpainting,
                diffusers.StableDiffusionImg2ImgPipeline, diffusers.StableDiffusionInpaintPipeline):
        monkeypatch.setattr(cls, "from_pretrained", no_loading)
    again = LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots), scheduler="DDIMScheduler")
    again.edit(req(), Hooks())
    again.edit(req(mask=blob_mask()), Hooks())  # inpaint shares the img2img pipeline's modules
    stats = ld.cache_stats()
    assert stats["loads"] == 1 and stats["hits"] >= 2
    assert again.pipeline("inpaint").unet is again.pipeline("img2img").unet


def test_lora_strength_and_switching_back(roots, tiny):
    spec = lm.resolve_model("tiny-sd", roots)
    base = LocalDiffusersProvider(spec, scheduler=EULER).edit(req(), Hooks()).images[0]
    lora = str(lm.resolve_lora("tiny-lora.safetensors", roots))
    with_lora = LocalDiffusersProvider(spec, scheduler=EULER, lora_path=lora, lora_strength=1.0).edit(req(), Hooks()).images[0]
    assert not torch.allclose(base, with_lora, atol=1e-3)
    zero = LocalDiffusersProvider(spec, scheduler=EULER, lora_path=lora, lora_strength=0.0).edit(req(), Hooks()).images[0]
    assert torch.allclose(base, zero, atol=1e-5)
    # the inpaint pipeline shares the modules, LoRA included
    masked = req(mask=blob_mask())
    inpaint_lora = LocalDiffusersProvider(spec, scheduler=EULER, lora_path=lora).edit(masked, Hooks()).images[0]
    back = LocalDiffusersProvider(spec, scheduler=EULER).edit(req(), Hooks()).images[0]
    assert torch.equal(base, back)
    inpaint_base = LocalDiffusersProvider(spec, scheduler=EULER).edit(masked, Hooks()).images[0]
    assert not torch.allclose(inpaint_lora, inpaint_base, atol=1e-3)
    # a LoRA for another architecture is refused in one sentence
    with pytest.raises(InputError) as err:
        LocalDiffusersProvider(lm.resolve_model("tiny-sdxl", roots), lora_path=lora).edit(req(), Hooks())
    assert "does not fit" in str(err.value) and "\n" not in str(err.value)
    ok = LocalDiffusersProvider(lm.resolve_model("tiny-sdxl", roots)).edit(req(), Hooks())
    assert len(ok.images) == 1


def test_lora_without_peft_is_one_sentence(roots, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    lora = str(lm.resolve_lora("tiny-lora.safetensors", roots))
    with pytest.raises(MissingDependency, match="peft") as err:
        LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots), lora_path=lora).edit(req(), Hooks())
    assert one_sentence(str(err.value))


def test_clip_skip(roots):
    spec = lm.resolve_model("tiny-sd", roots)
    one = LocalDiffusersProvider(spec, scheduler=EULER, clip_skip=1).edit(req(), Hooks()).images[0]
    two = LocalDiffusersProvider(spec, scheduler=EULER, clip_skip=2).edit(req(), Hooks()).images[0]
    assert not torch.equal(one, two)
    xl = LocalDiffusersProvider(lm.resolve_model("tiny-sdxl", roots), clip_skip=2).edit(req(), Hooks())
    assert len(xl.images) == 1
    with pytest.raises(InputError, match="CLIP layers"):
        LocalDiffusersProvider(spec, clip_skip=3).edit(req(), Hooks())  # the tiny CLIP has 2 layers
    with pytest.raises(InputError, match="clip_skip"):
        LocalDiffusersProvider(spec, clip_skip=0)


def test_dtype_and_device_choices(roots):
    spec = lm.resolve_model("tiny-sd", roots)
    out = LocalDiffusersProvider(spec, dtype="fp16", device="cpu").edit(req(), Hooks())
    assert out.metadata["dtype"] == "float32" and "fp16" in out.warnings[0]
    bf = LocalDiffusersProvider(spec, dtype="bf16", device="cpu").edit(req(), Hooks())
    assert bf.metadata["dtype"] == "bfloat16" and bf.images[0].dtype == torch.float32
    with pytest.raises(InputError, match="dtype"):
        LocalDiffusersProvider(spec, dtype="fp8")
    with pytest.raises(InputError, match="device"):
        LocalDiffusersProvider(spec, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError) as err:
            LocalDiffusersProvider(spec, device="cuda").edit(req(), Hooks())
        assert one_sentence(str(err.value))
    auto = LocalDiffusersProvider(spec, memory=ld.MemoryHooks(default_device=lambda: torch.device("cpu")))
    assert auto.resolve_device_dtype() == (torch.device("cpu"), torch.float32)


def test_preview_hook_gets_each_steps_latents_before_its_progress(roots):
    """The host gets the raw latents and the family (it previews them with its own decoder for that
    latent format) right before the step's progress, so it can send both together."""
    events = []
    provider = LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots), scheduler=EULER)
    hooks = Hooks(preview=lambda latents, family: events.append(("preview", tuple(latents.shape), family)),
                  progress=lambda done, total, text: events.append(("progress", done, total)))
    provider.edit(req(steps=10, strength=0.5), hooks)
    assert events == [e for step in range(1, 6) for e in (("preview", (1, 4, 8, 8), "sd"), ("progress", step, 5))]


def test_bad_request_inputs(roots):
    provider = LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots))
    with pytest.raises(InputError, match="mask"):
        provider.edit(req(mask=torch.ones(10, 10)), Hooks())
    with pytest.raises(InputError, match="image"):
        provider.edit(req(torch.rand(64, 64)), Hooks())
    with pytest.raises(InputError, match="strength"):
        provider.edit(req(strength=1.5), Hooks())
