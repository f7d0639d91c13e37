"""The sandbox's visible, deterministic edit and its image encoding."""

from __future__ import annotations

import hashlib
import io
from typing import Optional

import numpy as np
from PIL import Image


def seed_colour(seed: int) -> np.ndarray:
    digest = hashlib.sha256(str(int(seed)).encode()).digest()
    return np.array([digest[0], digest[1], digest[2]], dtype=np.float32)


def render(image: Image.Image, mask: Optional[Image.Image], seed: int, strength: float) -> Image.Image:
    """img2img: tint toward the seed colour by 0.25 + 0.5 * strength; inpaint: invert + tint inside the mask."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    colour = seed_colour(seed)
    if mask is None:
        amount = 0.25 + 0.5 * max(0.0, min(1.0, float(strength)))
        out = pixels * (1.0 - amount) + colour * amount
    else:
        weight = np.asarray(mask.convert("L"), dtype=np.float32)[..., None] / 255.0
        edited = 0.5 * (255.0 - pixels) + 0.5 * colour
        out = pixels * (1.0 - weight) + edited * weight
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")


def encode(picture: Image.Image, fmt: str = "png") -> tuple[bytes, str]:
    buffer = io.BytesIO()
    fmt = fmt.lower()
    if fmt in ("jpg", "jpeg"):
        picture.save(buffer, format="JPEG", quality=95)
        return buffer.getvalue(), "image/jpeg"
    if fmt == "webp":
        picture.save(buffer, format="WEBP", lossless=True)
        return buffer.getvalue(), "image/webp"
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), "image/png"


__all__ = ["seed_colour", "render", "encode"]
