"""The ImgEditLocalDiffusers node with ComfyUI's modules faked (comfy_api io, folder_paths,
comfy.model_management), so it runs without a ComfyUI checkout. tests/comfyui runs it for real."""

from __future__ import annotations

import enum
import importlib
import sys
import types
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import build_tiny_models  # noqa: E402

from comfyui_imgedit.nodes.core.errors import InputError  # noqa: E402
from comfyui_imgedit.nodes.core.request import EditRequest, Hooks  # noqa: E402


class _Spec:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.id = args[0] if args else kwargs.get("id")


def _fake_io() -> types.ModuleType:
    io = types.ModuleType("comfy_api.latest.io")

    def custom(name):
        return type(name, (), {"io_type": name, "Input": type("Input", (_Spec,), {"io_type": name}),
                               "Output": type("Output", (_Spec,), {"io_type": name})})

    io.Custom = custom
    for name in ("Combo", "Boolean", "Float", "Int", "String", "Image", "Mask"):
        setattr(io, name, custom(name.upper()))
    io.Schema = _Spec
    io.ComfyNode = type("ComfyNode", (), {})
    io.NodeOutput = lambda *args, **kw: args
    return io


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.mktemp("tiny-nodes"), sdxl=False)


@pytest.fixture
def comfy(monkeypatch, tiny):
    """Fake ComfyUI modules; returns (local_nodes module, log of memory-management calls)."""
    log = []
    folders = {"diffusers": [str(tiny["diffusers"])], "checkpoints": [str(tiny["checkpoints"])],
               "loras": [str(tiny["loras"])]}
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.get_folder_paths = lambda name: folders[name]
    mm = types.ModuleType("comfy.model_management")
    mm.VRAMState = enum.Enum("VRAMState", "DISABLED NO_VRAM LOW_VRAM NORMAL_VRAM HIGH_VRAM SHARED")
    mm.vram_state = mm.VRAMState.DISABLED
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.free_memory = lambda n, d: log.append(("free_memory", n, d))
    mm.get_free_memory = lambda d: 8 * 1024**3
    mm.soft_empty_cache = lambda: log.append("soft_empty_cache")
    mm.is_device_cpu = lambda d: torch.device(d).type == "cpu"
    mm.should_use_fp16 = lambda d: True
    mm.should_use_bf16 = lambda d: False
    comfy_pkg = types.ModuleType("comfy")
    comfy_pkg.model_management = mm
    api = types.ModuleType("comfy_api")
    latest = types.ModuleType("comfy_api.latest")
    latest.io = _fake_io()
    for name, module in {"folder_paths": folder_paths, "comfy": comfy_pkg, "comfy.model_management": mm,
                         "comfy_api": api, "comfy_api.latest": latest, "comfy_api.latest.io": latest.io}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "comfyui_imgedit.nodes.local_nodes", raising=False)
    module = importlib.import_module("comfyui_imgedit.nodes.local_nodes")
    yield module, log, folders
    sys.modules.pop("comfyui_imgedit.nodes.local_nodes", None)


def _inputs(schema) -> dict:
    return {spec.id: spec for spec in schema.kwargs["inputs"]}


def test_schema_lists_models_schedulers_and_loras(comfy):
    nodes, _, _ = comfy
    assert [n.__name__ for n in nodes.NODES] == ["ImgEditLocalDiffusers"]
    schema = nodes.ImgEditLocalDiffusers.define_schema()
    assert schema.kwargs["node_id"] == "ImgEditLocalDiffusers"
    assert schema.kwargs["category"] == "ImgEdit/providers"
    inputs = _inputs(schema)
    assert list(inputs) == ["model", "scheduler", "karras_sigmas", "dtype", "device", "lora", "lora_strength", "clip_skip"]
    assert inputs["model"].kwargs["options"] == ["tiny-sd", "tiny-sd-inpaint", "tiny-sd.safetensors"]
    assert inputs["scheduler"].kwargs["options"][0] == "default"
    assert "KarrasVeScheduler" not in inputs["scheduler"].kwargs["options"]
    assert inputs["lora"].kwargs["options"] == ["none", "tiny-lora.safetensors"]
    assert inputs["dtype"].kwargs["options"] == ["auto", "fp16", "bf16", "fp32"]
    assert inputs["device"].kwargs["options"] == ["auto", "cpu", "cuda"]
    assert schema.kwargs["outputs"][0].io_type == "IMGEDIT_PROVIDER"


def test_execute_builds_a_provider_that_runs(comfy):
    nodes, log, _ = comfy
    (provider,) = nodes.ImgEditLocalDiffusers.execute(
        model="tiny-sd", scheduler="EulerDiscreteScheduler", karras_sigmas=True, dtype="auto", device="auto",
        lora="tiny-lora.safetensors", lora_strength=0.5, clip_skip=2)
    assert provider.remote is False and provider.max_concurrency == 1
    assert provider.size_rule.mode == "pad" and provider.size_rule.max_edge is None
    assert provider.describe()["lora"] == "tiny-lora.safetensors"
    assert provider.resolve_device_dtype() == (torch.device("cpu"), torch.float32)
    out = provider.edit(EditRequest("a cat", torch.rand(40, 56, 3), steps=6, strength=0.5, seed=1), Hooks())
    assert out.images[0].shape == (40, 56, 3)
    assert log == []  # a CPU run never asks ComfyUI to free VRAM


def test_memory_hooks_map_to_model_management(comfy):
    nodes, log, _ = comfy
    hooks = nodes.memory_hooks()
    assert hooks.default_device() == torch.device("cpu")
    hooks.free_memory(123, torch.device("cpu"))
    hooks.empty_cache()
    assert log == [("free_memory", 123, torch.device("cpu")), "soft_empty_cache"]
    assert hooks.keep_on_device() is False
    sys.modules["comfy.model_management"].vram_state = sys.modules["comfy.model_management"].VRAMState.HIGH_VRAM
    assert hooks.keep_on_device() is True
    assert hooks.auto_dtype(torch.device("cpu")) == "fp32"
    assert hooks.auto_dtype(torch.device("cuda")) == "fp16"


def test_missing_model_says_where_the_pack_looked(comfy, tmp_path):
    nodes, _, folders = comfy
    with pytest.raises(InputError) as err:
        nodes.ImgEditLocalDiffusers.execute(model="gone", scheduler="default", karras_sigmas=False,
                                            dtype="auto", device="auto")
    assert folders["diffusers"][0] in str(err.value) and "\n" not in str(err.value)
    folders["diffusers"][:] = [str(tmp_path / "none")]
    folders["checkpoints"][:] = [str(tmp_path / "none")]
    inputs = _inputs(nodes.ImgEditLocalDiffusers.define_schema())
    assert inputs["model"].kwargs["options"] == [nodes.NO_MODEL]
    with pytest.raises(InputError, match="no local model is selected"):
        nodes.ImgEditLocalDiffusers.execute(model=nodes.NO_MODEL, scheduler="default", karras_sigmas=False,
                                            dtype="auto", device="auto")
