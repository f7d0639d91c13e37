"""Fill the masked part of a picture before an img2img-style edit at high strength.

* ``neutral``: mid grey, the usual "erase" of inpainting pipelines.
* ``surround``: a smooth fill pulled in from the pixels around the hole, by push-pull (a pyramid
  of weighted averages, Gortler et al. 1996 "The Lumigraph"): going down, each level averages the
  known pixels of 2x2 blocks (weight = how much of the block is known, at most 1); going up, each
  level keeps what it knows and takes the rest from the coarser level, upsampled bilinearly. Every
  level is a quarter of the one before, so the cost is linear in the picture (4/3 of one pass).

Outside the mask the picture is untouched, bit for bit; soft masks blend the fill in by their value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import images as img
from .errors import InputError

FILL_MODES = ("neutral", "surround")
NEUTRAL_GREY = 0.5


def fill_masked(image: torch.Tensor, mask: torch.Tensor, mode: str = "neutral") -> torch.Tensor:
    """``image [B,H,W,3]`` with the ``mask [B,H,W]`` area filled -> ``[B,H,W,3]`` float32.

    ``lerp(image, fill, mask)``: exactly the image where the mask is 0, exactly the fill where it is
    1. A mask of another size with the same aspect is resized; batches of 1 broadcast. An empty mask
    returns the pictures unchanged; a full mask under ``surround`` (nothing to pull from) fills grey.
    """
    if mode not in FILL_MODES:
        raise InputError(f"mode is {mode!r}; use neutral or surround.")
    images = img.to_image_batch(image, name="image")
    masks = img.match_mask_to_image(img.to_mask_batch(mask, name="mask"), images)
    images, masks = img.broadcast_batch(images, masks)
    masks = masks.to(images.device, torch.float32)
    if not bool(masks.any()):
        return images
    if mode == "neutral":
        fill = torch.full_like(images, NEUTRAL_GREY)
    else:
        fill = torch.stack([_push_pull(images[i], masks[i]) for i in range(images.shape[0])])
    return img.composite(images, fill, masks)


def _push_pull(picture: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``picture [H,W,3]``, ``mask [H,W]`` -> ``[H,W,3]`` smooth estimate, pulled from the pixels the mask keeps.

    Only the mask's box plus a margin as large as the box is worked on (the fill at a pixel is
    decided by the known pixels around the hole at the hole's scale), the rest is the picture.
    """
    height, width = int(mask.shape[0]), int(mask.shape[1])
    rows = torch.nonzero(mask.amax(dim=1) > 0).flatten()
    cols = torch.nonzero(mask.amax(dim=0) > 0).flatten()
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    margin = max(y1 - y0, x1 - x0, 8)
    y0, y1, x0, x1 = max(0, y0 - margin), min(height, y1 + margin), max(0, x0 - margin), min(width, x1 + margin)
    weight = (1.0 - mask[y0:y1, x0:x1])[None, None]  # [1,1,h,w]
    colour = picture[y0:y1, x0:x1].permute(2, 0, 1)[None] * weight  # premultiplied [1,3,h,w]
    levels = [(colour, weight)]
    while max(weight.shape[-2:]) > 1:
        colour, weight = _push(colour, weight)
        levels.append((colour, weight))
    coarse_colour, coarse_weight = levels[-1]
    estimate = torch.where(coarse_weight > 0, coarse_colour / coarse_weight.clamp_min(1e-12),
                           torch.full_like(coarse_colour, NEUTRAL_GREY))
    for colour, weight in reversed(levels[1:-1]):
        estimate = colour + (1.0 - weight) * _upsampled(estimate, colour)
    # Level 0 takes the pulled estimate alone: the caller blends it in by the mask's value.
    estimate = _upsampled(estimate, levels[0][0])
    out = picture.clone()
    out[y0:y1, x0:x1] = estimate[0].permute(1, 2, 0).clamp_(0.0, 1.0)
    return out


def _upsampled(coarse: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``coarse`` upsampled 2x bilinearly onto ``like``'s grid (odd sides were padded going down)."""
    h, w = like.shape[-2:]
    return F.interpolate(coarse, size=(2 * ((h + 1) // 2), 2 * ((w + 1) // 2)), mode="bilinear", align_corners=False)[..., :h, :w]


def _push(colour: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One level down: 2x2 sums (odd sides padded with weight 0), weight capped at 1, colour renormalised."""
    h, w = colour.shape[-2:]
    pad = (0, w % 2, 0, h % 2)
    colour_sum = F.avg_pool2d(F.pad(colour, pad), 2) * 4.0
    weight_sum = F.avg_pool2d(F.pad(weight, pad), 2) * 4.0
    capped = weight_sum.clamp(max=1.0)
    return colour_sum * (capped / weight_sum.clamp_min(1e-12)), capped
