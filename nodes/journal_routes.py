"""The journal of paid calls on ComfyUI's side: its folder, the settings route and the start-up line.

* ``GET /imgedit/journal`` -> ``{"enabled": bool, "panel": bool, "env_off": bool, "records": n,
  "bytes": n, "folder": "..."}`` (``enabled`` is what the next run uses: the panel's switch unless
  ``IMGEDIT_JOURNAL=0`` turned it off for the whole server).
* ``POST /imgedit/journal`` with ``{"enabled": false}`` (JSON) stores the ImgEdit settings panel's
  switch in ``<user dir>/imgedit/settings.json``.

The journal itself is ComfyUI-free (:mod:`.core.journal`); this module only finds ComfyUI's user
folder (``user/imgedit/journal/``) and talks HTTP (body reading and registration: :mod:`.route_helpers`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable, Optional

from .core import journal as jr
from .route_helpers import PathLike, comfy_user_dir, json_response, read_json_body, register_user_dir_routes

log = logging.getLogger("comfyui_imgedit")

ROUTE = "/imgedit/journal"


def node_user_dir() -> Optional[str]:
    """ComfyUI's user folder, or None outside ComfyUI (then the journal lives in the user cache folder)."""
    try:
        return comfy_user_dir()
    except Exception:
        return None


def journal_state(user_dir: PathLike) -> dict:
    folder = jr.journal_folder(user_dir)
    records, size = jr.Journal(folder).summary()
    panel = jr.panel_enabled(user_dir)
    return {"enabled": panel and not jr.env_disabled(), "panel": panel, "env_off": jr.env_disabled(),
            "records": records, "bytes": size, "folder": str(folder)}


async def get_journal(request, user_dir: PathLike):
    return json_response(200, await asyncio.to_thread(journal_state, user_dir))


async def post_journal(request, user_dir: PathLike):
    """``POST /imgedit/journal`` ``{"enabled": bool}``: the settings panel's switch."""
    data, error = await read_json_body(request)
    if error is not None:
        return error
    if not isinstance(data, dict) or set(data) != {"enabled"} or not isinstance(data["enabled"], bool):
        return json_response(400, {"error": 'send {"enabled": true} or {"enabled": false}.'})
    try:
        await asyncio.to_thread(jr.set_panel_enabled, user_dir, data["enabled"])
    except OSError as exc:
        return json_response(500, {"error": f"could not write the settings file ({type(exc).__name__})."})
    log.info("ImgEdit: the journal of paid calls was turned %s in the settings.", "on" if data["enabled"] else "off")
    return json_response(200, {"ok": True, **await asyncio.to_thread(journal_state, user_dir)})


def register(routes, user_dir: Optional[Callable[[], PathLike]] = None) -> bool:
    """Add ``GET``/``POST /imgedit/journal`` to an aiohttp ``RouteTableDef``. Idempotent."""
    return register_user_dir_routes(routes, ROUTE, get_journal, post_journal, user_dir)


def start_journal() -> None:
    """Register the route, then (on a thread, so the pack's import stays cheap) apply the caps and
    log the one-line summary."""
    from server import PromptServer  # ComfyUI's module

    register(PromptServer.instance.routes)
    user_dir = comfy_user_dir()
    threading.Thread(target=_log_summary, args=(user_dir,), name="imgedit-journal-summary", daemon=True).start()


def _log_summary(user_dir: PathLike) -> None:
    try:
        journal = jr.open_journal(user_dir)
        if journal is None:
            log.info("ImgEdit journal of paid calls: off (IMGEDIT_JOURNAL or Settings -> ImgEdit); "
                     "identical paid calls are sent again.")
            return
        journal.enforce_caps()
        log.info(journal.summary_line())
    except Exception as error:  # the summary is a nicety: never fail ComfyUI's start over it
        log.warning("ImgEdit: could not read the journal of paid calls: %s", error)


__all__ = ["ROUTE", "journal_state", "get_journal", "post_journal", "register", "start_journal", "node_user_dir"]
