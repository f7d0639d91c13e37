"""Device memory of the local diffusers provider: the host's hooks and the placement plan.

The host (ComfyUI's model management, passed in by the node layer; nothing for the CLI) has its
say through :class:`MemoryHooks`; :func:`plan_memory` picks full load, model CPU offload or
sequential offload, with attention slicing / VAE slicing and tiling when VRAM is short. The
placement itself lives with the cache (:mod:`.local_cache`). No ComfyUI module is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

MB = 1024 * 1024
#: Room kept free next to the weights and activations of a run.
MARGIN = 512 * MB


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_free_bytes(device: torch.device) -> Optional[int]:
    if device.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return None


def torch_empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class TrackedModel:
    """A cached model as the host's memory manager is told about it (see :attr:`MemoryHooks.track`).

    ``release()`` is for the host: it drops the model from the pack's cache, moves it off the
    device and frees it (a run holding the model finishes first).
    """

    name: str
    device: torch.device
    nbytes: int
    release: Callable[[], None]


@dataclass
class MemoryHooks:
    """The host's say in device memory (ComfyUI's model management, passed in by the node layer).

    - ``default_device()``: the device ``device="auto"`` means (ComfyUI's torch device).
    - ``free_memory(nbytes, device)``: make ``nbytes`` free on ``device`` (unload other models);
      used when the host does not track the model (``claim`` None).
    - ``free_bytes(device)``: free memory on ``device`` now, or None if unknown.
    - ``empty_cache()``: give cached allocator blocks back.
    - ``keep_on_device()``: True to leave a fully loaded pipeline on the GPU after a run (the host
      takes it back when it needs the room); False moves it back to the CPU after each run.
    - ``auto_dtype(device)``: "fp16", "bf16" or "fp32" for ``dtype="auto"`` on an accelerator
      (None: fp16); the CPU always gets fp32.
    - ``track(model)``: called once when a model enters the cache, with a :class:`TrackedModel`;
      the host lists it with its own models and calls ``model.release()`` when it frees memory
      (ComfyUI: *Unload models*, ``POST /free``, room for another model). Returns a handle the
      cache keeps as long as it keeps the model.
    - ``claim(handle, work_bytes, weights_bytes)``: before each run, the host makes room by its
      own accounting for ``work_bytes`` of activations plus the model's weights and counts the
      model as loaded on its device; ``weights_bytes`` is what the weights still need there (0 when
      they are on the device already, all of them after a run that moved them back to the CPU),
      for a host that counts the model as loaded since its last claim (None: ``free_memory``).
    """

    default_device: Callable[[], Any] = default_device
    free_memory: Callable[[int, Any], None] = lambda nbytes, device: None
    free_bytes: Callable[[Any], Optional[int]] = torch_free_bytes
    empty_cache: Callable[[], None] = torch_empty_cache
    keep_on_device: Callable[[], bool] = lambda: False
    auto_dtype: Optional[Callable[[Any], str]] = None
    track: Callable[[TrackedModel], Any] = lambda model: None
    claim: Optional[Callable[[Any, int, int], None]] = None


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
    unet = int(batch * latent_area * dtype_size * 0.02 * factor * MB)
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
    if free >= model_bytes + unet_bytes + MARGIN:
        left = free - model_bytes - MARGIN
        tight = left < 2 * unet_bytes
        decode_short = left < decode_bytes
        return MemoryPlan("full", attention_slicing=tight, vae_slicing=decode_short and samples > 1,
                          vae_tiling=decode_short and left < decode_bytes / max(samples, 1))
    if free >= largest_bytes + unet_bytes + MARGIN:
        left = free - largest_bytes - MARGIN
        decode_short = left < decode_bytes
        return MemoryPlan("model_offload", attention_slicing=left < 2 * unet_bytes,
                          vae_slicing=decode_short and samples > 1,
                          vae_tiling=decode_short and left < decode_bytes / max(samples, 1))
    return MemoryPlan("sequential_offload", attention_slicing=True, vae_slicing=samples > 1, vae_tiling=True)
