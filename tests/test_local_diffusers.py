"""The local diffusers provider on tiny random-weight models (built by tests/tiny_models.py).

Everything loads through the pack's real loader from a temp ``diffusers``/``checkpoints``/``loras``
tree; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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
from comfyui_imgedit.nodes.core.providers import local_schedulers as schedulers  # noqa: E402
from comfyui_imgedit.nodes.core.providers.local_diffusers import LocalDiffusersProvider  # noqa: E402
from comfyui_imgedit.nodes.core.request import Cancelled, EditRequest, Hooks  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import build_single_file, build_tiny_models  # noqa: E402

EULER = "EulerDiscreteScheduler"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict:
    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def roots(tiny) -> lm.ModelRoots:
    return lm.ModelRoots.of([tiny["diffusers"]], [tiny["checkpoints"]], [tiny["loras"]])


@pytest.fixture(autouse=True, scope="module")
def _fresh_cache_one_thread(one_torch_thread):
    """An empty model cache for this module (and one torch thread, see conftest)."""
    ld.clear_cache()
    yield
    ld.clear_cache()


def picture(h=64, w=64, seed=0) -> torch.Tensor:
    return torch.rand(h, w, 3, generator=torch.Generator().manual_seed(seed))


def blob_mask(h=64, w=64) -> torch.Tensor:
    m = torch.zeros(h, w)
    m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1.0
    return m


def req(image=None, **kw) -> EditRequest:
    base = dict(prompt="a red cat", image=picture() if image is None else image, steps=10, strength=0.5, seed=7)
    base.update(kw)
    return EditRequest(**base)


class UnetCounter:
    def __init__(self, provider, task="img2img"):
        self.unet = provider.pipeline(task).unet
        self.calls = 0

    def __enter__(self):
        self.handle = self.unet.register_forward_pre_hook(self._hook)
        return self

    def _hook(self, *_):
        self.calls += 1

    def __exit__(self, *exc):
        self.handle.remove()


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.rstrip().endswith(".") and len(message) < 400


# -- discovery --------------------------------------------------------------------------------

def test_lists_folders_checkpoints_and_loras(roots):
    assert lm.list_models(roots) == ["tiny-sd", "tiny-sd-inpaint", "tiny-sdxl", "tiny-sd.safetensors"]
    assert lm.list_loras(roots) == ["tiny-lora.safetensors"]
    spec = lm.resolve_model("tiny-sd.safetensors", roots)
    assert spec.kind == "single_file" and spec.family == "sd" and spec.config_path.endswith("tiny-sd")
    assert lm.resolve_model("tiny-sd-inpaint", roots).in_channels == 9
    assert lm.resolve_model("tiny-sdxl", roots).family == "sdxl"


def test_missing_model_names_where_it_looked(roots, tiny):
    with pytest.raises(InputError) as err:
        lm.resolve_model("nope", roots)
    msg = str(err.value)
    assert one_sentence(msg) and str(tiny["diffusers"]) in msg and str(tiny["checkpoints"]) in msg
    with pytest.raises(InputError, match="no local model is selected"):
        lm.resolve_model("", lm.ModelRoots())
    with pytest.raises(InputError, match="does not exist"):
        LocalDiffusersProvider(tiny["root"] / "missing-folder")
    with pytest.raises(InputError, match="lora"):
        lm.resolve_lora("nope.safetensors", roots)


def test_unsupported_and_config_only_folders(tmp_path, tiny):
    diff = tmp_path / "diffusers"
    flux = diff / "some-flux"
    flux.mkdir(parents=True)
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    # a config-only copy of tiny-sd: usable as a config donor, not listed as a model
    donor = diff / "sd-configs"
    shutil.copytree(tiny["sd"], donor, ignore=shutil.ignore_patterns("*.safetensors"))
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    shutil.copy(tiny["checkpoint"], ckpts / "mine.safetensors")
    (ckpts / "junk.safetensors").write_bytes(b"not a safetensors file")
    roots = lm.ModelRoots.of([diff], [ckpts])
    assert lm.list_models(roots) == ["mine.safetensors"]
    with pytest.raises(InputError, match="FluxPipeline"):
        lm.resolve_model("some-flux", roots)
    with pytest.raises(InputError, match="no UNet weights"):
        lm.resolve_model("sd-configs", roots)
    with pytest.raises(InputError, match="not a Stable Diffusion"):
        lm.resolve_model("junk.safetensors", roots)
    # without any donor the checkpoint is not listed, and choosing it says what to do
    bare = lm.ModelRoots.of([tmp_path / "empty"], [ckpts])
    assert lm.list_models(bare) == []
    with pytest.raises(InputError) as err:
        lm.resolve_model("mine.safetensors", bare)
    assert one_sentence(str(err.value)) and "configs" in str(err.value)
    out = LocalDiffusersProvider(lm.resolve_model("mine.safetensors", roots), scheduler=EULER).edit(req(), Hooks())
    assert out.images[0].shape == (64, 64, 3)
    # the same by paths (the CLI's way): a single file needs config_path
    by_path = LocalDiffusersProvider(model_path=str(ckpts / "mine.safetensors"), config_path=str(donor), scheduler=EULER)
    assert torch.equal(by_path.edit(req(), Hooks()).images[0], out.images[0])
    with pytest.raises(InputError, match="config_path"):
        LocalDiffusersProvider(model_path=str(ckpts / "mine.safetensors"))


# -- running ----------------------------------------------------------------------------------

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


@pytest.mark.parametrize("scheduler", schedulers.scheduler_names())
def test_every_listed_scheduler_runs(roots, scheduler):
    """img2img and inpaint (4- and 9-channel) on SD, img2img on SDXL; Karras on SD when offered."""
    info = schedulers.scheduler_info(scheduler)
    runs = [("tiny-sd", None, False), ("tiny-sd", blob_mask(), False), ("tiny-sd-inpaint", blob_mask(), False),
            ("tiny-sdxl", None, False)]
    if info.karras:
        runs += [("tiny-sd", None, True), ("tiny-sd-inpaint", blob_mask(), True)]
    for model, mask, karras in runs:
        provider = LocalDiffusersProvider(lm.resolve_model(model, roots), scheduler=scheduler, karras_sigmas=karras)
        with UnetCounter(provider, "inpaint" if mask is not None else "img2img") as counter:
            out = provider.edit(req(mask=mask, steps=6, strength=0.75), Hooks())
        assert torch.isfinite(out.images[0]).all() and out.warnings == []
        effective = info if info.class_name else schedulers.scheduler_info_for_class(out.metadata["scheduler"])
        assert counter.calls == schedulers.unet_calls(effective, 6, 0.75), (model, karras)


def test_excluded_schedulers_are_refused_with_a_reason():
    for name, reason in schedulers.EXCLUDED_SCHEDULERS.items():
        assert name not in schedulers.scheduler_names()
        with pytest.raises(InputError) as err:
            schedulers.scheduler_info(name)
        assert one_sentence(str(err.value)) and reason in str(err.value)
    with pytest.raises(InputError, match="unknown"):
        schedulers.scheduler_info("FancyScheduler")


def test_karras_on_a_scheduler_without_it_warns(roots):
    provider = LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots), scheduler="DDIMScheduler", karras_sigmas=True)
    assert "karras_sigmas was ignored" in provider.edit(req(), Hooks()).warnings[0]


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


def test_single_file_inpaint_checkpoint_with_an_ordinary_donor(tmp_path, tiny):
    diff = tmp_path / "diffusers"
    shutil.copytree(tiny["sd"], diff / "sd-donor")
    ckpt = build_single_file(tiny["sd_inpaint"], tmp_path / "checkpoints" / "tiny-inpaint.safetensors")
    roots = lm.ModelRoots.of([diff], [ckpt.parent])
    spec = lm.resolve_model("tiny-inpaint.safetensors", roots)
    assert spec.in_channels == 9 and spec.config_path.endswith("sd-donor")
    provider = LocalDiffusersProvider(spec, scheduler=EULER)
    assert provider.pipeline("inpaint").unet.config.in_channels == 9
    out = provider.edit(req(mask=blob_mask()), Hooks())
    assert out.images[0].shape == (64, 64, 3)


def test_bad_request_inputs(roots):
    provider = LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots))
    with pytest.raises(InputError, match="mask"):
        provider.edit(req(mask=torch.ones(10, 10)), Hooks())
    with pytest.raises(InputError, match="image"):
        provider.edit(req(torch.rand(64, 64)), Hooks())
    with pytest.raises(InputError, match="strength"):
        provider.edit(req(strength=1.5), Hooks())


# -- dependencies and imports -------------------------------------------------------------------

def test_missing_diffusers_is_one_sentence(roots, monkeypatch):
    ld.clear_cache()
    monkeypatch.setitem(sys.modules, "diffusers", None)
    provider = LocalDiffusersProvider(lm.resolve_model("tiny-sd", roots))  # construction needs no diffusers
    with pytest.raises(MissingDependency) as err:
        provider.edit(req(), Hooks())
    assert str(err.value) == ld.MISSING_DIFFUSERS and one_sentence(str(err.value))
    assert ld.cache_stats()["entries"] == []  # the failed load left nothing behind


def test_import_and_construction_do_not_import_diffusers(tiny):
    code = (
        "import sys\n"
        "from comfyui_imgedit.nodes.core.providers.local_diffusers import LocalDiffusersProvider\n"
        "from comfyui_imgedit.nodes.core.providers import local_models as lm\n"
        f"roots = lm.ModelRoots.of([{str(tiny['diffusers'])!r}], [{str(tiny['checkpoints'])!r}])\n"
        "names = lm.list_models(roots)\n"
        "LocalDiffusersProvider(lm.resolve_model(names[0], roots), scheduler='UniPCMultistepScheduler')\n"
        "heavy = [m for m in ('diffusers', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "4"
