"""What the pack's JSON routes on ComfyUI's server share (``/imgedit/keys``, ``/imgedit/journal``).

A route is a pair of plain handlers ``(request, user_dir)`` for GET and POST, so tests drive them
with aiohttp's test utilities without ComfyUI; :func:`register_user_dir_routes` adds them to a
``RouteTableDef`` (ComfyUI's ``PromptServer.instance.routes``) and reads the user directory at
request time. POST bodies are small JSON objects: :func:`read_json_body` refuses more than
:data:`MAX_BODY` bytes (413) and other content types (415: a cross-site form cannot send
``application/json`` without a CORS preflight, which ComfyUI does not grant). aiohttp is imported
lazily (it is a ComfyUI dependency, not the pack's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Union

#: Largest accepted request body, bytes.
MAX_BODY = 4096

PathLike = Union[str, Path]
Handler = Callable[[Any, PathLike], Awaitable[Any]]


def json_response(status: int, payload: dict):
    """A JSON answer that no browser or proxy caches (it may describe stored keys)."""
    from aiohttp import web

    return web.json_response(payload, status=status, headers={"Cache-Control": "no-store"})


async def read_json_body(request, send_what: str = "JSON") -> tuple[Any, Optional[Any]]:
    """The decoded JSON body, or ``(None, error response)``: 413 when over :data:`MAX_BODY` bytes,
    415 unless ``application/json`` ("send <send_what> (Content-Type: application/json)."), 400 when
    not valid JSON. The body's text never enters an error (it may hold a key)."""
    length = request.content_length
    body = None if length is not None and length > MAX_BODY else await request.content.read(MAX_BODY + 1)
    if body is None or len(body) > MAX_BODY:
        return None, json_response(413, {"error": f"request body too large (max {MAX_BODY} bytes)."})
    if request.content_type != "application/json":
        return None, json_response(415, {"error": f"send {send_what} (Content-Type: application/json)."})
    try:
        return json.loads(body.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError):
        return None, json_response(400, {"error": "the body is not valid JSON."})


def comfy_user_dir() -> str:
    """ComfyUI's user directory (``--user-directory`` or ``<base>/user``)."""
    import folder_paths  # ComfyUI's module; only inside ComfyUI

    return folder_paths.get_user_directory()


def register_user_dir_routes(routes, route: str, get: Handler, post: Handler,
                             user_dir: Optional[Callable[[], PathLike]] = None) -> bool:
    """Add ``GET``/``POST route`` to an aiohttp ``RouteTableDef`` (ComfyUI also serves it under
    ``/api``), each handler called with the user directory (``user_dir()``, default ComfyUI's).
    Idempotent: False when ``route`` is there already."""
    if any(getattr(existing, "path", None) == route for existing in routes):
        return False
    user_dir_fn = user_dir or comfy_user_dir

    async def handle_get(request):
        return await get(request, user_dir_fn())

    async def handle_post(request):
        return await post(request, user_dir_fn())

    routes.get(route)(handle_get)
    routes.post(route)(handle_post)
    return True


__all__ = ["MAX_BODY", "comfy_user_dir", "json_response", "read_json_body", "register_user_dir_routes"]
