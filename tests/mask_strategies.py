"""Hypothesis strategy shared by the crop/stitch and fill tests: pictures with random rectangles masked."""

from __future__ import annotations

import torch
from hypothesis import strategies as st


@st.composite
def pictures_with_rectangles(draw, min_side=1, max_side=64, max_count=3, max_rect=None, values=(1.0, 0.5)):
    """``(image [B,H,W,3], mask [B,H,W])``: 0-3 rectangles per picture, each of one of ``values``;
    rectangles at most ``max_rect`` pixels a side (``None``: any size)."""
    h, w = draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side))
    count = draw(st.integers(1, max_count))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    image = torch.rand(count, h, w, 3, generator=g)
    mask = torch.zeros(count, h, w)
    for i in range(count):
        for _ in range(draw(st.integers(0, 3))):
            y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
            y1 = draw(st.integers(y0 + 1, h if max_rect is None else min(h, y0 + max_rect)))
            x1 = draw(st.integers(x0 + 1, w if max_rect is None else min(w, x0 + max_rect)))
            mask[i, y0:y1, x0:x1] = draw(st.sampled_from(values))
    return image, mask
