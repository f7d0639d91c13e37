"""The 1-D running max/min/sum every mask operation is built on, and per-mask plumbing.

Van Herk / Gil-Werman: 3 comparisons per element for any radius, vectorised over whole rows with
numpy, temporaries kept to column bands. Kept instead of ``scipy.ndimage.maximum_filter1d`` /
``minimum_filter1d`` / ``uniform_filter1d`` because it is measurably faster on the masks this pack
sees (``bench/bench_masks.py``, section "scipy.ndimage equivalents": square grow on a binary
2048x2048 mask 1.4-1.9x faster than scipy along the fast axis plus transposes, and scipy's running
sum subtracts, so it cannot keep "exactly 0 far from the mask").
"""

from __future__ import annotations

import numpy as np
import torch

WORK_ELEMENTS = 1 << 22  # running max/min/sum temporaries: at most ~16 MB (float32) at a time


def running_extreme_rows(x: np.ndarray, radius: int, dilate: bool, op=None, budget: int = 0) -> None:
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
    band = max(1, (budget or WORK_ELEMENTS) // n)
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


def transposed(x: np.ndarray) -> np.ndarray:
    """Contiguous transpose (torch's blocked copy is several times faster than numpy's)."""
    return torch.from_numpy(x).t().contiguous().numpy()



def per_item(original: torch.Tensor, batch: torch.Tensor, fn) -> torch.Tensor:
    """Apply ``fn`` (numpy ``[H,W]`` -> ``[H,W]`` float32) to every mask; keep the caller's layout."""
    arrays = batch.detach().to("cpu").numpy()
    results = [torch.from_numpy(fn(item)) for item in arrays]
    out = results[0].unsqueeze(0) if len(results) == 1 else torch.stack(results)
    out = out.to(batch.device)
    return out[0] if original.dim() == 2 else out

