"""Colour match for stitching: move an edit's colours onto the original's, measured where both
should agree (the crop area outside the mask).

Per-channel mean and spread transfer (Reinhard et al. 2001) in a perceptual colour space: CIELAB
(sRGB, D65) or YCbCr (BT.601, linear in RGB, so a drift that is affine in RGB is undone exactly).
Runs in numpy float32, single-threaded: torch's two threads made the same ~20 element-wise steps
4-6x slower on the shared 2-core machine (``bench/bench_masks.py``, colour-match stitch).
"""

from __future__ import annotations

import numpy as np
import torch

COLOR_MATCH_MODES = ("none", "lab", "ycbcr")
#: Fewer reference pixels than this: statistics would be noise, the edit is left as it is.
MIN_REFERENCE_PIXELS = 16
#: Spread ratios are kept within [1/MAX_GAIN, MAX_GAIN] so a flat reference cannot blow an edit up.
MAX_GAIN = 4.0

_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]], np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], np.float32)
_DELTA = np.float32(6.0 / 29.0)


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    linear = np.where(rgb <= 0.04045, rgb / np.float32(12.92), ((rgb + np.float32(0.055)) / np.float32(1.055)) ** np.float32(2.4))
    xyz = linear @ (_RGB_TO_XYZ.T / _WHITE)
    f = np.where(xyz > _DELTA ** 3, np.cbrt(xyz), xyz / (3 * _DELTA ** 2) + np.float32(4.0 / 29.0))
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1).astype(np.float32)


def _lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    fy = (lab[..., 0] + np.float32(16.0)) / np.float32(116.0)
    f = np.stack([fy + lab[..., 1] / np.float32(500.0), fy, fy - lab[..., 2] / np.float32(200.0)], axis=-1)
    xyz = np.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - np.float32(4.0 / 29.0))) * _WHITE
    linear = np.maximum(xyz @ np.linalg.inv(_RGB_TO_XYZ).T.astype(np.float32), 0.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** np.float32(1.0 / 2.4) - 0.055).astype(np.float32)


def _to_space(rgb: np.ndarray, mode: str) -> np.ndarray:
    return _srgb_to_lab(rgb) if mode == "lab" else rgb @ _YCBCR.T


def _from_space(values: np.ndarray, mode: str) -> np.ndarray:
    return _lab_to_srgb(values) if mode == "lab" else values @ np.linalg.inv(_YCBCR).T.astype(np.float32)


def match_colors(edit: torch.Tensor, original: torch.Tensor, reference: torch.Tensor, mode: str) -> torch.Tensor:
    """``edit [h,w,3]`` with its colours moved so that, on ``reference [h,w]`` (bool), their
    per-channel mean and standard deviation in ``mode``'s space equal ``original``'s there.

    The same affine map (per channel, in that space) is applied to the whole edit, so what the
    edit drew inside the mask shifts with it. Result clamped to 0..1, float32, on ``edit``'s
    device. ``mode`` "none", or fewer than :data:`MIN_REFERENCE_PIXELS` reference pixels: ``edit``
    unchanged.
    """
    if mode == "none":
        return edit
    where = reference.detach().cpu().numpy()
    if int(where.sum()) < MIN_REFERENCE_PIXELS:
        return edit
    edit_values = _to_space(edit.detach().cpu().numpy().astype(np.float32, copy=False), mode)
    mine = edit_values[where]
    theirs = _to_space(original.detach().cpu().numpy().astype(np.float32, copy=False)[where], mode)
    spread_mine, spread_theirs = mine.std(axis=0), theirs.std(axis=0)
    gain = np.where(spread_mine > 1e-6, spread_theirs / np.maximum(spread_mine, 1e-6), 1.0)
    gain = np.clip(gain, 1.0 / MAX_GAIN, MAX_GAIN).astype(np.float32)
    edit_values -= mine.mean(axis=0)
    edit_values *= gain
    edit_values += theirs.mean(axis=0)
    matched = np.clip(_from_space(edit_values, mode), 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(matched, dtype=np.float32)).to(edit.device)
