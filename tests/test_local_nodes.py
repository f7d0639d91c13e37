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


class _FakeModelPatcher:
    """ComfyUI's ModelPatcher as far as the tickets use it."""

    def __init__(self, model, load_device, offload_device, size=0):
        self.model, self.load_device, self.offload_device, self.size = model, load_device, offload_device, size
        self.callbacks = {}
        self.loaded = 0

    def loaded_size(self):
        return self.loaded

    def model_size(self):
        return self.size

    def current_loaded_device(self):
        return self.load_device

    def add_callback(self, kind, callback):
        self.callbacks.setdefault(kind, []).append(callback)

    def detach(self, unpatch_all=True):
        for callback in self.callbacks.get("on_detach_after", []):
            callback(self, unpatch_all)


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
    mm.claims = []  # load_models_gpu calls (the tickets of cached pipelines)
    mm.load_models_gpu = lambda models, memory_required=0, force_full_load=False: mm.claims.append(
        (models, memory_required, force_full_load))
    patcher = types.ModuleType("comfy.model_patcher")
    patcher.ModelPatcher = _FakeModelPatcher
    extension = types.ModuleType("comfy.patcher_extension")
    extension.CallbacksMP = types.SimpleNamespace(ON_DETACH="on_detach_after")
    comfy_pkg = types.ModuleType("comfy")
    comfy_pkg.model_management = mm
    api = types.ModuleType("comfy_api")
    latest = types.ModuleType("comfy_api.latest")
    latest.io = _fake_io()
    for name, module in {"folder_paths": folder_paths, "comfy": comfy_pkg, "comfy.model_management": mm,
                         "comfy.model_patcher": patcher, "comfy.patcher_extension": extension,
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


def test_cached_pipelines_are_listed_with_comfyuis_models_and_freed_by_it(comfy):
    """A run lists the pipeline as a ModelPatcher ticket (load_models_gpu, full load); ComfyUI
    unloading the ticket empties the cache, re-listing it (unpatch_all=False) does not."""
    from comfyui_imgedit.nodes.core.providers import local_diffusers as ld

    nodes, log, _ = comfy
    mm = sys.modules["comfy.model_management"]
    ld.clear_cache()
    (provider,) = nodes.ImgEditLocalDiffusers.execute(model="tiny-sd", scheduler="EulerDiscreteScheduler",
                                                      karras_sigmas=False, dtype="auto", device="auto")
    request = EditRequest("a cat", torch.rand(32, 32, 3), steps=4, strength=0.5, seed=1)
    provider.edit(request, Hooks())
    provider.edit(request, Hooks())
    (ticket,), _, full = mm.claims[0]
    assert full and [c[0] for c in mm.claims] == [[ticket], [ticket]]
    assert ticket.load_device == torch.device("cpu") and ticket.size > 1_000_000  # the pipeline's weights
    assert type(ticket.model).__name__ == "ImgEditDiffusersModel" and not list(ticket.model.parameters())
    ticket.detach(unpatch_all=False)
    assert ld.cache_stats()["models"] == ["tiny-sd"]
    ticket.detach(unpatch_all=True)
    assert ld.cache_stats()["models"] == [] and log == []
    # kept alive past its detach (its death would edit ComfyUI's model list mid-walk), until our next call
    from comfyui_imgedit.nodes.runtime import memory as comfy_memory

    assert comfy_memory._UNLOADED == [ticket]
    provider.edit(request, Hooks())
    assert ld.cache_stats()["loads"] == 2 and mm.claims[-1][0] != [ticket] and comfy_memory._UNLOADED == []


def test_pipelines_stay_on_the_gpu_as_comfyuis_models_do(comfy):
    nodes, _, _ = comfy
    mm = sys.modules["comfy.model_management"]
    hooks = nodes.memory_hooks()
    for state, kept in [("NORMAL_VRAM", True), ("HIGH_VRAM", True), ("LOW_VRAM", False), ("NO_VRAM", False)]:
        mm.vram_state = mm.VRAMState[state]
        assert hooks.keep_on_device() is kept, state
    mm.vram_state, mm.DISABLE_SMART_MEMORY = mm.VRAMState.NORMAL_VRAM, True
    assert hooks.keep_on_device() is False


def test_a_claim_adds_the_weights_only_where_comfyui_counts_them_loaded_already(comfy):
    """ComfyUI counts a ticket it does not list as loaded by itself; one it lists as loaded while the
    weights went back to the CPU (after a --lowvram run) must ask for the weights too."""
    from comfyui_imgedit.nodes.runtime import memory as comfy_memory

    mm = sys.modules["comfy.model_management"]
    ticket = _FakeModelPatcher(None, torch.device("cuda"), torch.device("cpu"), size=1000)
    comfy_memory.claim(ticket, 100, 1000)
    ticket.loaded = 1000
    comfy_memory.claim(ticket, 100, 1000)
    comfy_memory.claim(ticket, 100, 0)
    assert [(required, full) for _, required, full in mm.claims] == [(100, True), (1100, True), (100, True)]
