"""Picture and mask plumbing shared by every node: shapes, sizes, PIL/PNG, compositing.

This module holds the PIL/bytes theme and is the one import surface for all of it
(``from . import images as img``): tensor layouts, resizing and compositing live in
:mod:`.image_tensors`, size fitting in :mod:`.image_fit`; both are re-exported here.

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
from typing import Optional, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError
from .image_fit import FIT_MODES, SizeFit, fit_size, undo_fit
from .image_tensors import (ASPECT_TOLERANCE, aspect_matches, broadcast_batch, composite, match_mask_to_image,
                            picture_layout, resize_image, resize_mask, to_image_batch, to_mask_batch)


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
    pil = mask_to_pil(t) if picture_layout(t) == "mask" else tensor_to_pil(t)
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


__all__ = [
    "ASPECT_TOLERANCE", "FIT_MODES", "SizeFit", "aspect_matches", "broadcast_batch", "composite", "decode_image",
    "decode_mask", "encode_png", "fit_size", "mask_to_pil", "match_mask_to_image", "picture_layout", "pil_to_mask",
    "pil_to_tensor", "resize_image", "resize_mask", "tensor_to_pil", "to_image_batch", "to_mask_batch", "undo_fit",
]
