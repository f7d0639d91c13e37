"""ComfyUI's model management for the diffusers provider's cache, and a read-only view of it.

Each cached diffusers model is listed with ComfyUI's own models as a ``ModelPatcher`` *ticket*:
an empty module sized as the pipeline's weights, on the device the pipeline runs on, loaded with
``load_models_gpu`` before each run. So ComfyUI's own accounting makes room for the pipeline and
its activations, and when ComfyUI frees memory itself — *Unload models* and ``POST /free``
(``unload_all_models``), or room for another model (``free_memory``) — it unloads the ticket,
whose detach callback releases the cached pipeline (dropped from the LRU, moved off the GPU,
freed; the next run loads it again).

Why a ticket and not the pipeline's modules inside the ModelPatcher: ComfyUI would then move the
weights itself, and its partial (lowvram) loads and unloads move single submodules, which leaves a
diffusers pipeline split across devices and fights accelerate's offload hooks. The ticket leaves
placement to the provider and the bookkeeping to ComfyUI; no monkey-patching is needed.

Imported only inside ComfyUI (by node modules and the extension); the core never imports this.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..core.providers.local_memory import TrackedModel

log = logging.getLogger("comfyui_imgedit")

#: GET: the models the diffusers provider holds now (read-only; names as the model list shows them).
CACHE_ROUTE = "/imgedit/local/cache"

# Tickets ComfyUI has just unloaded, kept alive until our next call. A ticket must not die inside
# its own detach: its module's finalizer (ComfyUI's cleanup_models) would then edit ComfyUI's list
# of loaded models while free_memory is still walking it (IndexError in ComfyUI's prompt worker).
_UNLOADED: list = []


class ImgEditDiffusersModel(torch.nn.Module):
    """The empty module of a ticket (ComfyUI logs "Requested to load ImgEditDiffusersModel")."""


def track(model: TrackedModel) -> Any:
    """List ``model`` with ComfyUI's models; ComfyUI unloading it calls ``model.release()``."""
    from comfy.model_patcher import ModelPatcher
    from comfy.patcher_extension import CallbacksMP

    _UNLOADED.clear()
    ticket = ModelPatcher(ImgEditDiffusersModel(), load_device=model.device,
                          offload_device=torch.device("cpu"), size=model.nbytes)

    def on_detach(patcher, unpatch_all: bool) -> None:
        # load_models_gpu re-lists an already loaded model with unpatch_all=False, and a dropped
        # ticket detaches that way too: only a real unload (free_memory) releases the pipeline.
        if unpatch_all:
            _UNLOADED.append(patcher)
            model.release()

    ticket.add_callback(CallbacksMP.ON_DETACH, on_detach)
    return ticket


def claim(ticket: Any, work_bytes: int, weights_bytes: int = 0) -> None:
    """Before a run: ComfyUI makes room for the pipeline and ``work_bytes``, and counts it loaded.

    A ticket ComfyUI does not count as loaded has its size counted by ComfyUI itself; one it
    counts as loaded while the weights went back to the CPU (``--lowvram``: ``weights_bytes``)
    needs them added. Full load, because the ticket has no weights to load partially (placement
    is the provider's). On the CPU this only (re)lists the ticket, so *Unload models* on a CPU
    ComfyUI reaches it too.
    """
    import comfy.model_management as mm

    _UNLOADED.clear()
    counted = ticket.loaded_size() >= ticket.model_size() and ticket.current_loaded_device() == ticket.load_device
    mm.load_models_gpu([ticket], memory_required=work_bytes + (weights_bytes if counted else 0),
                       force_full_load=True)


def cache_view() -> dict:
    from ..core.providers.local_diffusers import cache_stats

    stats = cache_stats()
    return {"models": stats["models"], "loads": stats["loads"], "hits": stats["hits"]}


def register_cache_route() -> bool:
    """``GET /imgedit/local/cache`` on ComfyUI's server (for tests and curious users); never raises."""
    try:
        from aiohttp import web
        from server import PromptServer

        @PromptServer.instance.routes.get(CACHE_ROUTE)
        async def local_cache(request):
            return web.json_response(cache_view())

        return True
    except Exception as exc:  # pragma: no cover - depends on the ComfyUI build
        log.warning("ImgEdit: could not add the %s route (%s).", CACHE_ROUTE, type(exc).__name__)
        return False
