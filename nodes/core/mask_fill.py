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

    Cost: one copy of the pictures (the output); the fill itself touches only the mask's box (and,
    for ``surround``, a margin around it of half the box's longest side).
    """
    if mode not in FILL_MODES:
        raise InputError(f"mode is {mode!r}; use neutral or surround.")
    images = img.to_image_batch(image, name="image")
    masks = img.match_mask_to_image(img.to_mask_batch(mask, name="mask"), images)
    images, masks = img.broadcast_batch(images, masks)
    masks = masks.to(images.device, torch.float32)
    out = images.clone()
    for i in range(images.shape[0]):
        box = _box(masks[i])
        if box is None:
            continue
        y0, y1, x0, x1 = box
        if mode == "neutral":
            fill = torch.full_like(images[i, y0:y1, x0:x1], NEUTRAL_GREY)
        else:
            fill = _push_pull(images[i], masks[i], box)
        out[i, y0:y1, x0:x1] = img.composite(images[i : i + 1, y0:y1, x0:x1], fill[None], masks[i : i + 1, y0:y1, x0:x1])[0]
    return out


def _box(mask: torch.Tensor):
    """``(y0, y1, x0, x1)`` around the non-zero pixels of ``mask [H,W]``, ends exclusive; ``None`` when empty."""
    rows = torch.nonzero(mask.amax(dim=1) > 0).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(mask.amax(dim=0) > 0).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _push_pull(picture: torch.Tensor, mask: torch.Tensor, box) -> torch.Tensor:
    """The fill for ``box`` of ``picture [H,W,3]``: a smooth estimate pulled from the pixels ``mask`` keeps.

    Works on the box plus a margin of half its longest side: the fill at a pixel is decided by
    the known pixels around the hole at the hole's own scale, so farther pixels barely count.
    """
    height, width = int(mask.shape[0]), int(mask.shape[1])
    y0, y1, x0, x1 = box
    margin = max(max(y1 - y0, x1 - x0) // 2, 8)
    wy0, wy1, wx0, wx1 = max(0, y0 - margin), min(height, y1 + margin), max(0, x0 - margin), min(width, x1 + margin)
    weight = (1.0 - mask[wy0:wy1, wx0:wx1])[None]  # [1,h,w]
    # Premultiplied colour and its weight as one 4-channel stack, so each level is one pooling.
    level = torch.cat([picture[wy0:wy1, wx0:wx1].permute(2, 0, 1) * weight, weight])[None]
    levels = [level]
    while max(level.shape[-2:]) > 1:
        level = _push(level)
        levels.append(level)
    colour, weight = level[:, :3], level[:, 3:]
    estimate = torch.where(weight > 0, colour / weight.clamp_min(1e-12), torch.full_like(colour, NEUTRAL_GREY))
    for level in reversed(levels[1:-1]):
        estimate = level[:, :3] + (1.0 - level[:, 3:]) * _upsampled(estimate, level)
    # Level 0 takes the pulled estimate alone (the caller blends it in by the mask's value), and
    # only inside the box: upsample the coarse rows/columns it needs, one spare on each side.
    (r0, r1), (c0, c1) = _coarse_span(y0 - wy0, y1 - wy0, estimate.shape[-2]), _coarse_span(x0 - wx0, x1 - wx0, estimate.shape[-1])
    fine = F.interpolate(estimate[..., r0:r1, c0:c1], scale_factor=2, mode="bilinear", align_corners=False)
    inner = fine[0, :, y0 - wy0 - 2 * r0 : y1 - wy0 - 2 * r0, x0 - wx0 - 2 * c0 : x1 - wx0 - 2 * c0]
    return inner.permute(1, 2, 0).clamp_(0.0, 1.0)


def _coarse_span(start: int, stop: int, size: int) -> tuple[int, int]:
    """Coarse cells whose 2x bilinear upsampling gives fine cells ``start:stop`` exactly as a whole one would.

    Fine cell ``i`` reads coarse cells ``i//2 - 1 .. (i+1)//2``; a cut-out differs from the whole
    only in its outermost fine cells, so one spare coarse cell each side (none at the grid's edge).
    """
    return max(0, start // 2 - 1), min(size, (stop + 1) // 2 + 1)


def _upsampled(coarse: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``coarse`` upsampled 2x bilinearly onto ``like``'s grid (odd sides were padded going down)."""
    h, w = like.shape[-2:]
    return F.interpolate(coarse, size=(2 * ((h + 1) // 2), 2 * ((w + 1) // 2)), mode="bilinear", align_corners=False)[..., :h, :w]


def _push(level: torch.Tensor) -> torch.Tensor:
    """One level down: 2x2 blocks (odd sides padded with weight 0), weight = known share capped at 1.

    With ``a`` the blocks' means, the colour sum renormalised to the capped weight is
    ``a_colour * capped / a_weight`` (the factor 4 of the sums cancels).
    """
    h, w = level.shape[-2:]
    if h % 2 or w % 2:
        level = F.pad(level, (0, w % 2, 0, h % 2))
    mean = F.avg_pool2d(level, 2)
    weight = mean[:, 3:]
    capped = (weight * 4.0).clamp_(max=1.0)
    mean[:, :3] *= capped / weight.clamp_min(1e-12)
    mean[:, 3:] = capped
    return mean
