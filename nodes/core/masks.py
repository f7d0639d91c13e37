"""Grow and shrink masks; also the pack's one import surface for all mask maths.

The mask maths is split by theme: grow/shrink here, feather / mask from image / box in
:mod:`.mask_feather`, crop, stitch and colour match in :mod:`.crop_stitch` and :mod:`.color_match`,
hole filling in :mod:`.mask_fill`, the outpainting canvas in :mod:`.outpaint`, the shared running max/min/sum in :mod:`.mask_kernels`. Their
public names are re-exported below, so ``from .masks import X`` keeps working.

Masks are ``[B,H,W]`` (or ``[H,W]``) float32 in 0..1, 1 = change. Everything here costs the same
whatever the radius: no ``(2r+1)^2`` kernels and no ``r`` repeated passes.

Grow and shrink are *grey* morphology with a flat structuring element (``out = max`` or ``min`` of
the mask over a neighbourhood), so soft masks keep their soft values. Only pixels inside the picture
count: a pixel near the border looks at the part of its neighbourhood that lies inside. This is
exactly what ComfyUI's GrowMask gives (scipy ``grey_dilation`` with a 3x3 footprint, border mode
"reflect", repeated ``|pixels|`` times):

* ``square``  (GrowMask with ``tapered_corners=False``): the ``(2r+1)^2`` square, done as two 1-D
  running max/min passes: scipy's ``maximum_filter1d``/``minimum_filter1d`` on soft masks, our van
  Herk / Gil-Werman pass (3 comparisons per pixel for any radius) on binary masks run as bytes,
  where it is 1.3-2x faster than scipy.

Why the rest is ours and not ``scipy.ndimage`` (``bench/bench_masks.py``, section "scipy.ndimage
equivalents", alternated runs on 2048x2048): round on binary masks is 8x faster than
``distance_transform_edt`` (identical output); the feather's box blurs are 2x faster than
``uniform_filter1d`` (which subtracts, so far from the mask it is not exactly 0) and ~10x faster than
``gaussian_filter`` at radius 128; on binary masks diamond and square are 3-4x faster than
``distance_transform_cdt`` (taxicab / chessboard), and diamond on soft masks has no scipy
equivalent but an O(r^2) footprint.
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

import numpy as np
import torch

from . import images as img
from .errors import InputError
from .mask_kernels import WORK_ELEMENTS, per_item, running_extreme_rows, transposed

GROW_SHAPES = ("round", "diamond", "square")
ROUND_SOFT_LEVELS = 32
# Read at call time (tests shrink them to exercise the column bands).
_WORK_ELEMENTS = WORK_ELEMENTS  # square: running max/min temporaries at a time
_MIN_BAND_ELEMENTS = 1 << 18  # diamond: temporaries are max(half the mask, this) elements


# ============================================================================================
# Square and diamond
# ============================================================================================

def _square(m: np.ndarray, radius: int, dilate: bool) -> np.ndarray:
    """Grey dilation/erosion of ``m [H,W]`` by the ``(2r+1)^2`` square, inside the picture."""
    out = m.copy()
    running_extreme_rows(out, radius, dilate, budget=_WORK_ELEMENTS)
    across = transposed(out)
    del out
    running_extreme_rows(across, radius, dilate, budget=_WORK_ELEMENTS)
    return transposed(across)


def _square_scipy(m: np.ndarray, radius: int, dilate: bool) -> np.ndarray:
    """The same as :func:`_square` with ``scipy.ndimage.maximum_filter1d`` / ``minimum_filter1d``.

    Used for soft (float) masks, where scipy is as fast (ours / scipy 0.77-1.06 over runs on
    2048x2048, r = 8..256; 1.1-1.5 when every allocation is a fresh mmap; ``bench/bench_masks.py``).
    Binary masks keep :func:`_square` on bytes, 1.3-2x faster than scipy (ours / scipy 0.50-0.79). Both filter along the contiguous axis (scipy is
    several times slower along the other) and transpose in between. Border mode "nearest" repeats
    the edge pixel, which is inside every window that reaches past it: "inside the picture" exactly.
    """
    import scipy.ndimage as ndi

    extreme = ndi.maximum_filter1d if dilate else ndi.minimum_filter1d
    out = extreme(m, 2 * radius + 1, axis=1, mode="nearest")
    out = transposed(out)
    extreme(out, 2 * radius + 1, axis=1, mode="nearest", output=out)
    return transposed(out)


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
            running_extreme_rows(flat[: count * diagonal].reshape(count, diagonal), half, dilate, budget=budget)
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
    reach = transposed(reach_of.astype(kind)[g])  # [W, H]
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
    return transposed(covered)


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
    return per_item(mask, batch, lambda m: _grow_one(m, radius, dilate, shape))


def _grow_one(m: np.ndarray, radius: int, dilate: bool, shape: str) -> np.ndarray:
    as_bytes = m.astype(np.uint8)  # 0.x -> 0, 1 -> 1
    # Values lie in 0..1: the mask is binary when every non-zero pixel became a 1. Counted on the
    # float's bits (0.0 is all-zero bits): numpy's count_nonzero is ~8x faster on int32 than on
    # float32 (a -0.0 counts as non-zero there, which only sends the mask down the soft path).
    binary = np.count_nonzero(m.view(np.int32)) == np.count_nonzero(as_bytes)
    if shape in ("square", "diamond"):
        # max/min commute with any increasing map, so a 0/1 mask can run as bytes: a quarter of
        # the memory traffic, four times the SIMD lanes, the same result.
        work = as_bytes if binary else m
        del as_bytes
        if shape == "diamond":
            # Ours: 3-4x faster than scipy's distance_transform_cdt on binary masks; on soft masks
            # scipy has no flat L1 ball short of an O(r^2) footprint (bench_masks.py).
            out = _diamond(work, radius, dilate)
        else:
            out = (_square if binary else _square_scipy)(work, radius, dilate)
        return out.astype(np.float32, copy=False)
    del as_bytes
    h, w = m.shape
    radius = min(radius, h + w)  # a disk this large already covers the picture from any pixel
    return _round_binary(m, radius, dilate) if binary else _round_soft(m, radius, dilate)


# Re-exports: the old single-module surface (nodes, CLI, tests and workflows' code paths use it).
from .mask_feather import FEATHER_MODES, LUMA_WEIGHTS, feather_mask, gaussian_blur, mask_bbox, mask_from_image  # noqa: E402
from .crop_stitch import REGION_MODES, StitchRecord, crop_like, crop_to_mask, stitch  # noqa: E402
from .color_match import COLOR_MATCH_MODES  # noqa: E402
from .mask_fill import FILL_MODES, fill_masked  # noqa: E402
from .outpaint import EXTEND_FILL_MODES, MAX_EXTEND, MAX_OVERLAP, extend_canvas  # noqa: E402
