"""Moved to :mod:`.comfy.node` and :mod:`.comfy.provider`; kept so imports from before the move keep working."""

from .comfy.node import NODES, ImgEditComfyModel  # noqa: F401
from .comfy.provider import ComfyModelProvider  # noqa: F401
