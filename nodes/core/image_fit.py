"""Size fitting: bring a picture or mask to a provider's size rule (:func:`fit_size`) and back
(:func:`undo_fit`, the exact inverse). Never imports ComfyUI; callers reach it through :mod:`.images`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from .errors import InputError
from .image_tensors import picture_layout, resize_image, resize_mask

FIT_MODES = ("resize", "pad")


@dataclass(frozen=True)
class SizeFit:
    """How :func:`fit_size` changed a picture, so :func:`undo_fit` can reverse it.

    ``original_*``: size before; ``height``/``width``: size after (including padding);
    ``pad_bottom``/``pad_right``: replicated rows/columns added (mode "pad", or "resize" when the
    aspect ratio fits no size in the window). The resized size before padding is
    ``(height - pad_bottom, width - pad_right)``.
    """

    original_height: int
    original_width: int
    height: int
    width: int
    mode: str = "resize"
    pad_bottom: int = 0
    pad_right: int = 0

    @property
    def resized(self) -> tuple[int, int]:
        return self.height - self.pad_bottom, self.width - self.pad_right

    @property
    def changed(self) -> bool:
        return (self.height, self.width) != (self.original_height, self.original_width)


def _hw(t: torch.Tensor) -> tuple[int, int]:
    if picture_layout(t) == "image":
        return int(t.shape[-3]), int(t.shape[-2])
    return int(t.shape[-2]), int(t.shape[-1])


def _resize_any(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return resize_image(t, h, w) if picture_layout(t) == "image" else resize_mask(t, h, w)


def _round_to_multiple(x: float, multiple: int, limit: Optional[int]) -> int:
    """Nearest multiple of ``multiple`` (at least ``multiple``), not above ``limit`` when one fits."""
    side = max(multiple, int(math.floor(x / multiple + 0.5)) * multiple)
    if limit is not None and side > limit and side - multiple >= multiple:
        side -= multiple
    return side


def _window_scale(h: int, w: int, max_edge: Optional[int], min_edge: Optional[int]) -> float:
    """Scale that brings the longest edge to at most ``max_edge`` and, where that leaves room, the
    shortest to at least ``min_edge`` (never scaled up beyond what the minimum needs)."""
    longest, shortest = max(h, w), min(h, w)
    scale = 1.0 if max_edge is None or longest <= max_edge else max_edge / longest
    if min_edge is not None and shortest * scale < min_edge:
        up = min_edge / shortest
        if max_edge is None or longest * up <= max_edge:
            scale = up
    return scale


def fit_size(t: torch.Tensor, max_edge: Optional[int], multiple: int = 8, mode: str = "resize",
             min_edge: Optional[int] = None):
    """Fit a picture or mask to a provider's size rule. Returns ``(fitted, SizeFit)``.

    ``t``: image ``[H,W,C]``/``[B,H,W,C]`` or mask ``[H,W]``/``[B,H,W]`` (see :func:`picture_layout`).

    * "resize": scale into the window (longest edge <= ``max_edge``, shortest >= ``min_edge``;
      never up unless the minimum needs it), then round each side to the nearest multiple of
      ``multiple`` (at least ``multiple``); aspect may change by < 1 step. Where the aspect ratio
      allows no such size (1000x120 into 256..1024) the short side is padded (bottom/right,
      replicated edge pixels) up to ``min_edge``; :func:`undo_fit` removes it.
    * "pad": if the longest edge exceeds ``max_edge``, resize first (no rounding); then pad
      right/bottom with replicated edge pixels up to the next multiple. Pixels are untouched.

    When nothing needs changing ``t`` itself is returned.
    """
    if mode not in FIT_MODES:
        raise InputError(f"size mode is {mode!r}; use 'resize' or 'pad'.")
    multiple = int(multiple)
    if multiple < 1:
        raise InputError(f"multiple is {multiple}; use 1 or more.")
    if max_edge is not None:
        max_edge = int(max_edge)
        if max_edge < multiple:
            raise InputError(f"max_edge is {max_edge}; use at least {multiple} (the size multiple).")
    h, w = _hw(t)
    scale = _window_scale(h, w, max_edge, None if min_edge is None else int(min_edge))
    sh, sw = h * scale, w * scale
    if mode == "resize":
        rh, rw = _round_to_multiple(sh, multiple, max_edge), _round_to_multiple(sw, multiple, max_edge)
        floor = 0 if min_edge is None else -(-int(min_edge) // multiple) * multiple
        pad_b, pad_r = max(0, floor - rh), max(0, floor - rw)
    else:
        rh, rw = max(1, int(round(sh))), max(1, int(round(sw)))
        pad_b, pad_r = (-rh) % multiple, (-rw) % multiple
    fit = SizeFit(h, w, rh + pad_b, rw + pad_r, mode, pad_b, pad_r)
    if not fit.changed:
        return t, fit
    resized = t if (rh, rw) == (h, w) else _resize_any(t, rh, rw)
    return _pad_replicate(resized, pad_b, pad_r), fit


def _pad_replicate(t: torch.Tensor, bottom: int, right: int) -> torch.Tensor:
    """Pad right/bottom by repeating the last column/row (image or mask layout)."""
    if bottom == 0 and right == 0:
        return t
    is_image = picture_layout(t) == "image"
    batch = t if t.dim() == (4 if is_image else 3) else t.unsqueeze(0)
    nchw = batch.permute(0, 3, 1, 2) if is_image else batch.unsqueeze(1)
    padded = F.pad(nchw, (0, right, 0, bottom), mode="replicate")
    out = padded.permute(0, 2, 3, 1).contiguous() if is_image else padded[:, 0]
    return out if t.dim() == batch.dim() else out[0]


def undo_fit(t: torch.Tensor, fit: SizeFit) -> torch.Tensor:
    """Inverse of :func:`fit_size`: back to ``fit.original_*`` size.

    Crop any padding off (bit-exact; a view), then undo any resize.
    A ``t`` of another size than ``fit.height x fit.width`` (a provider that ignored the size) is
    first resized to it. Nothing to undo -> ``t`` itself.
    """
    if _hw(t) != (fit.height, fit.width):
        t = _resize_any(t, fit.height, fit.width)
    if fit.pad_bottom or fit.pad_right:
        rh, rw = fit.resized
        t = t[..., :rh, :rw, :] if picture_layout(t) == "image" else t[..., :rh, :rw]
    if _hw(t) != (fit.original_height, fit.original_width):
        t = _resize_any(t, fit.original_height, fit.original_width)
    return t
