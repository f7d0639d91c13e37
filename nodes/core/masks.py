"""Mask maths: grow/shrink, feather, mask from a picture, crop around a mask and stitch back.

Masks are ``[B,H,W]`` (or ``[H,W]``) float32 in 0..1, 1 = change. Everything here costs the same
whatever the radius: no ``(2r+1)^2`` kernels and no ``r`` repeated passes.

Grow and shrink are *grey* morphology with a flat structuring element (``out = max`` or ``min`` of
the mask over a neighbourhood), so soft masks keep their soft values. Only pixels inside the picture
count: a pixel near the border looks at the part of its neighbourhood that lies inside. This is
exactly what ComfyUI's GrowMask gives (scipy ``grey_dilation`` with a 3x3 footprint, border mode
"reflect", repeated ``|pixels|`` times):

* ``square``  (GrowMask with ``tapered_corners=False``): the ``(2r+1)^2`` square, done as two 1-D
  running max/min passes (van Herk / Gil-Werman: 3 comparisons per pixel for any radius).
* ``diamond`` (GrowMask with ``tapered_corners=True``): the L1 ball ``|dx|+|dy| <= r``. It is the
  Minkowski sum of a 45-degree square (two diagonal running max passes of half the radius) and one
  or two 3x3 crosses. The diagonal passes run as *column* passes on a flat buffer whose rows are
  padded: reading a row-major buffer with row length ``S+1`` walks down the diagonals (see
  :func:`_diamond`).
* ``round``: the Euclidean disk ``dx^2+dy^2 <= r^2``. Binary masks are exact, through a separable
  distance test (:func:`_disk_dilate_binary`). Soft masks are done level by level: each level set
  ``mask >= k/32`` is grown by the exact disk, and a pixel gets the highest level that reaches it
  (its own value when that is higher). So values in the grown band are rounded down to a multiple
  of 1/32; the cost is flat in the radius but grows with the number of levels present (<= 32).

The 1-D running max/min/sum works in place on whole rows (numpy, one vectorised operation per
window offset) and keeps its temporaries to column bands, so the peak extra memory (result
included, measured in ``bench/bench_masks.py``) is about 1.5x the mask for square/diamond on binary
masks (they run as bytes), 2x for square and feather, 2.7x for round (3.2x soft), and 2-2.3x for
diamond on soft masks up to r = 256 on 2048x2048. Diamond's buffer needs more than ``r`` padding
cells per row, so on soft masks it grows when ``r`` nears the picture's size (4x at r = 0.7 x side,
7x at r = 2 x side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from . import images as img
from .errors import InputError

GROW_SHAPES = ("round", "diamond", "square")
FEATHER_MODES = ("outward", "inward", "centered")
ROUND_SOFT_LEVELS = 32
_WORK_ELEMENTS = 1 << 22  # running max/min/sum temporaries: at most ~16 MB (float32) at a time
_MIN_BAND_ELEMENTS = 1 << 18  # diamond: temporaries are max(half the mask, this) elements
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, the same as PIL's "L" conversion


# ============================================================================================
# 1-D running max/min (van Herk / Gil-Werman) along axis 0, in place
# ============================================================================================

def _running_extreme_rows(x: np.ndarray, radius: int, dilate: bool, op=None, budget: int = 0) -> None:
    """In place: ``x[i] = max (or min) of x[i-radius : i+radius+1]``, rows outside ``x`` ignored.

    ``op`` overrides max/min with any associative ufunc (``np.add`` gives running sums).
    ``budget``: elements of temporaries at a time (columns are processed in bands).

    ``x``: ``[N, C]`` float32 whose rows are contiguous (a reshape of a contiguous buffer).
    Cost for any radius: 3 comparisons per element, plus ~3 Python-level row operations per
    window offset. Extra memory: one copy of ``x`` (the suffix maxima).

    Rows are cut into blocks of ``w = 2r+1`` starting at row ``-r`` (the first block is cut short
    by the picture's top edge). Inside each block ``x`` becomes the prefix extreme and ``suffix``
    the suffix extreme; the window ``[i-r, i+r]`` spans a block end and the next block's start, so
    it is ``extreme(suffix[i-r], prefix[i+r])``. Windows cut by the top or bottom edge use the
    same two tables (see the comments below).
    """
    n, cols = x.shape
    op = op or (np.maximum if dilate else np.minimum)
    if radius <= 0 or n == 1:
        return
    if radius >= n - 1:  # every window holds the whole column
        x[...] = op.reduce(x, axis=0, keepdims=True)
        return
    # Columns are independent: big buffers go in column bands so the suffix copy stays small.
    band = max(1, (budget or _WORK_ELEMENTS) // n)
    for c0 in range(0, cols, band):
        _running_extreme_band(x[:, c0 : c0 + band], radius, op)


def _running_extreme_band(x: np.ndarray, radius: int, op) -> None:
    n = x.shape[0]
    r, w = radius, 2 * radius + 1
    suffix = x.copy()
    _block_scan(x, r, w, op, forward=True)
    _block_scan(suffix, r, w, op, forward=False)

    def block(row: int) -> int:
        return (row + r) // w

    last = x[n - 1].copy()  # prefix of the last block up to the last row
    first = suffix[0].copy()  # the whole first block, rows [0, r]
    # A window that starts exactly on a block start is that whole block: the suffix alone (the
    # van Herk formula would count the block twice, harmless for max/min but not for sums).
    aligned = np.arange(-(-r // w) * w, n - r, w)
    aligned_values = suffix[aligned - r]
    # Top rows i < r: window [0, i+r]. i = 0 is the first block itself; otherwise the window ends
    # in the second block. Windows also cut by the bottom edge hold every row.
    top_end = min(r, n - r)
    if top_end > 0:
        x[0] = x[r]  # x[r] = prefix over [0, r] = the first block
        if top_end > 1:
            op(first[None], x[r + 1 : r + top_end], out=x[1:top_end])
    if n - r < r:
        x[max(n - r, 0) : r] = op(first, last) if block(n - 1) > 0 else first
    # Middle rows r <= i < n-r: the plain van Herk formula, one vectorised operation. The result
    # for row i goes to suffix[i - r] (same-index in-place update), then moves to x[i].
    middle = n - 2 * r
    if middle > 0:
        op(suffix[:middle], x[2 * r :], out=suffix[:middle])
        x[r : n - r] = suffix[:middle]
    # Bottom rows i >= n-r: window [i-r, n-1]. Its start is in the last block (suffix alone) or
    # in the block before (suffix, plus the last block's prefix). suffix rows >= n-2r are intact.
    low = max(n - r, r)
    if low < n:
        last_block_start = block(n - 1) * w - r
        split = min(max(last_block_start + r, low), n)
        if low < split:
            op(suffix[low - r : split - r], last[None], out=x[low:split])
        if split < n:
            x[split:n] = suffix[split - r : n - r]
    if aligned.size:
        x[aligned] = aligned_values


def _block_scan(x: np.ndarray, r: int, w: int, op, forward: bool) -> None:
    """In place running extreme inside blocks ``[k*w - r, (k+1)*w - r)`` (prefix or suffix)."""
    n, cols = x.shape
    head = min(r + 1, n)
    full = (n - head) // w
    body_end = head + full * w
    tiles = x[head:body_end].reshape(full, w, cols) if full else None
    if tiles is not None and not np.shares_memory(tiles, x):  # pragma: no cover - numpy contract
        raise RuntimeError("block view of the work buffer was copied")
    tail = x[body_end:n]
    pieces = [(x[:head], head), (tail, n - body_end)]
    steps = range(1, w) if forward else range(w - 2, -1, -1)
    for j in steps:
        k = j - 1 if forward else j + 1
        if tiles is not None:
            op(tiles[:, k], tiles[:, j], out=tiles[:, j])
        for piece, length in pieces:
            if forward and j < length:
                op(piece[k], piece[j], out=piece[j])
            elif not forward and k < length:
                op(piece[k], piece[j], out=piece[j])


def _transposed(x: np.ndarray) -> np.ndarray:
    """Contiguous transpose (torch's blocked copy is several times faster than numpy's)."""
    return torch.from_numpy(x).t().contiguous().numpy()


# ============================================================================================
# Square and diamond
# ============================================================================================

def _square(m: np.ndarray, radius: int, dilate: bool) -> np.ndarray:
    """Grey dilation/erosion of ``m [H,W]`` by the ``(2r+1)^2`` square, inside the picture."""
    out = m.copy()
    _running_extreme_rows(out, radius, dilate)
    across = _transposed(out)
    del out
    _running_extreme_rows(across, radius, dilate)
    return _transposed(across)


def _cross(flat: np.ndarray, stride: int, dilate: bool, band: int) -> None:
    """In place: 3x3 cross (centre and 4 neighbours) on a row-major buffer of row length ``stride``.

    Works in bands of ``band`` elements (at least 4 rows), keeping a copy of the original values
    around each band, so the extra memory is one band, not one buffer.
    """
    op = np.maximum if dilate else np.minimum
    n = flat.size
    band = max(int(band), 4 * stride)
    carry = None  # original values of the `stride` cells before the current band
    for a in range(0, n, band):
        b = min(n, a + band)
        lo, hi = max(0, a - stride), min(n, b + stride)
        source = flat[lo:hi].copy()
        if carry is not None:
            source[: a - lo] = carry
        carry = source[max(b - stride, a) - lo : b - lo].copy()
        for shift in (1, -1, stride, -stride):
            # flat[i] = op(flat[i], original[i - shift]) for the i of this band with a neighbour.
            i0 = max(a, shift) if shift > 0 else a
            i1 = b if shift > 0 else min(b, n + shift)
            if i0 < i1:
                op(flat[i0:i1], source[i0 - shift - lo : i1 - shift - lo], out=flat[i0:i1])


def _diamond(m: np.ndarray, radius: int, dilate: bool) -> np.ndarray:
    """Grey dilation/erosion of ``m [H,W]`` by the L1 ball ``|dx|+|dy| <= radius``.

    Decomposition: with ``A_h`` the diagonal square ``{a(1,1) + b(1,-1): |a|,|b| <= h}`` and ``C`` the
    3x3 cross, ``D_{2h+1} = A_h + C`` and ``D_{2h+2} = A_h + C + C`` (Minkowski sums). ``A_h`` is two
    running max passes along the diagonals.

    The picture sits in a buffer padded with 0 (max) / 1 (min): ``top`` rows above and below,
    ``pad`` columns on the right. In a row-major buffer with row length ``S = W + pad``, stepping by
    ``S + 1`` moves one row down and one column right, so reading the buffer as ``[n, S+1]`` makes
    each column a diagonal; ``[n, S-1]`` gives the anti-diagonals. A diagonal leaving on the right
    re-enters on the left one row lower, but only after ``pad > radius`` padding cells, so no pixel
    ever sees another row's pixels. The top/bottom padding holds the intermediate values that paths
    leaving the picture need (only in-picture pixels are ever *sources*, so the result is exactly
    "extreme over in-picture pixels within L1 distance r", which is GrowMask's border rule).
    """
    h, w = m.shape
    radius = min(radius, h + w - 2)
    if radius <= 0:
        return m.copy()
    crosses = 1 if radius % 2 else 2
    half = (radius - crosses) // 2
    # Paths between two in-picture pixels pass through points whose x+y and x-y lie in the
    # picture's own ranges (+-2 for the crosses), so at most (W-1)/2 + 2 rows above or below it.
    top = min(half, (w + 1) // 2) + 2
    # More than `radius` padding cells between rows: no window reaches a neighbouring row's pixels.
    pad = radius + 2
    stride = w + pad
    rows = h + 2 * top
    # Mask values lie in 0..1, so 0 (for max) and 1 (for min) never win against a real pixel.
    fill = 0 if dilate else 1
    # Slack at the end so the buffer can be viewed with row length stride + 1.
    flat = np.full(rows * stride + 2 * stride, fill, dtype=m.dtype)
    grid = flat[: rows * stride].reshape(rows, stride)
    grid[top : top + h, :w] = m
    # Work temporaries: half the (float32) mask's bytes at a time, however big the buffer is.
    budget = max(h * w * 2 // m.itemsize, _MIN_BAND_ELEMENTS)
    for _ in range(crosses):
        _cross(flat, stride, dilate, budget)
    if half > 0:
        for diagonal in (stride + 1, stride - 1):
            count = flat.size // diagonal
            _running_extreme_rows(flat[: count * diagonal].reshape(count, diagonal), half, dilate, budget=budget)
    return np.ascontiguousarray(grid[top : top + h, :w])


# ============================================================================================
# Round (Euclidean disk)
# ============================================================================================

def _int_type(limit: int):
    return np.int16 if limit < np.iinfo(np.int16).max else np.int32


def _column_distance(feature: np.ndarray, cap: int) -> np.ndarray:
    """Vertical distance from each pixel to the nearest ``True`` pixel in its column, capped.

    ``feature [H,W]`` bool -> int ``[H,W]``; "none within ``cap``" reads ``cap``. Two row sweeps.
    """
    dist = np.where(feature, 0, cap).astype(_int_type(cap + 2))
    step = dist.dtype.type(1)
    for i in range(1, dist.shape[0]):
        np.minimum(dist[i - 1] + step, dist[i], out=dist[i])
    for i in range(dist.shape[0] - 2, -1, -1):
        np.minimum(dist[i + 1] + step, dist[i], out=dist[i])
    np.minimum(dist, cap, out=dist)
    return dist


def _disk_dilate_binary(feature: np.ndarray, radius: int) -> np.ndarray:
    """``feature [H,W]`` bool grown by the disk ``dx^2+dy^2 <= r^2`` (exact; in-picture sources).

    Pass 1: ``g`` = vertical distance to the nearest source in each column. A source column ``x'``
    then covers, in this row, the interval ``x' +- isqrt(r^2 - g^2)`` (empty when ``g > r``: the
    reach is -1). Pass 2: a pixel is covered when the furthest right end reaching it from its
    left, or the furthest left end from its right, passes it: two running max/min along the rows
    (run as row sweeps on the transposed picture).
    """
    h, w = feature.shape
    g = _column_distance(feature, radius + 1)
    span = np.arange(radius + 2, dtype=np.int64)
    reach_of = np.floor(np.sqrt(np.maximum(radius * radius - span * span, 0))).astype(np.int64)
    reach_of -= reach_of * reach_of > radius * radius - span * span  # exact integer sqrt
    reach_of += (reach_of + 1) ** 2 <= radius * radius - span * span
    reach_of[span > radius] = -1
    kind = _int_type(w + radius + 2)
    reach = _transposed(reach_of.astype(kind)[g])  # [W, H]
    del g
    cols = np.arange(w, dtype=kind)[:, None]
    ends = reach + cols  # right end of each source's interval; -1 reach never covers
    for x in range(1, w):
        np.maximum(ends[x - 1], ends[x], out=ends[x])
    covered = ends >= cols
    np.subtract(cols, reach, out=ends)  # left ends
    del reach
    for x in range(w - 2, -1, -1):
        np.minimum(ends[x + 1], ends[x], out=ends[x])
    covered |= ends <= cols
    del ends
    return _transposed(covered)


def _round_binary(m: np.ndarray, radius: int, dilate: bool) -> np.ndarray:
    if dilate:
        return _disk_dilate_binary(m > 0.5, radius).astype(np.float32)
    # Erosion = complement of the complement's dilation (the disk is symmetric).
    return (~_disk_dilate_binary(m < 0.5, radius)).astype(np.float32)


def _round_soft(m: np.ndarray, radius: int, dilate: bool) -> np.ndarray:
    """Level-by-level disk dilation; see the module docstring. Erosion works on ``1 - m``.

    A level whose band ``[k/L, (k+1)/L)`` holds no pixel has the same level set as the next level,
    so it is skipped (the next level writes the same pixels with a higher value).
    """
    source = m if dilate else 1.0 - m
    quantised = np.floor(source * ROUND_SOFT_LEVELS + 1e-4).astype(np.uint8)
    present = np.bincount(quantised.ravel(), minlength=ROUND_SOFT_LEVELS + 1)
    level_of = np.zeros(source.shape, dtype=np.uint8)
    for level in range(1, ROUND_SOFT_LEVELS + 1):
        if not present[level:].any():
            break
        if not present[level]:
            continue
        level_of[_disk_dilate_binary(quantised >= level, radius)] = level
    del quantised
    grown = level_of.astype(np.float32)
    grown /= ROUND_SOFT_LEVELS
    if dilate:
        return np.maximum(grown, source, out=grown)
    # Pixels the erosion did not reach keep their exact value (1 - (1 - m) may be off by an ulp).
    return np.where(grown > source, np.float32(1.0) - grown, m).astype(np.float32, copy=False)


# ============================================================================================
# Public: grow / shrink
# ============================================================================================

def grow_mask(mask: torch.Tensor, pixels: int, shape: str = "round") -> torch.Tensor:
    """Grow (``pixels > 0``) or shrink (``pixels < 0``) a mask by ``|pixels|``.

    ``mask``: ``[B,H,W]`` or ``[H,W]`` float 0..1 -> ``[B,H,W]`` or ``[H,W]`` float32 (other mask layouts -> ``[B,H,W]``). ``shape``: "round"
    (Euclidean disk), "diamond" or "square" (identical to ComfyUI GrowMask with tapered corners on /
    off). Soft masks are grey-grown: each pixel takes the max (grow) or min (shrink) around it.
    """
    if shape not in GROW_SHAPES:
        raise InputError(f"shape is {shape!r}; use round, diamond or square.")
    pixels = int(pixels)
    batch = img.to_mask_batch(mask, name="mask")
    if pixels == 0:
        return batch[0] if mask.dim() == 2 else batch
    dilate, radius = pixels > 0, abs(pixels)
    return _per_item(mask, batch, lambda m: _grow_one(m, radius, dilate, shape))


def _per_item(original: torch.Tensor, batch: torch.Tensor, fn) -> torch.Tensor:
    """Apply ``fn`` (numpy ``[H,W]`` -> ``[H,W]`` float32) to every mask; keep the caller's layout."""
    arrays = batch.detach().to("cpu").numpy()
    results = [torch.from_numpy(fn(item)) for item in arrays]
    out = results[0].unsqueeze(0) if len(results) == 1 else torch.stack(results)
    out = out.to(batch.device)
    return out[0] if original.dim() == 2 else out


def _grow_one(m: np.ndarray, radius: int, dilate: bool, shape: str) -> np.ndarray:
    as_bytes = m.astype(np.uint8)  # 0.x -> 0, 1 -> 1
    # Values lie in 0..1: the mask is binary when every non-zero pixel became a 1.
    binary = np.count_nonzero(m) == np.count_nonzero(as_bytes)
    if shape in ("square", "diamond"):
        # max/min commute with any increasing map, so a 0/1 mask can run as bytes: a quarter of
        # the memory traffic, four times the SIMD lanes, the same result.
        work = as_bytes if binary else m
        del as_bytes
        out = _square(work, radius, dilate) if shape == "square" else _diamond(work, radius, dilate)
        return out.astype(np.float32, copy=False)
    del as_bytes
    h, w = m.shape
    radius = min(radius, h + w)  # a disk this large already covers the picture from any pixel
    return _round_binary(m, radius, dilate) if binary else _round_soft(m, radius, dilate)


# ============================================================================================
# Public: feather
# ============================================================================================

def _box_widths(sigma: float, boxes: int = 3) -> list[int]:
    """Odd box widths whose ``boxes``-fold convolution has standard deviation ~``sigma`` (Kovesi)."""
    ideal = math.sqrt(12.0 * sigma * sigma / boxes + 1.0)
    lower = int(math.floor(ideal))
    lower -= 1 - lower % 2
    lower = max(lower, 1)
    upper = lower + 2
    count = round((12.0 * sigma * sigma - boxes * lower * lower - 4 * boxes * lower - 3 * boxes) / (-4 * lower - 4))
    return [lower if i < count else upper for i in range(boxes)]


def _box_blur_rows(x: np.ndarray, radius: int) -> None:
    """In place mean over ``x[i-r : i+r+1]`` (the part inside the picture), any radius, same cost."""
    n = x.shape[0]
    radius = min(radius, n - 1)
    if radius <= 0:
        return
    _running_extreme_rows(x, radius, True, op=np.add)
    rows = np.arange(n)
    count = (np.minimum(rows + radius, n - 1) - np.maximum(rows - radius, 0) + 1).astype(np.float32)
    x /= count[:, None]


def gaussian_blur(mask: np.ndarray, sigma: float) -> np.ndarray:
    """``[H,W]`` float32 -> new array blurred by three box blurs (an almost-Gaussian of ``sigma``).

    Borders: each box averages the part of its window inside the picture, so a mask that touches
    the border stays 1 there. Sums never subtract, so far from the mask the result is exactly 0.
    """
    out = np.array(mask, dtype=np.float32, copy=True)
    if sigma <= 0:
        return out
    widths = _box_widths(sigma)
    for width in widths:
        _box_blur_rows(out, width // 2)
    out = _transposed(out)
    for width in widths:
        _box_blur_rows(out, width // 2)
    return _transposed(out)


def feather_mask(mask: torch.Tensor, radius: int, mode: str = "outward") -> torch.Tensor:
    """Soften a mask's edges over ``radius`` pixels with a Gaussian-shaped ramp.

    ``mask``: ``[B,H,W]`` or ``[H,W]`` float 0..1 -> same shape, float32. With ``b`` the mask blurred
    by a Gaussian of standard deviation ``sigma`` (three box blurs, same cost for any radius):

    * "outward":  ``max(mask, clamp(2b))``, ``sigma = radius/2.5``: the mask stays as it is and a
      ramp falls from 1 at the edge to ~1 % at ``radius`` pixels outside.
    * "inward":   ``min(mask, clamp(2b - 1))``, ``sigma = radius/2.5``: outside stays exactly 0 and
      the ramp rises from 0 at the edge to ~99 % ``radius`` pixels inside.
    * "centered": ``b`` with ``sigma = radius/5``: the ramp straddles the edge, 0.5 on it, ~1 % and
      ~99 % at ``radius/2`` on either side.

    The ramp is the Gaussian's integral (an error-function profile). Soft masks go through the
    same linear blur, so their own softness adds to the ramp.
    """
    if mode not in FEATHER_MODES:
        raise InputError(f"mode is {mode!r}; use outward, inward or centered.")
    radius = int(radius)
    if radius < 0:
        raise InputError(f"radius is {radius}; use 0 or more pixels.")
    batch = img.to_mask_batch(mask, name="mask")
    if radius == 0:
        return batch[0] if mask.dim() == 2 else batch
    return _per_item(mask, batch, lambda m: _feather_one(m, radius, mode))


def _feather_one(m: np.ndarray, radius: int, mode: str) -> np.ndarray:
    if mode == "centered":
        return np.clip(gaussian_blur(m, radius / 5.0), 0.0, 1.0, dtype=np.float32)
    blurred = gaussian_blur(m, radius / 2.5)
    blurred *= 2.0
    if mode == "outward":
        np.clip(blurred, 0.0, 1.0, out=blurred)
        return np.maximum(m, blurred, out=blurred)
    blurred -= 1.0
    np.clip(blurred, 0.0, 1.0, out=blurred)
    return np.minimum(m, blurred, out=blurred)


# ============================================================================================
# Public: mask from a picture, bounding box
# ============================================================================================

def mask_from_image(image: torch.Tensor, threshold: float = 0.0, invert: bool = False) -> torch.Tensor:
    """``[B,H,W,3]`` picture -> ``[B,H,W]`` mask from its luminance (ITU-R BT.601 weights).

    ``threshold`` 0 keeps the luminance as a soft mask; above 0 the mask is binary:
    1 where luminance >= threshold. ``invert`` flips the result (``1 - mask``).
    """
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold is {threshold}; use a value from 0 to 1.")
    batch = img.to_image_batch(image, name="image")
    weights = torch.tensor(LUMA_WEIGHTS, dtype=batch.dtype, device=batch.device)
    luma = (batch * weights).sum(dim=-1).clamp_(0.0, 1.0)
    if threshold > 0.0:
        luma = (luma >= threshold).to(torch.float32)
    return 1.0 - luma if invert else luma


def mask_bbox(mask: torch.Tensor) -> Optional[tuple[int, int, int, int]]:
    """Box ``(x0, y0, x1, y1)`` around the non-zero pixels of ``mask [H,W]``; ends exclusive.

    ``None`` for an empty mask.
    """
    if mask.dim() != 2:
        raise InputError(f"mask has shape {tuple(mask.shape)}; mask_bbox takes one [H,W] mask.")
    rows = torch.nonzero(mask.amax(dim=1) > 0).flatten()
    if rows.numel() == 0:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = torch.nonzero(mask[y0:y1].amax(dim=0) > 0).flatten()
    return int(cols[0]), y0, int(cols[-1]) + 1, y1


# ============================================================================================
# Public: crop around the mask, stitch back
# ============================================================================================

@dataclass(frozen=True, eq=False)
class StitchRecord:
    """What :func:`stitch` needs to paste edited crops back. Never mutated (tensors are shared).

    ``originals``: ``[B,H,W,3]`` the uncropped pictures. ``boxes``: per picture ``(x0, y0, x1, y1)``
    in picture pixels, ends exclusive; all the same size, and they may reach outside the picture.
    ``paddings``: per picture ``(left, top, right, bottom)`` pixels of the box outside the picture
    (filled with replicated edge pixels in the crop). ``crop_size``: ``(h, w)`` of every crop.
    ``crop_masks``: ``[B,h,w]`` the cropped masks.
    """

    originals: torch.Tensor
    boxes: tuple[tuple[int, int, int, int], ...]
    paddings: tuple[tuple[int, int, int, int], ...]
    crop_size: tuple[int, int]
    crop_masks: torch.Tensor

    @property
    def box_size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.boxes[0]
        return y1 - y0, x1 - x0


def _grown_box(box, context: float, height: int, width: int) -> tuple[float, float, float, float]:
    """``(cx, cy, bw, bh)``: the box's centre and its size times ``1 + context`` (empty: whole picture)."""
    if box is None:
        return width / 2.0, height / 2.0, float(width), float(height)
    x0, y0, x1, y1 = box
    scale = 1.0 + context
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0, (x1 - x0) * scale, (y1 - y0) * scale


def _place(centre: float, size: int, limit: int) -> int:
    """Start of a span of ``size`` centred on ``centre``, moved inside ``[0, limit)`` if it fits."""
    start = int(math.floor(centre - size / 2.0 + 0.5))
    if size <= limit:
        return min(max(start, 0), limit - size)
    return (limit - size) // 2


def _crop_sizes(box_h: float, box_w: float, height: int, width: int, max_edge: int, multiple: int):
    """``(box_h, box_w, crop_h, crop_w)``: integer box size, and the crop size after any downscale."""
    box_h = max(1, int(math.ceil(box_h - 1e-6)))
    box_w = max(1, int(math.ceil(box_w - 1e-6)))
    if max(box_h, box_w) <= max_edge:
        # No resize: grow the box to the multiple so the crop is the picture's own pixels.
        box_h = -(-box_h // multiple) * multiple
        box_w = -(-box_w // multiple) * multiple
        if max(box_h, box_w) <= max_edge:
            return box_h, box_w, box_h, box_w
    scale = max_edge / max(box_h, box_w)
    crop_h = max(multiple, int(box_h * scale / multiple + 0.5) * multiple)
    crop_w = max(multiple, int(box_w * scale / multiple + 0.5) * multiple)
    crop_h, crop_w = min(crop_h, max(multiple, max_edge // multiple * multiple)), min(crop_w, max(multiple, max_edge // multiple * multiple))
    return box_h, box_w, crop_h, crop_w


def crop_to_mask(image: torch.Tensor, mask: torch.Tensor, context: float = 0.5, max_edge: int = 1024, multiple_of: int = 8):
    """Cut every picture down to the area around its mask, all crops one size.

    ``image [B,H,W,3]``, ``mask [B,H,W]`` (batches of 1 broadcast; a mask of another size with the
    same aspect is resized). Returns ``(crops [B,h,w,3], crop_masks [B,h,w], StitchRecord)``.

    Each box is the mask's bounding box scaled by ``1 + context`` around its centre (``context``
    0.5: half as big again, a quarter of the box on each side); an empty mask takes the whole
    picture. The boxes are then widened (centred) to the largest width and height in the batch,
    rounded up to ``multiple_of`` and placed inside the picture when they fit; a box larger than
    the picture hangs over both sides and the crop repeats the edge pixels there (its mask is 0
    there). Crops whose longest edge would pass ``max_edge`` are downscaled to it (sides rounded
    to ``multiple_of``).

    Cost: one read of the mask for the boxes; the picture is only read inside the boxes.
    """
    context = float(context)
    if not 0.0 <= context <= 100.0:
        raise InputError(f"context is {context}; use 0 (tight box) or more, up to 100.")
    multiple_of, max_edge = int(multiple_of), int(max_edge)
    if multiple_of < 1:
        raise InputError(f"multiple_of is {multiple_of}; use 1 or more.")
    if max_edge < multiple_of:
        raise InputError(f"max_edge is {max_edge}; use at least multiple_of ({multiple_of}).")
    images = img.to_image_batch(image, name="image")
    masks = img.match_mask_to_image(img.to_mask_batch(mask, name="mask"), images)
    images, masks = img.broadcast_batch(images, masks)
    count, height, width = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])

    grown = [_grown_box(mask_bbox(masks[i]), context, height, width) for i in range(count)]
    box_h, box_w, crop_h, crop_w = _crop_sizes(max(g[3] for g in grown), max(g[2] for g in grown),
                                               height, width, max_edge, multiple_of)
    boxes, paddings, crops, crop_masks = [], [], [], []
    for i, (cx, cy, _, _) in enumerate(grown):
        x0, y0 = _place(cx, box_w, width), _place(cy, box_h, height)
        box = (x0, y0, x0 + box_w, y0 + box_h)
        padding = (max(0, -x0), max(0, -y0), max(0, box[2] - width), max(0, box[3] - height))
        boxes.append(box)
        paddings.append(padding)
        crops.append(img.resize_image(_cut(images[i], box, padding, replicate=True), crop_h, crop_w))
        crop_masks.append(img.resize_mask(_cut(masks[i], box, padding, replicate=False), crop_h, crop_w))
    crop_images, crop_mask_batch = torch.stack(crops), torch.stack(crop_masks)
    record = StitchRecord(images, tuple(boxes), tuple(paddings), (crop_h, crop_w), crop_mask_batch)
    return crop_images, crop_mask_batch, record


def _inside(box, padding):
    """Slices of the picture covered by ``box`` (clipped to the picture)."""
    x0, y0, x1, y1 = box
    left, top, right, bottom = padding
    return slice(y0 + top, y1 - bottom), slice(x0 + left, x1 - right)


def _cut(t: torch.Tensor, box, padding, replicate: bool) -> torch.Tensor:
    """``t`` (``[H,W,3]`` or ``[H,W]``) inside ``box``; outside parts replicated (picture) or 0 (mask)."""
    rows, cols = _inside(box, padding)
    part = t[rows, cols]
    if not any(padding):
        return part
    left, top, right, bottom = padding
    if not replicate:
        return torch.nn.functional.pad(part, (left, right, top, bottom))
    chw = part.permute(2, 0, 1).unsqueeze(0)
    return torch.nn.functional.pad(chw, (left, right, top, bottom), mode="replicate")[0].permute(1, 2, 0)


def stitch(record: StitchRecord, edited: torch.Tensor, feather: int = 0) -> torch.Tensor:
    """Paste edited crops back into the original pictures.

    ``edited``: ``[k*B, h', w', 3]``, any size (resized to the box). ``k`` samples per picture:
    edited item ``j`` goes back into original ``j // k``, and the result has ``k*B`` pictures in
    that order (all samples of picture 0, then picture 1, ...). Inside each box the original and
    the edit are blended through the crop mask, feathered outward by ``feather`` picture pixels
    (:func:`feather_mask`); outside the box the result is bit-identical to the original, and inside
    it is exactly the original wherever the blend mask is 0. ``record`` is not changed, so
    stitching twice gives the same result.

    Cost: one copy of the originals (the output); everything else touches only the boxes.
    """
    feather = int(feather)
    if feather < 0:
        raise InputError(f"feather is {feather}; use 0 or more pixels.")
    edits = img.to_image_batch(edited, name="image")
    originals = record.originals
    count = int(originals.shape[0])
    if edits.shape[0] % count:
        raise InputError(f"image has {edits.shape[0]} pictures but the stitch holds {count}; connect the crops of this stitch (or a multiple of {count} samples).")
    per_picture = edits.shape[0] // count
    box_h, box_w = record.box_size
    blends = [_blend_mask(record, i, feather) for i in range(count)]
    source = torch.arange(edits.shape[0]) // per_picture
    out = originals.index_select(0, source.to(originals.device)).to(torch.float32)
    for j in range(edits.shape[0]):
        i = int(source[j])
        rows, cols = _inside(record.boxes[i], record.paddings[i])
        left, top, right, bottom = record.paddings[i]
        edit = img.resize_image(edits[j], box_h, box_w)[top : box_h - bottom, left : box_w - right]
        region = out[j, rows, cols]
        out[j, rows, cols] = img.composite(region[None], edit[None].to(region.device), blends[i][None])[0]
    return out


def _blend_mask(record: StitchRecord, i: int, feather: int) -> torch.Tensor:
    """Crop mask of picture ``i`` at box size, feathered outward, cut to the picture's part of the box."""
    box_h, box_w = record.box_size
    left, top, right, bottom = record.paddings[i]
    mask = img.resize_mask(record.crop_masks[i], box_h, box_w)
    if feather:
        mask = feather_mask(mask, feather, "outward")
    return mask[top : box_h - bottom, left : box_w - right].to(record.originals.device)
