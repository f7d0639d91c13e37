"""Moved to :mod:`.comfy.hooks`; kept so imports from before the move keep working."""

from .comfy.hooks import LatentPreviews, comfy_hooks, comfy_interrupts  # noqa: F401
