"""Memory placement of the local provider, without a GPU: the plan, and the order of host calls."""

from __future__ import annotations

import pytest
import torch

from comfyui_imgedit.nodes.core.providers import local_cache as lc
from comfyui_imgedit.nodes.core.providers import local_diffusers as ld
from comfyui_imgedit.nodes.core.providers import local_memory as lmem
from comfyui_imgedit.nodes.core.providers.local_memory import MemoryHooks, MemoryPlan, plan_memory
from comfyui_imgedit.nodes.core.providers.local_models import ModelSpec

GB = 1024**3


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    pytest.importorskip("diffusers")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tiny_models import build_sd

    return build_sd(tmp_path_factory.mktemp("tiny-memory") / "diffusers" / "tiny-sd")


def test_plan_full_when_everything_fits():
    assert plan_memory(2 * GB, GB, GB // 4, GB, free=20 * GB) == MemoryPlan("full")
    assert plan_memory(2 * GB, GB, GB // 4, GB, free=None) == MemoryPlan("full")


def test_plan_slices_when_tight_and_offloads_when_short():
    tight = plan_memory(2 * GB, GB, GB, 3 * GB, free=4 * GB, samples=2)
    assert tight.mode == "full" and tight.attention_slicing and tight.vae_slicing
    offload = plan_memory(6 * GB, 3 * GB, GB // 2, GB, free=5 * GB)
    assert offload.mode == "model_offload"
    seq = plan_memory(6 * GB, 3 * GB, GB // 2, GB, free=2 * GB, samples=1)
    assert seq == MemoryPlan("sequential_offload", attention_slicing=True, vae_slicing=False, vae_tiling=True)


def test_work_estimate_grows_with_size_and_samples():
    small = lmem.estimate_work_bytes("sd", 1, 512, 512, 2)
    big = lmem.estimate_work_bytes("sd", 2, 1024, 1024, 2)
    assert big[0] == pytest.approx(8 * small[0], rel=1e-6) and big[1] == 8 * small[1]
    assert lmem.estimate_work_bytes("sd", 1, 512, 512, 2, guidance=False)[0] == pytest.approx(small[0] / 2, rel=1e-6)


class FakeVae:
    def __init__(self, log):
        self.log = log

    def enable_slicing(self): self.log.append("vae_slicing")
    def disable_slicing(self): pass
    def enable_tiling(self): self.log.append("vae_tiling")
    def disable_tiling(self): pass


class FakePipe:
    def __init__(self, log):
        self.log = log
        self.vae = FakeVae(log)

    def to(self, device): self.log.append(("to", str(device)))
    def enable_model_cpu_offload(self, device): self.log.append(("model_offload", str(device)))
    def enable_sequential_cpu_offload(self, device): self.log.append(("sequential_offload", str(device)))
    def remove_all_hooks(self): self.log.append("remove_hooks")
    def enable_attention_slicing(self): self.log.append("attention_slicing")
    def disable_attention_slicing(self): pass

    def __call__(self, **kwargs):
        self.log.append("run")
        return type("Out", (), {"images": torch.zeros(1, 3, 8, 8)})()


def _entry(device="cuda"):
    spec = ModelSpec("m", "/nowhere", "folder", "sd")
    entry = lc.CacheEntry(("k",), spec, torch.float16, torch.device(device))
    entry.model_bytes, entry.largest_bytes = 2 * GB, GB
    return entry


def _memory(log, free, keep=False):
    return MemoryHooks(
        default_device=lambda: torch.device("cuda"),
        free_memory=lambda n, d: log.append(("free_memory", str(d))),
        free_bytes=lambda d: free,
        empty_cache=lambda: log.append("empty_cache"),
        keep_on_device=lambda: keep,
    )


def _provider(memory):
    provider = object.__new__(ld.LocalDiffusersProvider)
    provider.memory = memory
    return provider


@pytest.mark.parametrize("free,mode", [(40 * GB, "to"), (2 * GB, "model_offload"), (GB // 2, "sequential_offload")])
def test_host_frees_memory_before_the_move_and_gets_the_gpu_back(free, mode):
    log = []
    entry, pipe = _entry(), FakePipe(log)
    _provider(_memory(log, free))._run(entry, pipe, {}, 1, 512, 512, True)
    assert log[0] == ("free_memory", "cuda")
    moved = next(i for i, x in enumerate(log) if isinstance(x, tuple) and x[0] == mode)
    assert log.index("run") > moved
    after = log[log.index("run") + 1:]
    assert ("to", "cpu") in after and after[-1] == "empty_cache" and entry.placement is None


def test_keep_on_device_leaves_a_full_load_on_the_gpu():
    log = []
    entry, pipe = _entry(), FakePipe(log)
    provider = _provider(_memory(log, 40 * GB, keep=True))
    provider._run(entry, pipe, {}, 1, 512, 512, True)
    assert ("to", "cpu") not in log and entry.placement.mode == "full"
    log.clear()
    provider._run(entry, pipe, {}, 1, 512, 512, True)  # already there: only the work is asked for
    assert log[0] == ("free_memory", "cuda") and "remove_hooks" not in log


def test_cpu_runs_never_touch_the_host_memory():
    log = []
    entry, pipe = _entry("cpu"), FakePipe(log)
    _provider(_memory(log, 0))._run(entry, pipe, {}, 1, 64, 64, True)
    assert log == ["run"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("plan", [MemoryPlan("model_offload"), MemoryPlan("full", True, True, True)])
def test_real_pipeline_through_offload_and_slicing_gives_the_same_pixels(tiny_sd, plan):
    """The diffusers calls of a placement, on a real tiny pipeline (model offload works on the CPU too)."""
    from comfyui_imgedit.nodes.core.request import EditRequest, Hooks

    ld.clear_cache()
    folder = tiny_sd
    log = []
    provider = ld.LocalDiffusersProvider(str(folder), scheduler="EulerDiscreteScheduler", device="cpu",
                                         memory=_memory(log, None))
    request = EditRequest("a cat", torch.rand(64, 64, 3), steps=6, strength=0.5, seed=3, samples=2)
    reference = provider.edit(request, Hooks())
    entry = lc.get_entry(provider.spec, torch.float32, torch.device("cpu"))
    pipe = provider.pipeline()
    provider._place(entry, pipe, 2, 64, 64, True, force=plan)
    placed = provider.edit(request, Hooks())  # a CPU entry runs as is: the placement stays on
    provider._release(entry, pipe)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(reference.images, placed.images))
    assert entry.placement is None and not hasattr(pipe.unet, "_hf_hook")
    assert all(p.device.type == "cpu" for p in pipe.unet.parameters())
    again = provider.edit(request, Hooks())
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(reference.images, again.images))


# -- the host's record of cached models (ComfyUI: Unload models, POST /free, room for others) --------

def test_a_tracking_host_claims_instead_of_freeing_before_the_move():
    log = []
    entry, pipe = _entry(), FakePipe(log)
    entry.handle = "ticket"
    memory = _memory(log, 40 * GB)
    memory.claim = lambda handle, work, weights: log.append(("claim", handle, work > 0, weights))
    _provider(memory)._run(entry, pipe, {}, 1, 512, 512, True)
    assert log[0] == ("claim", "ticket", True, 2 * GB) and ("free_memory", "cuda") not in log
    assert log.index(("to", "cuda")) < log.index("run")
    log.clear()
    entry.placement = MemoryPlan("full")  # kept on the GPU since the last run: the weights need nothing more
    _provider(memory)._run(entry, pipe, {}, 1, 512, 512, True)
    assert log[0] == ("claim", "ticket", True, 0)


def _tracking_memory(tracked, claims):
    def track(model):
        tracked.append(model)
        return f"ticket-{len(tracked)}"

    return MemoryHooks(track=track, claim=lambda handle, work, weights: claims.append(handle))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_the_host_is_told_once_per_load_and_its_release_empties_the_cache(tiny_sd):
    from comfyui_imgedit.nodes.core.request import EditRequest, Hooks

    ld.clear_cache()
    tracked, claims = [], []
    provider = ld.LocalDiffusersProvider(str(tiny_sd), device="cpu", memory=_tracking_memory(tracked, claims))
    request = EditRequest("a cat", torch.rand(32, 32, 3), steps=4, strength=0.5, seed=1)
    first = provider.edit(request, Hooks())
    provider.edit(request, Hooks())
    assert [(m.name, m.device.type) for m in tracked] == [("tiny-sd", "cpu")] and tracked[0].nbytes > 0
    assert claims == ["ticket-1", "ticket-1"]  # each run tells the host the model is in use
    assert ld.cache_stats()["models"] == ["tiny-sd"]
    tracked[0].release()
    assert ld.cache_stats()["models"] == [] and ld.cache_stats()["loads"] == 1
    again = provider.edit(request, Hooks())  # loads afresh, and the host hears of it again
    assert ld.cache_stats()["loads"] == 2 and len(tracked) == 2 and claims[-1] == "ticket-2"
    assert torch.allclose(first.images[0], again.images[0], atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_a_release_during_a_run_frees_the_model_when_the_run_ends(tiny_sd):
    from comfyui_imgedit.nodes.core.request import EditRequest, Hooks

    ld.clear_cache()
    tracked = []
    provider = ld.LocalDiffusersProvider(str(tiny_sd), device="cpu", memory=_tracking_memory(tracked, []))
    entries = []

    def progress(done, total, text):
        if done == 2:  # the host frees memory from another thread while this run holds the model
            entry = lc.get_entry(provider.spec, torch.float32, torch.device("cpu"))
            entries.append(entry)
            worker = __import__("threading").Thread(target=tracked[0].release)
            worker.start()
            worker.join()
            assert entry.pipes, "freed under the running pipeline"

    out = provider.edit(EditRequest("a cat", torch.rand(32, 32, 3), steps=8, strength=0.5, seed=1),
                        Hooks(progress=progress))
    assert out.images[0].shape == (32, 32, 3) and torch.isfinite(out.images[0]).all()
    assert ld.cache_stats()["models"] == [] and entries[0].pipes == {} and entries[0].handle is None
