"""The ``/imgedit/keys`` route on ComfyUI's server: set or clear a provider's API key from the browser.

* ``GET /imgedit/keys`` answers which key-owning services have a key, e.g.
  ``{"keys": {"dezgo": true, "modelslab": false, "imagepipeline": false}, "services": [...]}``
  (env var or key file); ``services`` is the public part of the table of services
  (:mod:`nodes.core.services`: label, node id, key owner, variable names) that the web panel
  builds its settings and paid-credit badges from.
* ``POST /imgedit/keys`` with a small JSON body ``{"service": "dezgo", "key": "..."}`` stores the key
  in ``<ComfyUI user dir>/imgedit/keys.json`` (via :mod:`nodes.core.keys`: atomic, mode 0600);
  ``{"service": "dezgo", "key": ""}`` or ``{"service": "dezgo", "clear": true}`` removes it.

A key is never sent back, logged or put in an error message. Bodies over :data:`MAX_BODY` bytes get
413, non-JSON content types 415 (a cross-site form cannot send ``application/json`` without a CORS
preflight, which ComfyUI does not grant), unknown services or malformed keys 400.

The handlers are plain functions of ``(request, user_dir)`` (see :mod:`.route_helpers`, which
reads the body and registers them) so tests drive them with aiohttp's test utilities without ComfyUI.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Callable, Optional

from .core import keys as keystore
from .core.errors import InputError
from .core.services import SERVICES as TABLE
from .route_helpers import MAX_BODY, PathLike, json_response, read_json_body, register_user_dir_routes

log = logging.getLogger("comfyui_imgedit")

ROUTE = "/imgedit/keys"
#: Accepted key shape: 8..256 printable ASCII characters, no spaces, quotes, backslashes or <>.
KEY_PATTERN = re.compile(r"[!#$%&()*+,\-./0-9:;=?@A-Z\[\]^_a-z{|}~]{8,256}")
#: Service names accepted in a POST (``sdapi`` shares ModelsLab's key).
SERVICES = tuple(keystore.KEY_ENV) + tuple(keystore.KEY_ALIASES)


def key_status(user_dir: Optional[PathLike]) -> dict[str, bool]:
    """``{service: has_key}`` for every key-owning service; never a key."""
    return {name: bool(flag) for name, flag in keystore.services_with_keys(user_dir).items()}


def service_rows(status: dict[str, bool]) -> list[dict]:
    """The public rows of the table of services, each with ``has_key`` (of its key owner)."""
    return [row.public(status.get(row.key_owner, False)) for row in TABLE.values()]


async def get_keys(request, user_dir: Optional[PathLike]):
    """``GET /imgedit/keys`` -> ``{"keys": {service: bool}, "services": [row, ...]}``."""
    status = key_status(user_dir)
    return json_response(200, {"keys": status, "services": service_rows(status)})


async def post_keys(request, user_dir: PathLike):
    """``POST /imgedit/keys``: set (``key``) or clear (``key: ""`` / ``clear: true``) one service's key."""
    data, error = await read_json_body(request, send_what="the key as JSON")
    if error is not None:
        return error
    if not isinstance(data, dict):
        return json_response(400, {"error": 'send a JSON object: {"service": "...", "key": "..."}.'})
    if set(data) - {"service", "key", "clear"}:
        # never echo the names: a pasted key could be one of them
        return json_response(400, {"error": 'unknown field(s); send only "service", "key" and "clear".'})

    service = data.get("service")
    if not isinstance(service, str) or service.strip().lower() not in SERVICES:
        return json_response(400, {"error": f"unknown service; use one of {', '.join(SERVICES)}."})
    service = service.strip().lower()
    owner = keystore.KEY_ALIASES.get(service, service)

    clear = data.get("clear", False)
    if not isinstance(clear, bool):
        return json_response(400, {"error": '"clear" must be true or false.'})
    key = data.get("key", "")
    if key is None:
        key = ""
    if not isinstance(key, str):
        return json_response(400, {"error": '"key" must be a string.'})
    key = key.strip()

    try:
        if clear or not key:
            if clear and key:
                return json_response(400, {"error": 'send either "key" or "clear": true, not both.'})
            await asyncio.to_thread(keystore.clear_key, service, user_dir)
            log.info("ImgEdit: cleared the stored %s API key.", owner)
            action = "cleared"
        else:
            if not KEY_PATTERN.fullmatch(key):
                return json_response(400, {"error": "that does not look like an API key: use 8 to 256 printable "
                                            "characters without spaces or quotes."})
            await asyncio.to_thread(keystore.save_key, service, key, user_dir)
            log.info("ImgEdit: stored a %s API key in the user directory.", owner)
            action = "saved"
    except InputError as exc:
        return json_response(400, {"error": keystore.redact(exc, key)})
    except OSError as exc:
        return json_response(500, {"error": f"could not write the key file ({type(exc).__name__})."})
    return json_response(200, {"ok": True, "service": owner, "action": action, "keys": key_status(user_dir)})


def register(routes, user_dir: Optional[Callable[[], PathLike]] = None) -> bool:
    """Add ``GET``/``POST /imgedit/keys`` to an aiohttp ``RouteTableDef`` (ComfyUI's
    ``PromptServer.instance.routes``). Idempotent."""
    return register_user_dir_routes(routes, ROUTE, get_keys, post_keys, user_dir)


def register_with_comfyui() -> bool:
    """``register(PromptServer.instance.routes)``; never raises (a failure only logs a warning)."""
    try:
        from server import PromptServer  # ComfyUI's module

        return register(PromptServer.instance.routes)
    except Exception as exc:  # pragma: no cover - depends on the ComfyUI build
        log.warning("ImgEdit: could not add the %s route (%s); set keys with environment variables.",
                    ROUTE, type(exc).__name__)
        return False


__all__ = ["ROUTE", "MAX_BODY", "SERVICES", "key_status", "service_rows", "get_keys", "post_keys", "register",
           "register_with_comfyui"]
