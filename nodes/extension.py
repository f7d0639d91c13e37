"""The pack's ComfyExtension: collects the node classes of every node module."""

from __future__ import annotations

import logging

from comfy_api.latest import ComfyExtension, io

log = logging.getLogger("comfyui_imgedit")


def _server_side_setup() -> None:
    """The /imgedit/keys, /imgedit/local/cache and /imgedit/journal routes, the journal's summary line
    and the sample inputs; guarded so a failure never breaks ComfyUI's start."""
    try:
        from .key_routes import register_with_comfyui

        register_with_comfyui()
    except Exception as error:  # pragma: no cover - only inside ComfyUI
        log.warning("ImgEdit: the API-key settings route is unavailable: %s", error)
    try:
        from .comfy_memory import register_cache_route

        register_cache_route()
    except Exception as error:  # pragma: no cover
        log.warning("ImgEdit: the local cache route is unavailable: %s", error)
    try:
        from .journal_routes import start_journal

        start_journal()
    except Exception as error:  # pragma: no cover - only inside ComfyUI
        log.warning("ImgEdit: the journal settings route is unavailable: %s", error)
    try:
        from .assets import install_sample_inputs

        install_sample_inputs()
    except Exception as error:  # pragma: no cover
        log.warning("ImgEdit: could not copy the sample pictures into ComfyUI's input folder: %s", error)


# Before the node modules: the key route works even if a node module fails to import.
_server_side_setup()

from . import edit_nodes, local_nodes, mask_nodes, provider_nodes  # noqa: E402


class ImgEditExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [
            *mask_nodes.NODES,
            *provider_nodes.NODES,
            *local_nodes.NODES,
            *edit_nodes.NODES,
        ]
