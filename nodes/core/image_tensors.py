"""Picture and mask tensors: layouts, value checks, mask matching, resizing, compositing.

Conventions (ComfyUI's): an IMAGE is ``[B,H,W,3]`` float32 in 0..1; a MASK is ``[B,H,W]``
float32 in 0..1 where 1 means "change this pixel". Never imports ComfyUI. Callers reach these
through :mod:`.images` (``from . import images as img``); the design decisions are listed there.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

ASPECT_TOLERANCE = 0.01


# --------------------------------------------------------------------------------------------
# Shapes and values
# --------------------------------------------------------------------------------------------

def _as_float(t: torch.Tensor, name: str) -> torch.Tensor:
    """Float32 values in 0..1; uint8 input is scaled by 1/255. NaN/inf -> InputError."""
    if not isinstance(t, torch.Tensor):
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(t)
        else:
            raise InputError(f"{name} is a {type(t).__name__}, not a tensor; connect an IMAGE or MASK output to it.")
    if t.dtype == torch.uint8:
        t = t.to(torch.float32) / 255.0
    elif t.dtype == torch.bool:
        t = t.to(torch.float32)
    elif t.dtype != torch.float32:
        t = t.to(torch.float32)
    if t.numel() == 0:
        raise InputError(f"{name} is empty (shape {tuple(t.shape)}); connect a picture with at least one pixel.")
    # One look at the data: min/max propagate NaN, and show infinities and out-of-range values.
    if t.device.type == "cpu" and t.numel() < (1 << 23):
        # numpy's SIMD min and max (two reads) beat torch.aminmax (one read) by ~10x on mid sizes.
        values = t.detach().numpy()
        low, high = float(values.min()), float(values.max())
    else:
        low, high = (float(v) for v in torch.aminmax(t))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError(f"{name} contains NaN or infinite values; check the node that produced it.")
    if low < 0.0 or high > 1.0:
        t = t.clamp(0.0, 1.0)
    return t


def to_image_batch(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Any picture layout -> ``[B,H,W,3]`` float32 in 0..1.

    Accepts ``[H,W,C]`` or ``[B,H,W,C]`` with C = 3 (RGB), 4 (RGBA: alpha dropped),
    1 (grey: repeated to RGB) or 2 (grey + alpha: alpha dropped). Out-of-range values are
    clamped; NaN or infinity raise :class:`InputError` naming ``name``.
    """
    t = _as_float(image, name)
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"{name} has shape {tuple(t.shape)}, not [B,H,W,3]; connect an IMAGE output (a MASK needs MaskToImage first).")
    channels = t.shape[-1]
    if channels == 3:
        return t
    if channels == 4:
        return t[..., :3].contiguous()
    return t[..., :1].repeat(1, 1, 1, 3)


def to_mask_batch(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Any mask layout -> ``[B,H,W]`` float32 in 0..1 (1 = change).

    Accepts ``[H,W]``, ``[B,H,W]``, ``[B,1,H,W]`` and ``[B,H,W,1]``. A 3-D tensor is always read as
    ``[B,H,W]``. NaN or infinity raise :class:`InputError` naming ``name``.
    """
    t = _as_float(mask, name)
    if t.dim() == 2:
        return t.unsqueeze(0)
    if t.dim() == 3:
        return t
    if t.dim() == 4 and t.shape[1] == 1:
        return t[:, 0]
    if t.dim() == 4 and t.shape[-1] == 1:
        return t[..., 0]
    raise InputError(f"{name} has shape {tuple(t.shape)}, not [B,H,W]; connect a MASK output (an IMAGE needs ImageToMask first).")


def broadcast_batch(a: torch.Tensor, b: torch.Tensor, a_name: str = "image", b_name: str = "mask"):
    """Give two batches the same length by expanding a batch of 1 (a view, no copy).

    Returns ``(a, b)``. Both longer than 1 and different -> :class:`InputError`.
    """
    na, nb = int(a.shape[0]), int(b.shape[0])
    if na == nb:
        return a, b
    if na == 1:
        return a.expand(nb, *a.shape[1:]), b
    if nb == 1:
        return a, b.expand(na, *b.shape[1:])
    raise InputError(f"{a_name} has {na} pictures but {b_name} has {nb}; give both the same count, or one of them a single one.")


def aspect_matches(h1: int, w1: int, h2: int, w2: int) -> bool:
    """True when an ``h1 x w1`` and an ``h2 x w2`` picture have the same aspect ratio within
    :data:`ASPECT_TOLERANCE` (1 %), so one may be resized to the other without visible stretching."""
    return abs((w1 / h1) / (w2 / h2) - 1.0) <= ASPECT_TOLERANCE


def match_mask_to_image(mask: torch.Tensor, image: torch.Tensor, mask_name: str = "mask", image_name: str = "image") -> torch.Tensor:
    """Bring ``mask [B,H,W]`` to the size and batch of ``image [B,H,W,3]``.

    Different size with the same aspect (within 1 %) -> bilinear resize (soft values stay soft);
    an empty mask is resized whatever its aspect. Batch 1 <-> N is broadcast: the result has
    ``max(Bm, Bi)`` masks (when the image batch is 1 and the mask batch N, the caller expands the
    image). Different aspect, or both batches > 1 and different -> :class:`InputError`.
    """
    mh, mw = int(mask.shape[-2]), int(mask.shape[-1])
    ih, iw = int(image.shape[-3]), int(image.shape[-2])
    if (mh, mw) != (ih, iw):
        if not aspect_matches(mh, mw, ih, iw) and bool(mask.any()):
            raise InputError(f"{mask_name} is {mw}x{mh} but {image_name} is {iw}x{ih} (width x height), a different shape; use a mask made for this picture.")
        mask = resize_mask(mask, ih, iw)
    mb, ib = int(mask.shape[0]), int(image.shape[0])
    if mb == ib or ib == 1:
        return mask
    if mb == 1:
        return mask.expand(ib, ih, iw)
    raise InputError(f"{image_name} has {ib} pictures but {mask_name} has {mb}; give both the same count, or one of them a single one.")


def picture_layout(t: torch.Tensor) -> str:
    """'mask' for ``[H,W]``/``[B,H,W]``, 'image' for ``[H,W,C]``/``[B,H,W,C]``.

    A 3-D tensor whose last dimension is 1, 3 or 4 is an image ``[H,W,C]``; any other 3-D tensor
    is a mask batch ``[B,H,W]`` (so a mask batch exactly 1, 3 or 4 pixels wide is misread).
    """
    if t.dim() == 2:
        return "mask"
    if t.dim() == 3:
        return "image" if t.shape[-1] in (1, 3, 4) else "mask"
    if t.dim() == 4:
        return "image"
    raise InputError(f"picture has shape {tuple(t.shape)}; use [H,W,3], [B,H,W,3], [H,W] or [B,H,W].")


# --------------------------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------------------------

def _interpolate(t: torch.Tensor, h: int, w: int, method: str) -> torch.Tensor:
    """``t [N,C,H,W]`` -> ``[N,C,h,w]``; antialiased when shrinking, clamped to 0..1."""
    if method not in ("bilinear", "bicubic", "nearest", "area"):
        raise InputError(f"resize method is {method!r}; use bilinear or bicubic.")
    if t.dtype != torch.float32:
        t = t.to(torch.float32)
    if method in ("nearest", "area"):
        out = F.interpolate(t, size=(h, w), mode=method)
    else:
        shrinking = h < t.shape[-2] or w < t.shape[-1]
        if shrinking and w == 1 and h != t.shape[-2]:
            # torch's antialiased kernel (2.13, CPU) gives every row one value when the output is one
            # pixel wide and the height changes; a one-pixel-high output is right, so resize transposed.
            out = F.interpolate(t.transpose(-1, -2), size=(w, h), mode=method, align_corners=False,
                                antialias=True).transpose(-1, -2).contiguous()
        else:
            out = F.interpolate(t, size=(h, w), mode=method, align_corners=False, antialias=shrinking)
    # Bicubic overshoots at hard edges; keep the 0..1 contract.
    return out.clamp_(0.0, 1.0) if method == "bicubic" else out


def resize_image(t: torch.Tensor, h: int, w: int, method: str = "bicubic") -> torch.Tensor:
    """``[H,W,C]`` or ``[B,H,W,C]`` -> same layout at ``h x w``. Same size -> ``t`` itself."""
    h, w = int(h), int(w)
    if h < 1 or w < 1:
        raise InputError(f"target size is {w}x{h}; use at least 1x1.")
    if (int(t.shape[-3]), int(t.shape[-2])) == (h, w):
        return t
    batch = t if t.dim() == 4 else t.unsqueeze(0)
    out = _interpolate(batch.permute(0, 3, 1, 2), h, w, method).permute(0, 2, 3, 1).contiguous()
    return out if t.dim() == 4 else out[0]


def resize_mask(t: torch.Tensor, h: int, w: int, method: str = "bilinear") -> torch.Tensor:
    """``[H,W]`` or ``[B,H,W]`` -> same layout at ``h x w``. Same size -> ``t`` itself."""
    h, w = int(h), int(w)
    if h < 1 or w < 1:
        raise InputError(f"target size is {w}x{h}; use at least 1x1.")
    if (int(t.shape[-2]), int(t.shape[-1])) == (h, w):
        return t
    batch = t if t.dim() == 3 else t.unsqueeze(0)
    out = _interpolate(batch.unsqueeze(1), h, w, method)[:, 0]
    return out if t.dim() == 3 else out[0]


# --------------------------------------------------------------------------------------------
# Compositing
# --------------------------------------------------------------------------------------------

def composite(original: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``original*(1-m) + edited*m`` for ``[B,H,W,3]`` pictures and a ``[B,H,W]`` mask.

    Computed with ``torch.lerp``, which is bit-exact at the ends: exactly ``original`` where
    ``m == 0`` or where ``edited == original``, exactly ``edited`` where ``m == 1``.
    """
    m = mask.unsqueeze(-1).to(original.dtype)
    return torch.lerp(original, edited.to(original.dtype), m)
