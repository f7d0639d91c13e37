"""The pack's ComfyExtension: collects the node classes of every node module."""

from __future__ import annotations

import importlib
import logging

from comfy_api.latest import ComfyExtension, io

log = logging.getLogger("comfyui_imgedit")


# (module, function, what a failure means): each step imported only here, at ComfyUI's start.
_SERVER_SIDE_STEPS = (
    ("key_routes", "register_with_comfyui", "the API-key settings route is unavailable"),
    ("runtime.memory", "register_cache_route", "the local cache route is unavailable"),
    ("journal_routes", "start_journal", "the journal settings route is unavailable"),
    ("assets", "install_sample_inputs", "could not copy the sample pictures into ComfyUI's input folder"),
)


def _server_side_setup() -> None:
    """The /imgedit/keys, /imgedit/local/cache and /imgedit/journal routes, the journal's summary line
    and the sample inputs; each guarded so a failure never breaks ComfyUI's start (nor the next step)."""
    for module, function, failure in _SERVER_SIDE_STEPS:
        try:
            getattr(importlib.import_module(f".{module}", __package__), function)()
        except Exception as error:  # pragma: no cover - only inside ComfyUI
            log.warning("ImgEdit: could not finish a start-up step (%s): %s", failure, error)


# Before the node modules: the key route works even if a node module fails to import.
_server_side_setup()

from .runtime import node as comfy_model_node  # noqa: E402
from . import edit_nodes, local_nodes, mask_nodes, provider_nodes  # noqa: E402


class ImgEditExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [
            *mask_nodes.NODES,
            *provider_nodes.NODES,
            *comfy_model_node.NODES,
            *local_nodes.NODES,
            *edit_nodes.NODES,
        ]
