"""ComfyUI's side of the core Hooks: progress bar, progress text and the Cancel button.

Imported only inside ComfyUI (by node modules); the core never imports this.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from .core.request import Cancelled, Hooks


def comfy_hooks(node_id: Optional[str]) -> Hooks:
    """Hooks that report to node ``node_id``'s progress bar and text, and read Cancel."""
    import comfy.model_management as mm
    import comfy.utils

    bar = comfy.utils.ProgressBar(1, node_id=node_id)

    def progress(done: int, total: int, text: str) -> None:
        if text and node_id is not None:
            _send_text(text, node_id)
        # update_absolute is also ComfyUI's cancel point: it raises the interrupt exception.
        bar.update_absolute(done, max(int(total), 1))

    return Hooks(progress=progress, cancelled=mm.processing_interrupted)


def _send_text(text: str, node_id: str) -> None:
    try:
        from server import PromptServer

        PromptServer.instance.send_progress_text(text, node_id)
    except Exception:  # progress text is a nicety; never fail a job over it
        pass


@contextlib.contextmanager
def comfy_interrupts() -> Iterator[None]:
    """Turn the core's Cancelled into ComfyUI's interrupt (and clear ComfyUI's flag)."""
    import comfy.model_management as mm

    try:
        yield
    except Cancelled:
        mm.throw_exception_if_processing_interrupted()  # clears the flag, raises when it was set
        raise mm.InterruptProcessingException()
