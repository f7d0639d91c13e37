"""Remote provider clients (ComfyUI-free). Each is a :class:`nodes.core.request.Provider`.

- :class:`DezgoClient` — Dezgo, synchronous, multipart uploads.
- :class:`SDAPIClient` — Stable Diffusion API v3 (ModelsLab key), queued jobs.
- :class:`ModelsLabClient` — ModelsLab v6 community models, queued jobs.
- :class:`ImagePipelineClient` — ImagePipeline legacy API, queued jobs.

Each names its row of the table of services (:mod:`nodes.core.services`: label, key and host
variables, limits). Keys are resolved at call time (:mod:`nodes.core.keys`); hosts come from
``IMGEDIT_*_URL`` (:mod:`.urls`); :mod:`.http` is the HTTP layer. Nothing here imports ComfyUI.
"""

from .dezgo import DezgoClient
from .imagepipeline import ImagePipelineClient
from .modelslab import ModelsLabClient
from .sdapi import SDAPIClient

CLIENTS = {
    "dezgo": DezgoClient,
    "sdapi": SDAPIClient,
    "modelslab": ModelsLabClient,
    "imagepipeline": ImagePipelineClient,
}

__all__ = ["DezgoClient", "SDAPIClient", "ModelsLabClient", "ImagePipelineClient", "CLIENTS"]
