"""ComfyUI's side of the core Hooks: progress bar with latent previews, progress text, Cancel.

Imported only inside ComfyUI (by node modules); the core never imports this.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional

from ..core.request import Cancelled, Hooks


def comfy_hooks(node_id: Optional[str]) -> Hooks:
    """Hooks that report to node ``node_id``'s progress bar (with step previews) and text, and read Cancel."""
    import comfy.model_management as mm
    import comfy.utils

    bar = comfy.utils.ProgressBar(1, node_id=node_id)
    previews = LatentPreviews()

    def progress(done: int, total: int, text: str) -> None:
        if text and node_id is not None:
            _send_text(text, node_id)
        # update_absolute is also ComfyUI's cancel point: it raises the interrupt exception.
        bar.update_absolute(done, max(int(total), 1), previews.take())

    return Hooks(progress=progress, cancelled=mm.processing_interrupted, preview=previews.offer)


# ComfyUI's latent format for each model family the local provider reports (SD 2.x shares SD 1.x's).
_LATENT_FORMATS = {"sd": "SD15", "sdxl": "SDXL"}


class LatentPreviews:
    """Step latents -> the preview ComfyUI shows for KSampler (``latent_preview.get_previewer``:
    the ``--preview-method`` setting, TAESD or latent2rgb for that latent format), held until the
    step's progress update carries it to the UI."""

    def __init__(self):
        self._previewers: dict = {}
        self._pending = None
        self._lock = threading.Lock()

    def offer(self, latents, family: str) -> None:
        previewer = self._previewer(family, latents.device)
        if previewer is not None:
            frame = previewer.decode_latent_to_preview_image("JPEG", latents)
            with self._lock:
                self._pending = frame

    def take(self):
        with self._lock:
            frame, self._pending = self._pending, None
        return frame

    def _previewer(self, family: str, device):
        if family not in self._previewers:
            import comfy.latent_formats
            import latent_preview

            latent_format = getattr(comfy.latent_formats, _LATENT_FORMATS.get(family, "SD15"))()
            self._previewers[family] = latent_preview.get_previewer(device, latent_format)
        return self._previewers[family]


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
