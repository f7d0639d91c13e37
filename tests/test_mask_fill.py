"""mask_fill.py: the masked area filled grey or from its surroundings; outside untouched, soft masks blend."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from comfyui_imgedit.nodes.core import masks as M
from comfyui_imgedit.nodes.core import mask_fill
from comfyui_imgedit.nodes.core.errors import InputError
from mask_strategies import pictures_with_rectangles

FAST = settings(max_examples=40, deadline=None)


def fill_cases():
    return pictures_with_rectangles(max_side=70, max_count=2, values=(1.0, 0.5, 0.01))


@FAST
@given(case=fill_cases(), mode=st.sampled_from(M.FILL_MODES))
def test_fill_leaves_the_outside_bit_identical_and_stays_in_range(case, mode):
    image, mask = case
    before = image.clone()
    out = M.fill_masked(image, mask, mode)
    keep = mask == 0
    assert out.shape == image.shape and torch.equal(out[keep], image[keep])
    assert torch.equal(image, before)  # the input is not changed
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    full = mask == 1
    if mode == "neutral":
        assert torch.all(out[full] == mask_fill.NEUTRAL_GREY)


def test_soft_masks_blend_the_fill_in_by_their_value():
    image = torch.rand(1, 20, 20, 3)
    mask = torch.zeros(1, 20, 20)
    mask[0, 5:15, 5:15] = 0.25
    out = M.fill_masked(image, mask, "neutral")
    assert torch.allclose(out[0, 5:15, 5:15], 0.75 * image[0, 5:15, 5:15] + 0.25 * 0.5, atol=1e-6)
    surround = M.fill_masked(image, mask, "surround")
    hard = M.fill_masked(image, (mask > 0).float(), "surround")
    # 0.25 of the way from the picture to the fill (the known share 0.75 also feeds the fill).
    assert float((surround - image)[0, 5:15, 5:15].abs().max()) < float((hard - image)[0, 5:15, 5:15].abs().max())


def test_surround_continues_smooth_colours_into_the_hole():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 256), torch.linspace(0, 1, 256), indexing="ij")
    ramp = torch.stack([yy, xx, torch.full_like(xx, 0.5)], dim=-1)[None]
    hole = torch.zeros(1, 256, 256)
    hole[0, 100:150, 80:180] = 1.0
    out = M.fill_masked(ramp, hole, "surround")
    error = (out - ramp)[0][hole[0] > 0].abs()
    assert float(error.mean()) < 0.01 and float(error.max()) < 0.05
    grey_error = (M.fill_masked(ramp, hole, "neutral") - ramp)[0][hole[0] > 0].abs()
    assert float(error.mean()) < float(grey_error.mean()) / 4
    flat = torch.full((1, 64, 64, 3), 0.3)
    assert torch.allclose(M.fill_masked(flat, hole[:, :64, :64].roll(-90, dims=1), "surround"), flat, atol=1e-6)


def test_surround_takes_colour_from_each_side():
    image = torch.zeros(1, 40, 80, 3)
    image[0, :, 40:] = 1.0  # black left half, white right half
    hole = torch.zeros(1, 40, 80)
    hole[0, 10:30, 20:60] = 1.0
    out = M.fill_masked(image, hole, "surround")[0]
    assert float(out[20, 21].mean()) < 0.3 and float(out[20, 58].mean()) > 0.7


def test_empty_and_full_masks_and_bad_input():
    image = torch.rand(2, 16, 16, 3)
    assert torch.equal(M.fill_masked(image, torch.zeros(1, 16, 16), "surround"), image)
    assert torch.all(M.fill_masked(image, torch.ones(1, 16, 16), "surround") == 0.5)
    half = torch.zeros(1, 8, 8)
    half[0, :4] = 1.0  # another size of the same aspect is resized
    assert torch.equal(M.fill_masked(image, half, "neutral")[:, 9:], image[:, 9:])  # row 8: the resize's soft edge
    with pytest.raises(InputError, match="mode"):
        M.fill_masked(image, half, "blur")
    with pytest.raises(InputError, match="mask"):
        M.fill_masked(image, torch.ones(1, 16, 40), "neutral")


@pytest.mark.parametrize("size", [(1, 1), (3, 17), (33, 2), (65, 129)])
def test_upsampling_is_torch_bilinear_and_a_cut_out_equals_the_whole(size):
    """The fill upsamples only the coarse cells the box needs; that must equal cutting the whole."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(sum(size))
    coarse = torch.rand(3, *size, generator=g)
    whole = mask_fill.upsample2(coarse.numpy())
    reference = F.interpolate(coarse[None], scale_factor=2, mode="bilinear", align_corners=False)[0]
    assert np.allclose(whole, reference.numpy(), atol=1e-6)
    for start, stop in [(0, 1), (1, 2 * size[0]), (3, 5), (2 * size[0] - 1, 2 * size[0])]:
        start, stop = min(start, 2 * size[0] - 1), min(stop, 2 * size[0])
        r0, r1 = mask_fill.coarse_span(start, stop, size[0])
        part = mask_fill.upsample2(coarse.numpy()[:, r0:r1, :])
        assert np.array_equal(part[:, start - 2 * r0 : stop - 2 * r0, :], whole[:, start:stop, :])
