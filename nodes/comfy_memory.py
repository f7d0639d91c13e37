"""Moved to :mod:`.comfy.memory`; kept so imports from before the move keep working."""

from .comfy.memory import CACHE_ROUTE, cache_view, claim, register_cache_route, track  # noqa: F401
