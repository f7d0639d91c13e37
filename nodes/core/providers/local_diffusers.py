"""Local img2img and inpainting with diffusers: :class:`LocalDiffusersProvider`.

The provider runs one picture per :meth:`LocalDiffusersProvider.edit` (``request.samples`` images
from it) through diffusers' ``AutoPipelineForImage2Image`` / ``AutoPipelineForInpainting`` and
fulfils the :class:`~nodes.core.request.Provider` contract, so the same orchestrator
(``nodes.core.edit.run_edit``) drives it and the remote providers.

- **Loading**: diffusers folders with ``from_pretrained(local_files_only=True)``; single-file
  checkpoints with ``from_single_file(config=<local diffusers folder>, local_files_only=True)``
  (see :mod:`.local_models`). Nothing is ever downloaded. diffusers/transformers are imported on
  the first :meth:`edit`, never at import or construction.
- **Cache**: a module-level LRU of :data:`CACHE_SIZE` entries keyed by (model path and mtime,
  dtype, device). The img2img and inpaint pipelines of one entry share their modules
  (``from_pipe``), and schedulers are built once per (name, karras) per entry, so a second run
  loads nothing.
- **Seeds**: one CPU ``torch.Generator`` per sample; sample ``i`` uses ``(seed + i) mod 2**32``,
  so a seed gives the same pixels whether its sample runs alone or in a batch. ``seed=None``
  picks one at random and reports it in :attr:`EditResult.seeds`.
- **Steps**: ``int(steps * strength)`` denoising steps (diffusers' img2img rule); the UNet runs
  once per step for first-order schedulers (see :func:`.local_models.unet_calls`).
- **Inpaint models**: 9-channel inpainting UNets and ordinary 4-channel ones both run inpaint
  (diffusers blends the 4-channel case each step). img2img on a 9-channel model runs its inpaint
  pipeline with a full mask.
- **Hooks**: ``hooks.progress(i, total, "")`` per denoising step from ``callback_on_step_end``;
  ``hooks.cancelled()`` is checked at the same point and sets the pipeline's interrupt flag, then
  raises :class:`~nodes.core.request.Cancelled`; ``hooks.preview`` (if set) gets a cheap
  latent-space preview ``[h, w, 3]`` at latent resolution.
- **Memory** (accelerators only): before moving a pipeline onto the GPU the provider asks the host
  (:class:`MemoryHooks`) to free what the run needs, then picks full load, model CPU offload or
  sequential offload, with attention slicing / VAE slicing and tiling when VRAM is short
  (:func:`plan_memory`). After the run the pipeline goes back to the CPU unless the host says
  to keep it (``keep_on_device``).

This module imports no ComfyUI module; the node layer passes ComfyUI's hooks in.
"""

from __future__ import annotations

import inspect
import os
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from ..errors import InputError, MissingDependency, ProviderFailed
from ..request import SEED_MAX, Cancelled, EditRequest, EditResult, Hooks, Provider, SizeRule
from .local_models import (
    TASK_PIPELINES,
    ModelSpec,
    SchedulerInfo,
    denoising_steps,
    scheduler_info,
)

DTYPES = ("auto", "fp16", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
CACHE_SIZE = 2
MAX_SAMPLES_PER_CALL = 4
CLIP_SKIP_MAX = 12
_TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
_MB = 1024 * 1024
_MARGIN = 512 * _MB

# Latent -> RGB factors for step previews (the linear approximations ComfyUI also uses).
_LATENT_RGB = {
    "sd": (torch.tensor([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350],
                         [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]]), torch.zeros(3)),
    "sdxl": (torch.tensor([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068],
                           [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]]),
             torch.tensor([0.1084, -0.0175, -0.0011])),
}

MISSING_DIFFUSERS = ("Local editing needs the diffusers and transformers packages: run "
                     "'pip install -r requirements.txt' in the comfyui-imgedit folder.")


def import_diffusers():
    """Import diffusers (and check transformers) or raise :class:`MissingDependency`."""
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(MISSING_DIFFUSERS) from exc
    return diffusers


# --------------------------------------------------------------------------------------------
# memory

def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _torch_free_bytes(device: torch.device) -> Optional[int]:
    if device.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return None


def _torch_empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class MemoryHooks:
    """The host's say in device memory (ComfyUI's model management, passed in by the node layer).

    - ``default_device()``: the device ``device="auto"`` means (ComfyUI's torch device).
    - ``free_memory(nbytes, device)``: make ``nbytes`` free on ``device`` (unload other models).
    - ``free_bytes(device)``: free memory on ``device`` now, or None if unknown.
    - ``empty_cache()``: give cached allocator blocks back.
    - ``keep_on_device()``: True to leave the pipeline on the GPU after a run (the host has VRAM
      to spare); False moves it back to the CPU so the host's own models get the VRAM.
    - ``auto_dtype(device)``: "fp16", "bf16" or "fp32" for ``dtype="auto"`` on an accelerator
      (None: fp16); the CPU always gets fp32.
    """

    default_device: Callable[[], Any] = _default_device
    free_memory: Callable[[int, Any], None] = lambda nbytes, device: None
    free_bytes: Callable[[Any], Optional[int]] = _torch_free_bytes
    empty_cache: Callable[[], None] = _torch_empty_cache
    keep_on_device: Callable[[], bool] = lambda: False
    auto_dtype: Optional[Callable[[Any], str]] = None


@dataclass(frozen=True)
class MemoryPlan:
    """How to place a pipeline on an accelerator for one run."""

    mode: str = "full"  # "full", "model_offload" (one component at a time), "sequential_offload"
    attention_slicing: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False


def estimate_work_bytes(family: str, samples: int, width: int, height: int, dtype_size: int,
                        guidance: bool = True) -> tuple[int, int]:
    """(UNet activations, VAE decode) bytes of a run, after ComfyUI's estimates for SD models."""
    latent_area = (width // 8) * (height // 8)
    batch = samples * (2 if guidance else 1)
    factor = 1.5 if family == "sdxl" else 1.0
    unet = int(batch * latent_area * dtype_size * 0.02 * factor * _MB)
    decode = int(2178 * latent_area * 64 * dtype_size * samples)
    return unet, decode


def plan_memory(model_bytes: int, largest_bytes: int, unet_bytes: int, decode_bytes: int,
                free: Optional[int], samples: int = 1) -> MemoryPlan:
    """Choose full load or offload, and slicing/tiling, from the free memory after freeing.

    ``free`` None (unknown) means full load. Full load needs the weights plus the UNet
    activations plus a margin; when the VAE decode would not fit next to the weights the VAE
    decodes in tiles (and one sample at a time).
    """
    if free is None:
        return MemoryPlan()
    if free >= model_bytes + unet_bytes + _MARGIN:
        left = free - model_bytes - _MARGIN
        tight = left < 2 * unet_bytes
        decode_short = left < decode_bytes
        return MemoryPlan("full", attention_slicing=tight, vae_slicing=decode_short and samples > 1,
                          vae_tiling=decode_short and left < decode_bytes / max(samples, 1))
    if free >= largest_bytes + unet_bytes + _MARGIN:
        left = free - largest_bytes - _MARGIN
        decode_short = left < decode_bytes
        return MemoryPlan("model_offload", attention_slicing=left < 2 * unet_bytes,
                          vae_slicing=decode_short and samples > 1,
                          vae_tiling=decode_short and left < decode_bytes / max(samples, 1))
    return MemoryPlan("sequential_offload", attention_slicing=True, vae_slicing=samples > 1, vae_tiling=True)


# --------------------------------------------------------------------------------------------
# cache

class _Entry:
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

    def any_pipe(self):
        return next(iter(self.pipes.values()))


_CACHE: "OrderedDict[tuple, _Entry]" = OrderedDict()
_CACHE_LOCK = threading.RLock()
_STATS = {"loads": 0, "hits": 0}


def cache_stats() -> dict:
    """Loads and cache hits since start (or the last :func:`clear_cache`), and the cached keys."""
    with _CACHE_LOCK:
        return {**_STATS, "entries": [k for k in _CACHE]}


def clear_cache() -> None:
    """Drop every cached pipeline (frees its RAM/VRAM once nothing else holds it)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _STATS.update(loads=0, hits=0)
    _torch_empty_cache()


def _module_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def _file_stamp(path: str) -> int:
    target = os.path.join(path, "model_index.json") if os.path.isdir(path) else path
    try:
        return os.stat(target).st_mtime_ns
    except OSError:
        return 0


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
        from .local_models import folder_info

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
        raise ProviderFailed(f"Could not load local model {spec.name}: {_short(exc)}.", provider="local") from exc


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300].rstrip(".")


def _get_entry(spec: ModelSpec, dtype: torch.dtype, device: torch.device) -> _Entry:
    key = (os.path.realpath(spec.path), _file_stamp(spec.path), spec.config_path, str(dtype), str(device))
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is not None:
            _CACHE.move_to_end(key)
            if entry.pipes:
                _STATS["hits"] += 1
            return entry
        entry = _Entry(key, spec, dtype, device)
        _CACHE[key] = entry
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return entry


def _pipe_for(entry: _Entry, task: str):
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


# --------------------------------------------------------------------------------------------
# the provider

@dataclass
class _RunState:
    warnings: list = field(default_factory=list)


class LocalDiffusersProvider(Provider):
    """Runs img2img/inpaint on a local SD 1.x/2.x or SDXL model (see the module doc).

    Parameters are the provider node's inputs: ``model_path`` is a :class:`ModelSpec` (from
    :func:`.local_models.resolve_model`), a path to a diffusers folder, or a path to a single-file
    ``.safetensors`` checkpoint together with ``config_path``, a diffusers folder of the same kind
    whose configs and tokenizer it borrows; ``scheduler`` a name from
    :data:`.local_models.SCHEDULERS`; ``dtype`` auto|fp16|bf16|fp32 and ``device`` auto|cpu|cuda
    (auto: ``memory.default_device()``; auto dtype is fp16 on accelerators and fp32 on the CPU;
    fp16 asked on the CPU runs in fp32 with a warning); ``lora_path`` an optional LoRA file applied
    with ``lora_strength``; ``clip_skip`` counts like A1111 and ModelsLab (1 = the last CLIP layer,
    2 = the one before, ...).
    """

    name = "local"
    max_samples_per_call = MAX_SAMPLES_PER_CALL
    max_concurrency = 1
    size_rule = SizeRule(max_edge=None, multiple=8, mode="pad")
    remote = False

    def __init__(self, model_path, *, config_path: Optional[str] = None, scheduler: str = "default",
                 karras_sigmas: bool = False, dtype: str = "auto", device: str = "auto",
                 lora_path: Optional[str] = None, lora_strength: float = 1.0, clip_skip: int = 1,
                 memory: Optional[MemoryHooks] = None):
        self.spec = self._spec(model_path, config_path)
        self.scheduler_info: SchedulerInfo = scheduler_info(scheduler)
        self.karras_sigmas = bool(karras_sigmas)
        if dtype not in DTYPES:
            raise InputError(f"dtype: '{dtype}' is not one of {', '.join(DTYPES)}.")
        if device not in DEVICES:
            raise InputError(f"device: '{device}' is not one of {', '.join(DEVICES)}.")
        self.dtype_name = dtype
        self.device_name = device
        if lora_path is not None and not os.path.isfile(lora_path):
            raise InputError(f"lora: the file {lora_path} does not exist.")
        self.lora_path = lora_path
        self.lora_strength = float(lora_strength)
        if not 1 <= int(clip_skip) <= CLIP_SKIP_MAX:
            raise InputError(f"clip_skip: {clip_skip} is outside 1..{CLIP_SKIP_MAX} (1 = the last CLIP layer).")
        self.clip_skip = int(clip_skip)
        self.memory = memory or MemoryHooks()

    @staticmethod
    def _spec(model, config_path: Optional[str] = None) -> ModelSpec:
        from .local_models import checkpoint_signature, folder_info

        if isinstance(model, ModelSpec):
            return model
        path = os.fspath(model)
        if os.path.isfile(path):
            sig = checkpoint_signature(path)
            if sig is None:
                raise InputError(f"model: {path} is not a Stable Diffusion 1.x/2.x or SDXL .safetensors checkpoint "
                                 "with its text encoder and VAE.")
            donor = folder_info(os.fspath(config_path)) if config_path else None
            if donor is None or donor.signature is None or not donor.signature.same_arch(sig):
                raise InputError(f"model: the single file {os.path.basename(path)} ({sig.describe()}) needs "
                                 "config_path: a diffusers folder of the same kind (configs and tokenizer are enough).")
            return ModelSpec(os.path.basename(path), path, "single_file", sig.family, sig.in_channels,
                             os.fspath(config_path), sig)
        if os.path.isdir(path):
            info = folder_info(path)
            if info is None:
                raise InputError(f"model: {path} has no model_index.json, so it is not a diffusers model folder.")
            if not info.family:
                raise InputError(f"model: {path} is a {info.class_name or 'unknown'} pipeline; local editing runs "
                                 "Stable Diffusion 1.x/2.x and SDXL models.")
            sig = info.signature
            return ModelSpec(os.path.basename(path.rstrip("/\\")), path, "folder", info.family,
                             sig.in_channels if sig else 4, None, sig)
        raise InputError(f"model: {path} does not exist.")

    # -- facts --------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.name,
            "model": self.spec.name,
            "scheduler": self.scheduler_info.name,
            "karras_sigmas": self.karras_sigmas,
            "dtype": self.dtype_name,
            "device": self.device_name,
            "lora": os.path.basename(self.lora_path) if self.lora_path else None,
            "lora_strength": self.lora_strength if self.lora_path else None,
            "clip_skip": self.clip_skip,
        }

    def resolve_device_dtype(self, warnings: Optional[list] = None) -> tuple[torch.device, torch.dtype]:
        """The torch device and dtype this provider runs with (see the class doc)."""
        warnings = warnings if warnings is not None else []
        if self.device_name == "auto":
            device = torch.device(self.memory.default_device())
        elif self.device_name == "cuda":
            if not torch.cuda.is_available():
                raise InputError("device: cuda was chosen but PyTorch sees no CUDA GPU; choose auto or cpu.")
            device = torch.device("cuda", torch.cuda.current_device())
        else:
            device = torch.device("cpu")
        on_cpu = device.type == "cpu"
        name = self.dtype_name
        if name == "auto":
            name = "fp32" if on_cpu else (self.memory.auto_dtype(device) if self.memory.auto_dtype else "fp16")
            name = name if name in _TORCH_DTYPES else "fp16"
        elif name == "fp16" and on_cpu:
            warnings.append("fp16 is not usable on the CPU; ran in fp32.")
            name = "fp32"
        elif name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            warnings.append("this GPU has no bf16; ran in fp16.")
            name = "fp16"
        return device, _TORCH_DTYPES[name]

    def pipeline(self, task: str = "img2img"):
        """The cached diffusers pipeline this provider runs for ``task`` ("img2img" or "inpaint"),
        loading it on first use (for benches, tests and advanced scripting)."""
        if task not in ("img2img", "inpaint"):
            raise InputError(f"task: '{task}' is not img2img or inpaint.")
        device, dtype = self.resolve_device_dtype()
        entry = _get_entry(self.spec, dtype, device)
        with entry.lock:
            return _pipe_for(entry, "inpaint" if self.spec.is_inpaint_model else task)

    # -- the run ------------------------------------------------------------------------------

    def edit(self, request: EditRequest, hooks: Hooks) -> EditResult:
        hooks = hooks or Hooks()
        hooks.check_cancelled()
        state = _RunState()
        n = int(request.samples)
        if n < 1:
            raise InputError("samples: must be at least 1.")
        steps = int(request.steps)
        if steps < 1:
            raise InputError("steps: must be at least 1.")
        if not 0.0 <= float(request.strength) <= 1.0:
            raise InputError(f"strength: {request.strength} is outside 0..1.")
        image = request.image
        if image.dim() != 3 or image.shape[-1] != 3:
            raise InputError(f"image: expected one RGB picture [H, W, 3], got shape {list(image.shape)}.")
        mask = request.mask
        if mask is not None and tuple(mask.shape) != tuple(image.shape[:2]):
            raise InputError(f"mask: its size {list(mask.shape)} differs from the image's {list(image.shape[:2])}.")
        if denoising_steps(steps, request.strength) < 1:
            # int(steps x strength) = 0: no denoising step would run, so the picture stays as it is
            seeds = self._seeds(request.seed, n)
            kept = image.detach().to("cpu", torch.float32).clamp(0, 1)
            return EditResult(images=[kept.clone() for _ in range(n)], seeds=seeds,
                              metadata={"provider": self.name, "model": self.spec.name, "denoising_steps": 0},
                              warnings=[f"strength {request.strength} x {steps} steps is less than one denoising "
                                        "step; the picture is returned unchanged."])

        device, dtype = self.resolve_device_dtype(state.warnings)
        entry = _get_entry(self.spec, dtype, device)
        with entry.lock:
            task = "inpaint" if (mask is not None or self.spec.is_inpaint_model) else "img2img"
            pipe = _pipe_for(entry, task)
            hooks.check_cancelled()
            scheduler = self._scheduler(entry, state)
            if pipe.scheduler is not scheduler:  # (diffusers re-registers its config on every assignment)
                pipe.scheduler = scheduler
            self._apply_lora(entry, pipe)
            clip_skip = self._diffusers_clip_skip(pipe)
            seeds = self._seeds(request.seed, n)
            height, width = int(image.shape[0]), int(image.shape[1])
            img, msk = self._inputs(image, mask, task)
            kwargs = dict(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt or None,
                image=img,
                strength=float(request.strength),
                num_inference_steps=steps,
                guidance_scale=float(request.guidance),
                num_images_per_prompt=n,
                generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                output_type="pt",
                callback_on_step_end=self._step_callback(hooks, entry.spec.family),
                clip_skip=clip_skip,
            )
            if task == "inpaint":
                kwargs.update(mask_image=msk, height=img.shape[-2], width=img.shape[-1])
            out = self._run(entry, pipe, kwargs, n, img.shape[-1], img.shape[-2], request.guidance > 1.0)
        images = [o.permute(1, 2, 0)[:height, :width].float().clamp(0, 1).cpu().contiguous() for o in out]
        return EditResult(
            images=images,
            seeds=list(seeds),
            metadata={"provider": self.name, "model": self.spec.name, "scheduler": type(scheduler).__name__,
                      "denoising_steps": denoising_steps(steps, request.strength), "device": str(device),
                      "dtype": str(dtype).replace("torch.", "")},
            warnings=state.warnings,
        )

    # -- pieces -------------------------------------------------------------------------------

    @staticmethod
    def _seeds(seed: Optional[int], n: int) -> list[int]:
        base = random.SystemRandom().randint(0, SEED_MAX) if seed is None else int(seed)
        return [(base + i) & SEED_MAX for i in range(n)]

    @staticmethod
    def _inputs(image: torch.Tensor, mask: Optional[torch.Tensor], task: str):
        """[H,W,3] 0..1 -> [1,3,H',W'] padded (edge) to a multiple of 8; mask -> [1,1,H',W'] (0 pad)."""
        h, w = int(image.shape[0]), int(image.shape[1])
        ph, pw = (-h) % 8, (-w) % 8
        img = image.detach().to("cpu", torch.float32).clamp(0, 1).permute(2, 0, 1).unsqueeze(0)
        if ph or pw:
            img = torch.nn.functional.pad(img, (0, pw, 0, ph), mode="replicate")
        msk = None
        if task == "inpaint":
            if mask is None:  # img2img on an inpainting model: repaint everything
                msk = torch.ones(1, 1, h + ph, w + pw)
            else:
                msk = mask.detach().to("cpu", torch.float32).clamp(0, 1)[None, None]
                if ph or pw:
                    msk = torch.nn.functional.pad(msk, (0, pw, 0, ph), value=0.0)
        return img.contiguous(), msk

    def _scheduler(self, entry: _Entry, state: _RunState):
        info = self.scheduler_info
        base = entry.base_scheduler
        diffusers = import_diffusers()
        cls = type(base) if info.class_name is None else getattr(diffusers, info.class_name)
        karras = self.karras_sigmas
        if karras and "use_karras_sigmas" not in inspect.signature(cls.__init__).parameters:
            state.warnings.append(f"karras_sigmas was ignored: {cls.__name__} has no Karras sigmas.")
            karras = False
        key = (cls.__name__, karras)
        sched = entry.schedulers.get(key)
        if sched is None:
            overrides = dict(info.overrides)
            if karras:
                overrides["use_karras_sigmas"] = True
            if info.class_name is None and not karras:
                sched = base
            else:
                sched = cls.from_config(base.config, **overrides)
            entry.schedulers[key] = sched
        return sched

    def _apply_lora(self, entry: _Entry, pipe) -> None:
        want = None
        if self.lora_path:
            want = (os.path.realpath(self.lora_path), _file_stamp(self.lora_path))
        if entry.lora != want and entry.lora is not None:
            pipe.unload_lora_weights()  # back to the exact base weights
            entry.lora = None
        if want is None:
            return
        if entry.lora is None:
            import importlib.util

            if importlib.util.find_spec("peft") is None:
                raise MissingDependency("LoRAs need the peft package: run 'pip install peft' in ComfyUI's Python "
                                        "environment, or set lora to none.")
            try:
                pipe.load_lora_weights(self.lora_path, adapter_name="imgedit")
            except Exception as exc:
                try:
                    pipe.unload_lora_weights()
                except Exception:  # pragma: no cover - best effort cleanup
                    pass
                raise InputError(f"lora: {os.path.basename(self.lora_path)} does not fit model "
                                 f"{entry.spec.name} ({_short(exc)}).") from exc
            entry.lora = want
        pipe.set_adapters(["imgedit"], adapter_weights=[self.lora_strength])

    def _diffusers_clip_skip(self, pipe) -> Optional[int]:
        if self.clip_skip <= 1:
            return None
        encoders = [m for m in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)) if m is not None]
        layers = min(int(e.config.num_hidden_layers) for e in encoders) if encoders else CLIP_SKIP_MAX
        if self.clip_skip > layers:
            raise InputError(f"clip_skip: {self.clip_skip} is more than this model's {layers} CLIP layers.")
        for encoder in encoders:
            _clip_skip_compat(encoder)
        return self.clip_skip - 1

    @staticmethod
    def _step_callback(hooks: Hooks, family: str):
        cancelled, progress, preview = hooks.cancelled, hooks.progress, hooks.preview

        def on_step_end(pipe, i, t, kwargs):
            if cancelled():
                pipe._interrupt = True
                raise Cancelled("cancelled by the user")
            progress(i + 1, pipe._num_timesteps, "")
            if preview is not None:
                latents = kwargs.get("latents")
                if latents is not None:
                    preview(_latent_preview(latents[0], family))
            return {}

        return on_step_end

    # -- placement ----------------------------------------------------------------------------

    def _run(self, entry: _Entry, pipe, kwargs: dict, n: int, width: int, height: int, cfg: bool):
        device = entry.device
        if device.type == "cpu":
            return pipe(**kwargs).images
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

    def _place(self, entry: _Entry, pipe, n: int, width: int, height: int, cfg: bool,
               force: Optional[MemoryPlan] = None) -> None:
        device, mem = entry.device, self.memory
        size = torch.empty((), dtype=entry.dtype).element_size()
        unet_b, decode_b = estimate_work_bytes(entry.spec.family, n, width, height, size, cfg)
        if force is None:
            on_device = entry.placement is not None and entry.placement.mode == "full"
            mem.free_memory(unet_b + (0 if on_device else entry.model_bytes) + _MARGIN, device)
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

    def _release(self, entry: _Entry, pipe) -> None:
        if entry.placement is None:
            return
        if self.memory.keep_on_device() and entry.placement.mode == "full":
            return
        if entry.placement.mode != "full":
            pipe.remove_all_hooks()
        pipe.to("cpu")
        entry.placement = None
        self.memory.empty_cache()


def _clip_skip_compat(encoder) -> None:
    """diffusers' SD pipelines apply clip_skip through ``text_encoder.text_model.final_layer_norm``;
    transformers 5 flattened CLIPTextModel (``final_layer_norm`` sits on the model itself). Give
    such an encoder a plain (unregistered) ``text_model`` view so that path works."""
    if hasattr(encoder, "text_model") or not hasattr(encoder, "final_layer_norm"):
        return
    view = type("TextModelView", (), {})()
    view.final_layer_norm = encoder.final_layer_norm
    object.__setattr__(encoder, "text_model", view)


def _latent_preview(latent: torch.Tensor, family: str) -> torch.Tensor:
    """A [h, w, 3] 0..1 RGB approximation of a [4, h, w] latent."""
    factors, bias = _LATENT_RGB.get(family, _LATENT_RGB["sd"])
    if latent.shape[0] != factors.shape[0]:
        return latent[:3].permute(1, 2, 0).float().cpu().clamp(0, 1)
    rgb = torch.einsum("chw,cr->hwr", latent.float().cpu(), factors) + bias
    return ((rgb + 1) / 2).clamp(0, 1)
