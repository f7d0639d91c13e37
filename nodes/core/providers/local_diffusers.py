"""Local img2img and inpainting with diffusers: :class:`LocalDiffusersProvider`.

The provider runs one picture per :meth:`LocalDiffusersProvider.edit` (``request.samples`` images
from it) through diffusers' ``AutoPipelineForImage2Image`` / ``AutoPipelineForInpainting`` and
fulfils the :class:`~nodes.core.request.Provider` contract, so the same orchestrator
(``nodes.core.edit.run_edit``) drives it and the remote providers.

- **Loading and cache**: diffusers folders with ``from_pretrained(local_files_only=True)``;
  single-file checkpoints with ``from_single_file(config=<local diffusers folder>)`` (see
  :mod:`.local_models`); nothing is ever downloaded. Loaded models live in the LRU of
  :mod:`.local_cache`, which the host can free (``MemoryHooks.track``).
- **Seeds**: one CPU ``torch.Generator`` per sample; sample ``i`` uses ``(seed + i) mod 2**32``,
  so a seed gives the same pixels whether its sample runs alone or in a batch. ``seed=None``
  picks one at random and reports it in :attr:`EditResult.seeds`.
- **Steps**: ``int(steps * strength)`` denoising steps (diffusers' img2img rule); the UNet runs
  once per step for first-order schedulers (see :func:`.local_schedulers.unet_calls`).
- **Inpaint models**: 9-channel inpainting UNets and ordinary 4-channel ones both run inpaint
  (diffusers blends the 4-channel case each step). img2img on a 9-channel model runs its inpaint
  pipeline with a full mask.
- **Hooks**: per denoising step from ``callback_on_step_end``: ``hooks.cancelled()`` is checked
  (it sets the pipeline's interrupt flag, then raises :class:`~nodes.core.request.Cancelled`),
  ``hooks.preview(latents, family)`` (if set) gets the step's latents, then
  ``hooks.progress(i, total, "")`` reports the step.
- **Memory** (:mod:`.local_memory`, :class:`.local_cache.PipelinePlacement`): the host makes room
  before a pipeline moves onto the GPU; full load, model CPU offload or sequential offload.

This module imports no ComfyUI module; the node layer passes ComfyUI's hooks in.
"""

from __future__ import annotations

import inspect
import os
import random
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ..errors import InputError, MissingDependency
from ..request import SEED_MAX, Cancelled, EditRequest, EditResult, Hooks, Provider, SizeRule
from .local_cache import (
    MISSING_DIFFUSERS,
    CacheEntry,
    PipelinePlacement,
    cache_stats,
    clear_cache,
    file_stamp,
    get_entry,
    import_diffusers,
    pipe_for,
    short_error,
)
from .local_memory import MemoryHooks
from .local_models import ModelSpec
from .local_schedulers import SchedulerInfo, denoising_steps, scheduler_info

DTYPES = ("auto", "fp16", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
MAX_SAMPLES_PER_CALL = 4
CLIP_SKIP_MAX = 12
_TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class _RunState:
    warnings: list = field(default_factory=list)


class LocalDiffusersProvider(PipelinePlacement, Provider):
    """Runs img2img/inpaint on a local SD 1.x/2.x or SDXL model (see the module doc).

    Parameters are the provider node's inputs: ``model_path`` is a :class:`ModelSpec` (from
    :func:`.local_models.resolve_model`), a path to a diffusers folder, or a path to a single-file
    ``.safetensors`` checkpoint together with ``config_path``, a diffusers folder of the same kind
    whose configs and tokenizer it borrows; ``scheduler`` a name from
    :data:`.local_schedulers.SCHEDULERS`; ``dtype`` auto|fp16|bf16|fp32 and ``device`` auto|cpu|cuda
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
        entry = get_entry(self.spec, dtype, device)
        with entry.lock:
            pipe = pipe_for(entry, "inpaint" if self.spec.is_inpaint_model else task)
            self._track(entry)
            return pipe

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
        entry = get_entry(self.spec, dtype, device)
        with entry.lock:
            task = "inpaint" if (mask is not None or self.spec.is_inpaint_model) else "img2img"
            pipe = pipe_for(entry, task)
            self._track(entry)
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

    def _scheduler(self, entry: CacheEntry, state: _RunState):
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

    def _apply_lora(self, entry: CacheEntry, pipe) -> None:
        want = None
        if self.lora_path:
            want = (os.path.realpath(self.lora_path), file_stamp(self.lora_path))
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
                                 f"{entry.spec.name} ({short_error(exc)}).") from exc
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
            if preview is not None and kwargs.get("latents") is not None:
                preview(kwargs["latents"], family)  # before progress: the host shows it with this step
            progress(i + 1, pipe._num_timesteps, "")
            return {}

        return on_step_end


def _clip_skip_compat(encoder) -> None:
    """diffusers' SD pipelines apply clip_skip through ``text_encoder.text_model.final_layer_norm``;
    transformers 5 flattened CLIPTextModel (``final_layer_norm`` sits on the model itself). Give
    such an encoder a plain (unregistered) ``text_model`` view so that path works."""
    if hasattr(encoder, "text_model") or not hasattr(encoder, "final_layer_norm"):
        return
    view = type("TextModelView", (), {})()
    view.final_layer_norm = encoder.final_layer_norm
    object.__setattr__(encoder, "text_model", view)


# The provider with the cache and host hooks its callers need (the node layer, the CLI, benches).
__all__ = ["LocalDiffusersProvider", "MemoryHooks", "cache_stats", "clear_cache", "MISSING_DIFFUSERS", "DTYPES",
           "DEVICES"]
