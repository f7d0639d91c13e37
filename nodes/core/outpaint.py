"""Extend the canvas past the picture's borders for outpainting: the larger picture and its mask.

The original pixels stay in place, bit for bit. The new area is filled so that a model continues
the picture rather than a flat band:

* ``surround``: the push-pull fill of :mod:`.mask_fill` (a pyramid of weighted averages pulled in
  from the picture), which fades to the picture's broad colours farther out. Push-pull alone
  jumps at the border (the pixel next to it is mostly a coarse-level average: 4-10x the largest
  step between neighbouring pixels inside, on smooth pictures), so over the first ``SEAM_BLEND`` pixels
  it is blended in from a continuation of the border pixels, blurred more the farther out (box
  half-width = distance), with a smoothstep weight (:func:`_blend_seams`): at the seam the fill
  jumps no more than neighbouring pixels inside do, and it does not streak.
* ``edge``: each border pixel repeated outwards (stripes, the "stretched edges" of core padding).
* ``neutral``: mid grey.

The mask is 1 on the new area and, over ``overlap`` pixels inside each extended side, falls linearly
to 0, so an inpaint may blend its continuation into the original's edge (Stitch and Inpaint's
``keep_unmasked`` paste through it).

Chain: ExtendCanvas -> CropToMask (``target_edge``) -> Inpaint -> Stitch: only the border region is
sent, at the model's size, and everything away from the overlap stays the original.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from . import images as img
from .errors import InputError
from .mask_fill import NEUTRAL_GREY, coarse_span, push_down, upsample2, upsample_axis

EXTEND_FILL_MODES = ("surround", "edge", "neutral")
MAX_EXTEND = 4096
MAX_OVERLAP = 1024
#: ComfyUI's largest picture side (nodes.MAX_RESOLUTION).
MAX_SIDE = 16384
#: surround: pixels over which the continuation of the border blends into the push-pull fill.
SEAM_BLEND = 64


def extend_canvas(image: torch.Tensor, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0,
                  fill: str = "surround", overlap: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``image [B,H,W,3]`` -> ``(pictures [B,H',W',3], masks [B,H',W'])``, ``H' = top + H + bottom``.

    ``pictures[:, top:top+H, left:left+W]`` is ``image`` exactly. ``masks`` is 1 on the new area,
    ``1 - (d + 1) / (overlap + 1)`` at ``d`` pixels inside an extended side (the highest over the
    sides) and 0 from ``overlap`` pixels in: sides extended by 0 get no ramp.

    Cost: one write of the output; ``surround`` reads the picture once more for its half-size
    pyramid and computes the fill at full size only on the new area (``bench/bench_outpaint.py``).
    """
    left, top, right, bottom, overlap = (int(v) for v in (left, top, right, bottom, overlap))
    for name, value in (("left", left), ("top", top), ("right", right), ("bottom", bottom)):
        if not 0 <= value <= MAX_EXTEND:
            raise InputError(f"{name} is {value} pixels; use 0 to {MAX_EXTEND}.")
    if not 0 <= overlap <= MAX_OVERLAP:
        raise InputError(f"overlap is {overlap} pixels; use 0 to {MAX_OVERLAP}.")
    if fill not in EXTEND_FILL_MODES:
        raise InputError(f"fill is {fill!r}; use surround, edge or neutral.")
    images = img.to_image_batch(image, name="image")
    count, height, width = (int(s) for s in images.shape[:3])
    new_h, new_w = top + height + bottom, left + width + right
    if max(new_h, new_w) > MAX_SIDE:
        raise InputError(f"the extended picture would be {new_w}x{new_h} pixels, more than ComfyUI's {MAX_SIDE} per side; "
                         f"extend the {width}x{height} picture by less.")
    # The fills work on CPU memory in place (ComfyUI's IMAGE and MASK tensors live there anyway).
    device, images = images.device, images.cpu()
    masks = _extend_mask(height, width, left, top, right, bottom, overlap).expand(count, -1, -1).contiguous()
    out = torch.empty((count, new_h, new_w, 3), dtype=torch.float32)
    out[:, top:top + height, left:left + width] = images
    inside = slice(left, left + width)
    if fill == "edge":
        # Rows first (above and below the picture), then whole columns, which carries the corners.
        out[:, :top, inside] = out[:, top:top + 1, inside]
        out[:, top + height:, inside] = out[:, top + height - 1:top + height, inside]
        out[:, :, :left] = out[:, :, left:left + 1]
        out[:, :, left + width:] = out[:, :, left + width - 1:left + width]
    elif fill == "neutral":
        for band in (out[:, :top], out[:, top + height:], out[:, top:top + height, :left], out[:, top:top + height, left + width:]):
            band.fill_(NEUTRAL_GREY)
    elif (new_h, new_w) != (height, width):
        for i in range(count):
            _surround_fill(images[i], out[i], left, top)
            _blend_seams(images[i], out[i], left, top)
    return out.to(device), masks.to(device)


def _extend_mask(height: int, width: int, left: int, top: int, right: int, bottom: int, overlap: int) -> torch.Tensor:
    """``[1,H',W']``: 1 outside the picture, the ramps inside it along the extended sides."""
    def ramps(size: int, before: int, after: int) -> torch.Tensor:
        # 1-D ramp along one axis of the original: max of the ramps from its two ends (if extended).
        inside = torch.arange(size, dtype=torch.float32)
        ramp = torch.zeros(size)
        step = 1.0 / (overlap + 1)
        if before:
            ramp = torch.maximum(ramp, (1.0 - (inside + 1) * step).clamp_(min=0.0))
        if after:
            ramp = torch.maximum(ramp, (1.0 - (size - inside) * step).clamp_(min=0.0))
        return ramp

    # Written once: 1 on the four bands of the new area, the ramps (or 0) inside.
    mask = torch.empty((1, top + height + bottom, left + width + right), dtype=torch.float32)
    mask[0, :top].fill_(1.0)
    mask[0, top + height:].fill_(1.0)
    mask[0, top:top + height, :left].fill_(1.0)
    mask[0, top:top + height, left + width:].fill_(1.0)
    inner = mask[0, top:top + height, left:left + width]
    inner.zero_()
    if overlap:
        # The ramps are non-zero only within ``overlap`` of an extended side: compute them on those strips.
        down, across = ramps(height, top, bottom), ramps(width, left, right)
        reach_y, reach_x = min(overlap, height), min(overlap, width)
        strips = [(slice(0, reach_y) if top else None, slice(None)), (slice(height - reach_y, height) if bottom else None, slice(None)),
                  (slice(None), slice(0, reach_x) if left else None), (slice(None), slice(width - reach_x, width) if right else None)]
        for rows, cols in strips:
            if rows is not None and cols is not None:
                torch.maximum(down[rows][:, None], across[cols][None, :], out=inner[rows, cols])
    return mask


def _surround_fill(picture: torch.Tensor, out: torch.Tensor, left: int, top: int) -> None:
    """Write the push-pull fill into the new area of ``out [H',W',3]`` (the picture's own area is left to the caller).

    :func:`.mask_fill.fill_masked` with ``surround`` on the extended canvas and its mask (to float
    rounding, 1e-6: tested), computed without the full-size canvas. A pyramid cell holding any picture pixel gets weight 1
    (the weight is capped) and the mean of those pixels; a cell holding none is unknown. So on
    the new area the finest level's estimate is the coarser one upsampled, levels 1 and 2 are the
    picture's block means alone, and levels 1 and 0 are pulled only over the new area (plus a
    cell). 2-3x faster than fill_masked on the canvas (``bench/bench_outpaint.py``).
    """
    height, width = int(picture.shape[0]), int(picture.shape[1])
    new_h, new_w = int(out.shape[0]), int(out.shape[1])
    # Level 1: row pairs on the [H,W,3] picture (long contiguous rows), then columns on [3,h,W].
    rows = _pair_mean(picture.detach().cpu().numpy(), 0, top % 2, halve=False)  # sums: halved below, at 1/4 the size
    level_one = np.empty((3, rows.shape[0], (left % 2 + width + 1) // 2), np.float32)
    # the transpose folded in (as in _upsampled); one channel a task
    _in_parallel(lambda channel: _pair_mean(rows[..., channel], 1, left % 2, out=level_one[channel]), [(c,) for c in range(3)])
    level_one *= np.float32(0.5)
    one_at = (top // 2, left // 2)
    level_two = _pair_mean(_pair_mean(level_one, 1, one_at[0] % 2), 2, one_at[1] % 2)
    # Level 2 and coarser over the whole canvas, as fill_masked does: [4,h,w] of colour and weight.
    level = np.zeros((4, (new_h + 3) // 4, (new_w + 3) // 4), np.float32)
    y, x = one_at[0] // 2, one_at[1] // 2
    level[:3, y:y + level_two.shape[1], x:x + level_two.shape[2]] = level_two
    level[3, y:y + level_two.shape[1], x:x + level_two.shape[2]] = 1.0
    levels = [level]
    while max(levels[-1].shape[1:]) > 1:
        levels.append(push_down(levels[-1]))
    colour, known = levels[-1][:3], levels[-1][3:]
    estimate = np.where(known > 0, colour / np.maximum(known, 1e-12), np.float32(NEUTRAL_GREY)).astype(np.float32)
    for level in reversed(levels[:-1]):
        h, w = level.shape[1:]
        estimate = level[:3] + (1.0 - level[3:]) * upsample2(estimate)[:, :h, :w]
    # Push-pull estimates are weighted means of the picture's colours: clamping the coarse estimate
    # (bilinear upsampling keeps the range) spares a pass over the full-size fill.
    np.clip(estimate, 0.0, 1.0, out=estimate)
    # The new area as up to four bands: top and bottom across the whole width, left and right beside the picture.
    bands = ((0, top, 0, new_w), (top + height, new_h, 0, new_w),
             (top, top + height, 0, left), (top, top + height, left + width, new_w))

    def fill_band(y0: int, y1: int, x0: int, x1: int) -> None:
        (r0, r1), (c0, c1) = coarse_span(y0, y1, (new_h + 1) // 2), coarse_span(x0, x1, (new_w + 1) // 2)
        half = _upsampled(estimate, (0, 0), r0, r1, c0, c1)
        # Where level 1 knows the picture, its estimate is the picture's block mean.
        ky0, ky1 = max(r0, one_at[0]), min(r1, one_at[0] + level_one.shape[1])
        kx0, kx1 = max(c0, one_at[1]), min(c1, one_at[1] + level_one.shape[2])
        if ky1 > ky0 and kx1 > kx0:
            half[:, ky0 - r0:ky1 - r0, kx0 - c0:kx1 - c0] = level_one[:, ky0 - one_at[0]:ky1 - one_at[0], kx0 - one_at[1]:kx1 - one_at[1]]
        _upsampled(half, (r0, c0), y0, y1, x0, x1, out=out[y0:y1, x0:x1].numpy())

    _in_parallel(fill_band, [band for band in bands if band[1] > band[0] and band[3] > band[2]])


def _in_parallel(work, items: list) -> None:
    """``work(*item)`` for each item, on two threads: the bands are independent and numpy's ufuncs
    release the GIL, so the second core does half of the memory-bound upsampling (1.3x faster on
    the 2-core machine, ``bench/bench_outpaint.py``)."""
    if len(items) < 2:
        for item in items:
            work(*item)
        return
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(work, *item) for item in items]:
            done.result()


def _blend_seams(picture: torch.Tensor, out: torch.Tensor, left: int, top: int) -> None:
    """Blend the fill within ``SEAM_BLEND`` pixels of the picture into the border continued outwards.

    Each extended side continues its border line (the picture's outer row or column, its end
    pixels repeated past the corners): at ``d`` pixels out, the mean of the line over ``d`` either
    side. The pixel becomes ``lerp(continuation, fill, smoothstep(dist / SEAM_BLEND))``, ``dist``
    the Chebyshev distance to the picture. In a corner both sides' continuations meet, weighted
    by their own distances (``dy / (dx + dy)`` for the top or bottom one), so each hands over
    smoothly to the band beside it.
    """
    height, width = int(picture.shape[0]), int(picture.shape[1])
    new_h, new_w = int(out.shape[0]), int(out.shape[1])
    pixels = picture.detach().cpu().numpy()
    canvas = out.numpy()
    bottom, right = new_h - top - height, new_w - left - width
    # The outer rows and columns, continued past the corners by their end pixels.
    along_x = pixels[[0, -1]][:, np.clip(np.arange(new_w) - left, 0, width - 1)]
    along_y = pixels[:, [0, -1]][np.clip(np.arange(new_h) - top, 0, height - 1)]
    # side -> (band [depth, length, 3] of the canvas from the seam outwards, border line [length, 3], picture's span on the line)
    sides = {}
    if top:
        sides["top"] = (canvas[max(0, top - SEAM_BLEND):top][::-1], along_x[0], (left, left + width))
    if bottom:
        sides["bottom"] = (canvas[top + height:top + height + SEAM_BLEND], along_x[-1], (left, left + width))
    if left:
        sides["left"] = (canvas[:, max(0, left - SEAM_BLEND):left][:, ::-1].transpose(1, 0, 2), along_y[:, 0], (top, top + height))
    if right:
        sides["right"] = (canvas[:, left + width:left + width + SEAM_BLEND].transpose(1, 0, 2), along_y[:, -1], (top, top + height))
    continued = {}

    def blend_side(name: str) -> None:
        band, line, (start, stop) = sides[name]
        continued[name] = _continued(line, band.shape[0])
        weight = _smoothstep(np.arange(1, band.shape[0] + 1) / SEAM_BLEND)[:, None, None]
        part, along = band[:, start:stop], continued[name][:, start:stop]
        part -= along  # lerp(along, fill, weight) in place
        part *= weight
        part += along

    _in_parallel(blend_side, [(name,) for name in sides])
    for across in ("top", "bottom"):
        for beside in ("left", "right"):
            if across not in sides or beside not in sides:
                continue
            dy = np.arange(1, sides[across][0].shape[0] + 1)
            dx = np.arange(1, sides[beside][0].shape[0] + 1)
            ys = top - dy if across == "top" else top + height - 1 + dy
            xs = left - dx if beside == "left" else left + width - 1 + dx
            from_across = continued[across][:, xs]  # [dy, dx, 3]
            from_beside = continued[beside][:, ys].transpose(1, 0, 2)
            dyg, dxg = dy[:, None, None], dx[None, :, None]
            meeting = (dyg * from_across + dxg * from_beside) / (dxg + dyg)
            weight = _smoothstep(np.maximum(dyg, dxg) / SEAM_BLEND)
            corner = np.ix_(ys, xs)
            canvas[corner] = meeting + (canvas[corner] - meeting) * weight


def _continued(line: np.ndarray, depth: int) -> np.ndarray:
    """``[depth, n, 3]``: row ``d - 1`` is ``line [n,3]`` averaged over ``d`` cells either side (clipped at its ends).

    A window growing by one cell each side per row: two shifted adds per row (float32 sums of at most
    ``2 depth + 1`` values), 3x faster than differences of a float64 running sum gathered at both ends."""
    length = line.shape[0]
    padded = np.zeros((length + 2 * depth, 3), np.float32)
    padded[depth:depth + length] = line
    inside = np.zeros(length + 2 * depth, np.float32)
    inside[depth:depth + length] = 1.0
    sums, counts = line.astype(np.float32), np.ones(length, np.float32)
    out = np.empty((depth, length, 3), np.float32)
    for d in range(1, depth + 1):
        sums = sums + padded[depth - d:depth - d + length] + padded[depth + d:depth + d + length]
        counts = counts + inside[depth - d:depth - d + length] + inside[depth + d:depth + d + length]
        np.divide(sums, counts[:, None], out=out[d - 1])
    return out


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.minimum(t, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def _pair_mean(values: np.ndarray, axis: int, offset: int, out: np.ndarray | None = None, halve: bool = True) -> np.ndarray:
    """Means of pairs of cells along ``axis``, the first pair starting ``offset`` (0 or 1) cells
    before ``values``: a cell without a partner (at either end) is its own mean. ``halve`` False:
    pairs are left as sums and lone cells doubled (the caller halves later, on less data)."""
    def cut(array: np.ndarray, part: slice) -> np.ndarray:
        index = [slice(None)] * array.ndim
        index[axis] = part
        return array[tuple(index)]

    size = values.shape[axis]
    shape = list(values.shape)
    shape[axis] = (offset + size + 1) // 2
    out = np.empty(shape, np.float32) if out is None else out
    pairs = (size - offset) // 2
    body = cut(out, slice(offset, offset + pairs))
    np.add(cut(values, slice(offset, offset + 2 * pairs, 2)), cut(values, slice(offset + 1, offset + 2 * pairs, 2)), out=body)
    if halve:
        body *= np.float32(0.5)
    lone = np.float32(1.0 if halve else 2.0)
    if offset:
        np.multiply(cut(values, slice(0, 1)), lone, out=cut(out, slice(0, 1)))
    if offset + 2 * pairs < size:
        np.multiply(cut(values, slice(-1, None)), lone, out=cut(out, slice(-1, None)))
    return out


def _upsampled(coarse: np.ndarray, origin: tuple[int, int], y0: int, y1: int, x0: int, x1: int,
               out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``y0:y1``, columns ``x0:x1`` of the 2x bilinear upsampling (:func:`.mask_fill.upsample2`)
    of a ``[3,h,w]`` level of which ``coarse`` holds the cells from ``origin``: all that
    :func:`.mask_fill.coarse_span` names for those rows and columns, so a neighbour missing from
    ``coarse`` is past the level's edge (whose cell is repeated). ``[3,h,w]``, or written into
    ``out [h,w,3]``."""
    if out is None:
        rows = upsample_axis(coarse, 1, y0 - 2 * origin[0], y1 - 2 * origin[0])
        return upsample_axis(rows, 2, x0 - 2 * origin[1], x1 - 2 * origin[1])
    # Columns first, on [3,h,w] (long rows); that half-size result turned to [h,w,3] (torch's
    # transposing copy); rows last, straight into ``out``, whose rows are contiguous there. 1.5x
    # faster than rows first and then columns written one channel at a time into ``out``.
    columns = upsample_axis(coarse, 2, x0 - 2 * origin[1], x1 - 2 * origin[1])
    interleaved = torch.from_numpy(columns).permute(1, 2, 0).contiguous().numpy()
    return upsample_axis(interleaved, 0, y0 - 2 * origin[0], y1 - 2 * origin[0], out=out)
