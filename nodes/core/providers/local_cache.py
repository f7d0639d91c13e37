"""The local provider's model cache and where its pipelines sit.

- **Cache**: a module-level LRU of :data:`CACHE_SIZE` entries keyed by (model path and mtime,
  config donor, dtype, device). The img2img and inpaint pipelines of one entry share their modules
  (``from_pipe``) and schedulers are built once per (name, karras) per entry, so a second run
  loads nothing. Each entry is told to the host once (:attr:`.local_memory.MemoryHooks.track`);
  the host frees it through :func:`release_entry` (drop from the LRU, off the device, freed).
- **Placement** (:class:`PipelinePlacement`, accelerators only): before a pipeline moves onto
  the GPU the host makes room (``claim`` or ``free_memory``), then :func:`.local_memory.plan_memory`
  picks full load or offload; after the run the pipeline goes back to the CPU unless the host
  keeps it there (``keep_on_device``).

diffusers/transformers are imported on the first load, never at import.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from typing import Any, Callable, Optional

import torch

from ..errors import InputError, MissingDependency, ProviderFailed
from .local_memory import MARGIN, MemoryPlan, TrackedModel, estimate_work_bytes, plan_memory, torch_empty_cache
from .local_models import TASK_PIPELINES, ModelSpec, folder_info

CACHE_SIZE = 2
MISSING_DIFFUSERS = ("ImgEditLocalDiffusers needs the optional diffusers packages: with ComfyUI's Python run "
                     "'pip install -r requirements-diffusers.txt' in the comfyui-imgedit folder "
                     "(or 'pip install comfyui-imgedit[diffusers]').")


def import_diffusers():
    """Import diffusers (and check transformers) or raise :class:`MissingDependency`."""
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401 - checked here, used by diffusers
    except ImportError as exc:
        raise MissingDependency(MISSING_DIFFUSERS) from exc
    return diffusers


def short_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300].rstrip(".")


def file_stamp(path: str) -> int:
    target = os.path.join(path, "model_index.json") if os.path.isdir(path) else path
    try:
        return os.stat(target).st_mtime_ns
    except OSError:
        return 0


class CacheEntry:
    """One loaded model: its pipelines (sharing modules), schedulers, LoRA state and placement."""

    def __init__(self, key: tuple, spec: ModelSpec, dtype: torch.dtype, device: torch.device):
        self.key = key
        self.spec = spec
        self.dtype = dtype
        self.device = device
        self.pipes: dict[str, Any] = {}
        self.lock = threading.RLock()
        self.base_scheduler = None
        self.schedulers: dict[tuple, Any] = {}
        self.lora: Optional[tuple] = None  # (path, mtime_ns)
        self.placement: Optional[MemoryPlan] = None  # how it sits on the accelerator, None = CPU
        self.model_bytes = 0
        self.largest_bytes = 0
        self.handle: Any = None  # the host's record of this model (MemoryHooks.track)
        self.released = False  # the host took it back while a run held it: free it after the run

    def any_pipe(self):
        return next(iter(self.pipes.values()))


_CACHE: "OrderedDict[tuple, CacheEntry]" = OrderedDict()
_CACHE_LOCK = threading.RLock()
_STATS = {"loads": 0, "hits": 0}


def cache_stats() -> dict:
    """Loads and cache hits since start (or the last :func:`clear_cache`), the cached keys and
    the names of the cached models."""
    with _CACHE_LOCK:
        return {**_STATS, "entries": list(_CACHE), "models": [e.spec.name for e in _CACHE.values()]}


def clear_cache() -> None:
    """Drop every cached pipeline (frees its RAM/VRAM once nothing else holds it)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _STATS.update(loads=0, hits=0)
    torch_empty_cache()


def release_entry(entry: CacheEntry) -> None:
    """The host takes ``entry``'s memory back: drop it from the cache, move it off the device and
    let it be freed. A run holding the entry keeps it until it ends, then frees it (never blocks,
    so two hosts' threads freeing each other's models cannot deadlock)."""
    with _CACHE_LOCK:
        if _CACHE.get(entry.key) is entry:
            del _CACHE[entry.key]
    entry.released = True
    if entry.lock.acquire(blocking=False):
        try:
            _free(entry)
        finally:
            entry.lock.release()


def _free(entry: CacheEntry) -> None:
    if entry.pipes and entry.placement is not None:
        pipe = entry.any_pipe()
        if entry.placement.mode != "full":
            pipe.remove_all_hooks()
        pipe.to("cpu")
    entry.placement = None
    entry.pipes.clear()
    entry.schedulers.clear()
    entry.base_scheduler = None
    entry.handle = None
    torch_empty_cache()


def _releaser(entry: CacheEntry) -> Callable[[], None]:
    """``release_entry`` for the host, holding the entry weakly (the host's record must not keep
    an evicted entry alive)."""
    ref = weakref.ref(entry)

    def release() -> None:
        alive = ref()
        if alive is not None:
            release_entry(alive)

    return release


def get_entry(spec: ModelSpec, dtype: torch.dtype, device: torch.device) -> CacheEntry:
    key = (os.path.realpath(spec.path), file_stamp(spec.path), spec.config_path, str(dtype), str(device))
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is not None:
            _CACHE.move_to_end(key)
            if entry.pipes:
                _STATS["hits"] += 1
            return entry
        entry = CacheEntry(key, spec, dtype, device)
        _CACHE[key] = entry
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return entry


def pipe_for(entry: CacheEntry, task: str):
    """The entry's pipeline for ``task``, loading the model on first use and sharing modules after."""
    pipe = entry.pipes.get(task)
    if pipe is not None:
        return pipe
    if not entry.pipes:
        try:
            pipe = _load_pipeline(entry.spec, task, entry.dtype)
        except BaseException:
            with _CACHE_LOCK:
                if _CACHE.get(entry.key) is entry:
                    del _CACHE[entry.key]
            raise
        with _CACHE_LOCK:
            _STATS["loads"] += 1
        entry.base_scheduler = pipe.scheduler
        modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
        entry.model_bytes = sum(_module_bytes(m) for m in modules)
        entry.largest_bytes = max((_module_bytes(m) for m in modules), default=0)
    else:
        diffusers = import_diffusers()
        auto = diffusers.AutoPipelineForInpainting if task == "inpaint" else diffusers.AutoPipelineForImage2Image
        pipe = auto.from_pipe(entry.any_pipe())
    pipe.set_progress_bar_config(disable=True)
    entry.pipes[task] = pipe
    return pipe


def _module_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def _weights_variant(folder: str) -> Optional[str]:
    """'fp16' when the UNet folder holds only fp16-variant weights, else None."""
    try:
        names = os.listdir(os.path.join(folder, "unet"))
    except OSError:
        return None
    plain = {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
             "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin.index.json"}
    if plain & set(names):
        return None
    return "fp16" if any(".fp16." in n for n in names) else None


def _dtype_kwarg(diffusers) -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (0.36+ warn on the old name)."""
    try:
        from diffusers.utils import deprecation_utils

        return "dtype" if hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE") else "torch_dtype"
    except ImportError:  # pragma: no cover - old diffusers
        return "torch_dtype"


def _load_pipeline(spec: ModelSpec, task: str, dtype: torch.dtype):
    """Load the pipeline for ``task`` ("img2img" or "inpaint") from disk, on the CPU."""
    diffusers = import_diffusers()
    dtype_kw = _dtype_kwarg(diffusers)
    try:
        if spec.kind == "folder":
            cls = diffusers.AutoPipelineForInpainting if task == "inpaint" else diffusers.AutoPipelineForImage2Image
            kwargs: dict[str, Any] = {dtype_kw: dtype, "local_files_only": True}
            if spec.family == "sd":
                kwargs.update(safety_checker=None, requires_safety_checker=False)
            variant = _weights_variant(spec.path)
            if variant:
                kwargs["variant"] = variant
            return cls.from_pretrained(spec.path, **kwargs)
        cls = getattr(diffusers, TASK_PIPELINES[spec.family][1 if task == "inpaint" else 0])
        kwargs = {"config": spec.config_path, "local_files_only": True, dtype_kw: dtype}
        if spec.family == "sd":
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        donor = spec.config_path
        donor_info = folder_info(donor) if donor else None
        if donor_info and donor_info.signature and donor_info.signature.in_channels != spec.in_channels:
            # the donor's UNet config has another conv_in width (e.g. an inpainting checkpoint with an
            # ordinary SD donor): build the UNet with the checkpoint's channel count
            from diffusers.loaders.single_file_utils import load_single_file_checkpoint

            checkpoint = load_single_file_checkpoint(spec.path, local_files_only=True)
            kwargs["unet"] = diffusers.UNet2DConditionModel.from_single_file(
                checkpoint, config=donor, subfolder="unet", in_channels=spec.in_channels,
                local_files_only=True, **{dtype_kw: dtype})
            del checkpoint
        return cls.from_single_file(spec.path, **kwargs)
    except (MissingDependency, InputError):
        raise
    except Exception as exc:  # diffusers raises many types for broken or unexpected files
        raise ProviderFailed(f"Could not load local model {spec.name}: {short_error(exc)}.", provider="local") from exc


class PipelinePlacement:
    """Where a cached pipeline runs: the provider's mixin (it sets ``self.memory``, MemoryHooks)."""

    memory: Any

    def _track(self, entry: CacheEntry) -> None:
        """Tell the host about a freshly loaded entry, once."""
        if entry.handle is None and entry.pipes:
            entry.handle = self.memory.track(
                TrackedModel(entry.spec.name, entry.device, entry.model_bytes, release=_releaser(entry)))

    def _claims(self, entry: CacheEntry) -> bool:
        return self.memory.claim is not None and entry.handle is not None

    def _run(self, entry: CacheEntry, pipe, kwargs: dict, n: int, width: int, height: int, cfg: bool):
        device = entry.device
        if device.type == "cpu":
            if self._claims(entry):
                self.memory.claim(entry.handle, 0, 0)  # listed with the host's models, so the host can free it
            try:
                return pipe(**kwargs).images
            finally:
                if entry.released:
                    _free(entry)
        try:
            self._place(entry, pipe, n, width, height, cfg)
            try:
                return pipe(**kwargs).images
            except torch.cuda.OutOfMemoryError:
                # one retry with everything that saves memory
                self._place(entry, pipe, n, width, height, cfg,
                            force=MemoryPlan("sequential_offload", True, n > 1, True))
                return pipe(**kwargs).images
        finally:
            self._release(entry, pipe)

    def _place(self, entry: CacheEntry, pipe, n: int, width: int, height: int, cfg: bool,
               force: Optional[MemoryPlan] = None) -> None:
        device, mem = entry.device, self.memory
        size = torch.empty((), dtype=entry.dtype).element_size()
        unet_b, decode_b = estimate_work_bytes(entry.spec.family, n, width, height, size, cfg)
        if force is None:
            on_device = entry.placement is not None and entry.placement.mode == "full"
            if self._claims(entry):
                # the host frees by its own accounting
                mem.claim(entry.handle, unet_b + MARGIN, 0 if on_device else entry.model_bytes)
            else:
                mem.free_memory(unet_b + (0 if on_device else entry.model_bytes) + MARGIN, device)
            free = mem.free_bytes(device)
            if free is not None and on_device:
                free += entry.model_bytes
            plan = plan_memory(entry.model_bytes, entry.largest_bytes, unet_b, decode_b, free, n)
        else:
            mem.free_memory(10**15, device)
            mem.empty_cache()
            plan = force
        if entry.placement is not None and entry.placement.mode != "full":
            pipe.remove_all_hooks()
        if plan.mode == "full":
            pipe.to(device)
        elif plan.mode == "model_offload":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.enable_sequential_cpu_offload(device=device)
        if plan.attention_slicing:
            pipe.enable_attention_slicing()
        else:
            pipe.disable_attention_slicing()
        vae = pipe.vae
        vae.enable_slicing() if plan.vae_slicing else vae.disable_slicing()
        vae.enable_tiling() if plan.vae_tiling else vae.disable_tiling()
        entry.placement = plan

    def _release(self, entry: CacheEntry, pipe) -> None:
        if entry.released:
            _free(entry)
            return
        if entry.placement is None:
            return
        if self.memory.keep_on_device() and entry.placement.mode == "full":
            return
        if entry.placement.mode != "full":
            pipe.remove_all_hooks()
        pipe.to("cpu")
        entry.placement = None
        self.memory.empty_cache()
