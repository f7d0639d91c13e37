"""Picture and mask plumbing shared by every node: shapes, sizes, PIL/PNG, compositing.

Conventions (ComfyUI's): an IMAGE is ``[B,H,W,3]`` float32 in 0..1; a MASK is ``[B,H,W]``
float32 in 0..1 where 1 means "change this pixel". Functions here never import ComfyUI.

Decisions worth knowing:

* RGBA input: the alpha channel is **dropped**, colours are kept as they are. In ComfyUI the
  transparency travels as a separate MASK (LoadImage splits it off), so compositing over black
  would darken pictures that merely carry an opaque alpha channel.
* A mask whose size differs from the picture is resized (bilinear, so soft edges stay soft) when the
  aspect ratios agree within 1 %; an *empty* mask is resized whatever its aspect, because LoadImage
  emits a 64x64 empty mask for every picture without alpha.
* Functions return their input unchanged (same object, no copy) when nothing needs changing.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

ASPECT_TOLERANCE = 0.01
FIT_MODES = ("resize", "pad")


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


def _aspect_matches(h1: int, w1: int, h2: int, w2: int) -> bool:
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
        if not _aspect_matches(mh, mw, ih, iw) and bool(mask.any()):
            raise InputError(f"{mask_name} is {mw}x{mh} but {image_name} is {iw}x{ih} (width x height), a different shape; use a mask made for this picture.")
        mask = resize_mask(mask, ih, iw)
    mb, ib = int(mask.shape[0]), int(image.shape[0])
    if mb == ib or ib == 1:
        return mask
    if mb == 1:
        return mask.expand(ib, ih, iw)
    raise InputError(f"{image_name} has {ib} pictures but {mask_name} has {mb}; give both the same count, or one of them a single one.")


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
# Size fitting (what a provider accepts) and its exact inverse
# --------------------------------------------------------------------------------------------

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


def _layout(t: torch.Tensor) -> str:
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


def _hw(t: torch.Tensor) -> tuple[int, int]:
    if _layout(t) == "image":
        return int(t.shape[-3]), int(t.shape[-2])
    return int(t.shape[-2]), int(t.shape[-1])


def _resize_any(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return resize_image(t, h, w) if _layout(t) == "image" else resize_mask(t, h, w)


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

    ``t``: image ``[H,W,C]``/``[B,H,W,C]`` or mask ``[H,W]``/``[B,H,W]`` (see :func:`_layout`).

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
    is_image = _layout(t) == "image"
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
        t = t[..., :rh, :rw, :] if _layout(t) == "image" else t[..., :rh, :rw]
    if _hw(t) != (fit.original_height, fit.original_width):
        t = _resize_any(t, fit.original_height, fit.original_width)
    return t


# --------------------------------------------------------------------------------------------
# PIL and bytes
# --------------------------------------------------------------------------------------------

def _to_uint8(t: torch.Tensor) -> np.ndarray:
    return (t.detach().to("cpu", torch.float32).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """``[H,W,3]`` (or ``[1,H,W,3]``, or any layout :func:`to_image_batch` takes) -> PIL "RGB"."""
    batch = to_image_batch(image, name="image")
    if batch.shape[0] != 1:
        raise InputError(f"image has {batch.shape[0]} pictures; convert one picture at a time.")
    return Image.fromarray(_to_uint8(batch[0]), mode="RGB")


def mask_to_pil(mask: torch.Tensor) -> Image.Image:
    """``[H,W]`` (or ``[1,H,W]``) 0..1 -> PIL "L" (0 black .. 255 white)."""
    batch = to_mask_batch(mask, name="mask")
    if batch.shape[0] != 1:
        raise InputError(f"mask has {batch.shape[0]} masks; convert one mask at a time.")
    return Image.fromarray(_to_uint8(batch[0]), mode="L")


def _high_depth_array(pil: Image.Image) -> Optional[np.ndarray]:
    """Grey 16/32-bit and float modes as float32 0..1 (PIL's convert('RGB') would clip them)."""
    if pil.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(pil.convert("I"), dtype=np.float64)
        top = 65535.0 if pil.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        return np.clip(values / top, 0.0, 1.0).astype(np.float32)
    if pil.mode == "F":
        return np.clip(np.asarray(pil, dtype=np.float32), 0.0, 1.0)
    return None


def pil_to_tensor(pil: Image.Image) -> torch.Tensor:
    """PIL picture of any mode -> ``[H,W,3]`` float32 0..1.

    Alpha (RGBA, LA, P with transparency) is dropped; CMYK/YCbCr/P are converted to RGB;
    16-bit grey is scaled by 1/65535 and repeated to RGB.
    """
    grey = _high_depth_array(pil)
    if grey is not None:
        return torch.from_numpy(grey).unsqueeze(-1).expand(-1, -1, 3).contiguous()
    if pil.mode == "P":
        pil = pil.convert("RGBA")
    if pil.mode != "RGB":
        pil = pil.convert("RGB")
    return torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).to(torch.float32) / 255.0


def pil_to_mask(pil: Image.Image) -> torch.Tensor:
    """PIL picture -> ``[H,W]`` float32 0..1: grey value (white = 1 = change).

    Colour pictures use PIL's "L" conversion (ITU-R 601: 0.299 R + 0.587 G + 0.114 B); alpha is
    ignored; 16-bit grey is scaled by 1/65535.
    """
    grey = _high_depth_array(pil)
    if grey is not None:
        return torch.from_numpy(grey)
    if pil.mode in ("RGBA", "LA", "P", "PA"):
        pil = pil.convert("RGBA").convert("RGB")
    if pil.mode != "L":
        pil = pil.convert("L")
    return torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).to(torch.float32) / 255.0


def encode_png(t: torch.Tensor, compress_level: int = 4) -> bytes:
    """``[H,W,3]`` picture or ``[H,W]`` mask -> 8-bit PNG bytes (RGB or grey)."""
    pil = mask_to_pil(t) if _layout(t) == "mask" else tensor_to_pil(t)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _open(data: Union[bytes, bytearray, memoryview], name: str) -> Image.Image:
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise InputError(f"{name} is empty; expected the bytes of a PNG, JPEG or WebP picture.")
    try:
        pil = Image.open(io.BytesIO(bytes(data)))
        pil.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        head = bytes(data[:16])
        raise InputError(f"{name} is not a picture PIL can read ({len(data)} bytes starting {head!r}): {type(error).__name__}.") from None
    # Phones store rotation in EXIF; LoadImage applies it too.
    return ImageOps.exif_transpose(pil)


def decode_image(data: bytes, name: str = "image data") -> torch.Tensor:
    """Bytes of any picture PIL reads -> ``[H,W,3]`` float32 0..1 (first frame; EXIF rotation applied)."""
    return pil_to_tensor(_open(data, name))


def decode_mask(data: bytes, name: str = "mask data") -> torch.Tensor:
    """Bytes of any picture PIL reads -> ``[H,W]`` float32 0..1 (grey value; white = change)."""
    return pil_to_mask(_open(data, name))


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


__all__ = [
    "SizeFit", "broadcast_batch", "composite", "decode_image", "decode_mask", "encode_png", "fit_size",
    "mask_to_pil", "match_mask_to_image", "pil_to_mask", "pil_to_tensor", "resize_image", "resize_mask",
    "tensor_to_pil", "to_image_batch", "to_mask_batch", "undo_fit",
]
