"""An offline stand-in for the remote providers (Dezgo, SD API v3, ModelsLab v6, ImagePipeline).

``python -m comfyui_imgedit.sandbox`` starts it and prints the ``export`` lines to paste;
``with SandboxServer(key=...) as sb: ...`` does the same from Python (see :mod:`.simulator`).
"""

from .simulator import DEFAULT_KEY, Canned, Recorded, SandboxServer, render

__all__ = ["SandboxServer", "Canned", "Recorded", "render", "DEFAULT_KEY"]
