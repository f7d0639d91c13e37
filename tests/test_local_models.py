"""The local diffusers provider on tiny random-weight models: model discovery and name
resolution, single-file checkpoints and their config donors, the scheduler table, and what a
missing or not-yet-imported diffusers does. Runs are in test_local_diffusers.py.
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
from comfyui_imgedit.nodes.core.request import Hooks  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_support import EULER, UnetCounter, blob_mask, fresh_cache_one_thread, one_sentence, req  # noqa: E402,F401
from tiny_models import build_single_file  # noqa: E402


# -- discovery -----------------------------------------------------------------------------

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


# -- schedulers ----------------------------------------------------------------------------

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


# -- dependencies and imports --------------------------------------------------------------

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
