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

import numpy as np
import torch

from . import images as img
from .errors import InputError
from .mask_feather import mask_bbox

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
    # The output: one copy (numpy's single-threaded copy on the CPU, 2x faster than torch's
    # two threads on a shared 2-core machine).
    out = torch.from_numpy(images.numpy().copy()) if images.device.type == "cpu" else images.clone()
    for i in range(images.shape[0]):
        box = mask_bbox(masks[i])
        if box is None:
            continue
        x0, y0, x1, y1 = box
        if mode == "neutral":
            fill = torch.full_like(images[i, y0:y1, x0:x1], NEUTRAL_GREY)
        else:
            fill = _push_pull(images[i], masks[i], (y0, y1, x0, x1))
        out[i, y0:y1, x0:x1] = img.composite(images[i : i + 1, y0:y1, x0:x1], fill[None], masks[i : i + 1, y0:y1, x0:x1])[0]
    return out


def _push_pull(picture: torch.Tensor, mask: torch.Tensor, box) -> torch.Tensor:
    """The fill for ``box`` of ``picture [H,W,3]``: a smooth estimate pulled from the pixels ``mask`` keeps.

    Works on the box plus a margin of half its longest side: the fill at a pixel is decided by
    the known pixels around the hole at the hole's own scale, so farther pixels barely count.
    Runs in numpy, single-threaded: the same code in torch took 2-5x longer on the shared 2-core
    machine (each of its ~90 operations waits for both of its threads; ``bench/bench_masks.py``).
    """
    height, width = int(mask.shape[0]), int(mask.shape[1])
    y0, y1, x0, x1 = box
    margin = max(max(y1 - y0, x1 - x0) // 2, 8)
    wy0, wy1, wx0, wx1 = max(0, y0 - margin), min(height, y1 + margin), max(0, x0 - margin), min(width, x1 + margin)
    weight = 1.0 - mask[wy0:wy1, wx0:wx1].detach().cpu().numpy().astype(np.float32)
    # Premultiplied colour and its weight as one [4,h,w] stack, so each level is one block sum.
    level = np.empty((4, *weight.shape), np.float32)
    np.multiply(picture[wy0:wy1, wx0:wx1].detach().cpu().numpy().transpose(2, 0, 1), weight, out=level[:3])
    level[3] = weight
    levels = [level]
    while max(level.shape[1:]) > 1:
        level = push_down(level)
        levels.append(level)
    colour, known = level[:3], level[3:]
    estimate = np.where(known > 0, colour / np.maximum(known, 1e-12), np.float32(NEUTRAL_GREY)).astype(np.float32)
    for level in reversed(levels[1:-1]):
        h, w = level.shape[1:]
        estimate = level[:3] + (1.0 - level[3:]) * upsample2(estimate)[:, :h, :w]
    # Level 0 takes the pulled estimate alone (the caller blends it in by the mask's value), and
    # only inside the box: upsample the coarse rows/columns it needs, one spare on each side.
    (r0, r1), (c0, c1) = coarse_span(y0 - wy0, y1 - wy0, estimate.shape[1]), coarse_span(x0 - wx0, x1 - wx0, estimate.shape[2])
    fine = upsample2(estimate[:, r0:r1, c0:c1])
    inner = fine[:, y0 - wy0 - 2 * r0 : y1 - wy0 - 2 * r0, x0 - wx0 - 2 * c0 : x1 - wx0 - 2 * c0]
    out = torch.from_numpy(np.ascontiguousarray(inner.transpose(1, 2, 0)))
    return out.clamp_(0.0, 1.0).to(picture.device)


def coarse_span(start: int, stop: int, size: int) -> tuple[int, int]:
    """Coarse cells whose 2x upsampling gives fine cells ``start:stop`` exactly as a whole one would.

    Fine cell ``i`` reads coarse cells ``i//2 - 1 .. (i+1)//2``; a cut-out differs from the whole
    only in its outermost fine cells, so one spare coarse cell each side (none at the grid's edge).
    """
    return max(0, start // 2 - 1), min(size, (stop + 1) // 2 + 1)


def upsample2(coarse: np.ndarray) -> np.ndarray:
    """``[C,h,w]`` -> ``[C,2h,2w]`` bilinear, half-pixel centres, edges repeated (torch's
    ``interpolate(scale_factor=2, mode="bilinear", align_corners=False)``, done separably)."""
    return upsample_axis(upsample_axis(coarse, 1, 0, 2 * coarse.shape[1]), 2, 0, 2 * coarse.shape[2])


def upsample_axis(coarse: np.ndarray, axis: int, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
    """Fine cells ``start:stop`` along ``axis`` of ``coarse`` upsampled 2x: fine ``2k`` is
    ``3/4 c[k] + 1/4 c[k-1]``, fine ``2k+1`` is ``3/4 c[k] + 1/4 c[k+1]`` (a missing neighbour: ``c[k]``),
    written into ``out`` (any strided view) if given.

    Strided slices and one add per parity: 2-3x faster than gathering the taps with ``np.take``
    (and than torch's two-thread gathers on the shared 2-core machine)."""
    def cut(array: np.ndarray, part: slice) -> np.ndarray:
        index = [slice(None)] * array.ndim
        index[axis] = part
        return array[tuple(index)]

    if out is None:
        shape = list(coarse.shape)
        shape[axis] = stop - start
        out = np.empty(shape, np.float32)
    size = coarse.shape[axis]
    # fine 2k = c[k] - step[k-1], fine 2k+1 = c[k] + step[k], with step[k] = (c[k+1] - c[k]) / 4:
    # one temporary instead of 3/4 c and 1/4 c.
    step = np.subtract(cut(coarse, slice(1, None)), cut(coarse, slice(None, -1)))
    step *= np.float32(0.25)
    for parity, ufunc in ((0, np.subtract), (1, np.add)):
        first = start + (parity - start) % 2
        if first >= stop:
            continue
        k0, count = (first - parity) // 2, (stop - first + 1) // 2
        target = cut(out, slice(first - start, None, 2))
        # Cells whose neighbour lies past the level's edge repeat their own value.
        low = 1 if parity == 0 and k0 == 0 else 0
        high = 1 if parity == 1 and k0 + count == size else 0
        shift = -1 if parity == 0 else 0
        ufunc(cut(coarse, slice(k0 + low, k0 + count - high)), cut(step, slice(k0 + low + shift, k0 + count - high + shift)),
              out=cut(target, slice(low, count - high)))
        if low:
            cut(target, slice(0, 1))[...] = cut(coarse, slice(k0, k0 + 1))
        if high:
            cut(target, slice(count - 1, count))[...] = cut(coarse, slice(k0 + count - 1, k0 + count))
    return out


def push_down(level: np.ndarray) -> np.ndarray:
    """One level down: 2x2 block sums (odd sides padded with weight 0), weight capped at 1, colour renormalised."""
    _, h, w = level.shape
    if h % 2 or w % 2:
        level = np.pad(level, ((0, 0), (0, h % 2), (0, w % 2)))
    summed = level[:, 0::2, 0::2] + level[:, 1::2, 0::2]
    summed += level[:, 0::2, 1::2]
    summed += level[:, 1::2, 1::2]
    weight = summed[3].copy()
    capped = np.minimum(weight, 1.0)
    summed[:3] *= capped / np.maximum(weight, 1e-12)
    summed[3] = capped
    return summed
