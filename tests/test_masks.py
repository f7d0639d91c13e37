"""masks.py: grow/shrink (against scipy / ComfyUI GrowMask), feather, mask from image, crop and stitch."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from comfyui_imgedit.nodes.core import masks as M
from comfyui_imgedit.nodes.core.errors import InputError

FAST = settings(max_examples=30, deadline=None)


def comfy_grow_mask(mask: np.ndarray, expand: int, tapered_corners: bool) -> np.ndarray:
    """ComfyUI's GrowMask.expand_mask (comfy_extras/nodes_mask.py), per mask, verbatim maths."""
    c = 0 if tapered_corners else 1
    kernel = np.array([[c, 1, c], [1, 1, 1], [c, 1, c]])
    output = mask
    for _ in range(abs(expand)):
        if expand < 0:
            output = ndi.grey_erosion(output, footprint=kernel)
        else:
            output = ndi.grey_dilation(output, footprint=kernel)
    return output


def disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return yy * yy + xx * xx <= radius * radius


def disk_reference(m: np.ndarray, pixels: int) -> np.ndarray:
    """Flat grey dilation/erosion by the Euclidean disk; pixels outside the picture never count."""
    if pixels >= 0:
        return ndi.grey_dilation(m, footprint=disk(pixels), mode="constant", cval=0.0)
    return ndi.grey_erosion(m, footprint=disk(-pixels), mode="constant", cval=1.0)


@st.composite
def masks(draw, max_side=24, soft=None):
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    is_soft = draw(st.booleans()) if soft is None else soft
    if is_soft:
        values = rng.random((h, w)).astype(np.float32)
        values[rng.random((h, w)) < 0.5] = 0.0
        return values
    return (rng.random((h, w)) < draw(st.floats(0.0, 0.3))).astype(np.float32)


def grow_np(m: np.ndarray, pixels: int, shape: str) -> np.ndarray:
    return M.grow_mask(torch.from_numpy(m), pixels, shape).numpy()


# ---------------------------------------------------------------------------- GrowMask equivalence

@FAST
@given(m=masks(), pixels=st.integers(-30, 30), tapered=st.booleans())
def test_diamond_and_square_equal_comfyui_growmask(m, pixels, tapered):
    shape = "diamond" if tapered else "square"
    assert np.array_equal(grow_np(m, pixels, shape), comfy_grow_mask(m, pixels, tapered))


@pytest.mark.parametrize("shape,tapered", [("diamond", True), ("square", False)])
@pytest.mark.parametrize("size", [(1, 1), (1, 17), (23, 1), (2, 40), (37, 29)])
@pytest.mark.parametrize("pixels", [1, 2, 5, 6, 40, -3, -8])
def test_growmask_equivalence_on_thin_and_odd_shapes(shape, tapered, size, pixels):
    rng = np.random.default_rng(sum(size) * 100 + pixels)
    soft = rng.random(size).astype(np.float32) * (rng.random(size) < 0.2)
    assert np.array_equal(grow_np(soft, pixels, shape), comfy_grow_mask(soft, pixels, tapered))


def test_growmask_equivalence_batch_and_layout():
    rng = np.random.default_rng(3)
    batch = (rng.random((3, 31, 19)) < 0.05).astype(np.float32)
    out = M.grow_mask(torch.from_numpy(batch), 7, "diamond")
    assert out.shape == (3, 31, 19) and out.dtype == torch.float32
    for i in range(3):
        assert np.array_equal(out[i].numpy(), comfy_grow_mask(batch[i], 7, True))
    single = M.grow_mask(torch.from_numpy(batch[0]), -2, "square")
    assert single.shape == (31, 19)


# ---------------------------------------------------------------------------- round

@FAST
@given(m=masks(soft=False), pixels=st.integers(-20, 20))
def test_round_binary_is_the_exact_disk(m, pixels):
    assert np.array_equal(grow_np(m, pixels, "round"), disk_reference(m, pixels))


@FAST
@given(m=masks(soft=True), pixels=st.integers(-12, 12))
def test_round_soft_is_the_disk_on_levels_of_one_32nd(m, pixels):
    levels = np.float32(M.ROUND_SOFT_LEVELS)
    if pixels >= 0:
        true = disk_reference(m, pixels)
        expected = np.maximum(np.floor(true * levels + np.float32(1e-4)) / levels, m)
    else:
        inverse = np.float32(1.0) - m
        true = ndi.grey_dilation(inverse, footprint=disk(-pixels), mode="constant", cval=0.0)
        expected = np.float32(1.0) - np.maximum(np.floor(true * levels + np.float32(1e-4)) / levels, inverse)
    got = grow_np(m, pixels, "round")
    assert np.allclose(got, expected, atol=1e-6)
    assert np.all(np.abs(got - disk_reference(m, pixels)) <= 1.0 / levels + 1e-6)


# ---------------------------------------------------------------------------- bounds

@FAST
@given(m=masks(), r=st.integers(1, 10), shape=st.sampled_from(M.GROW_SHAPES))
def test_grow_then_shrink_bounds(m, r, shape):
    slack = 1.0 / M.ROUND_SOFT_LEVELS + 1e-6 if shape == "round" else 0.0
    grown, shrunk = grow_np(m, r, shape), grow_np(m, -r, shape)
    assert np.all(grown >= m) and np.all(shrunk <= m)
    assert np.all(grow_np(m, r + 2, shape) >= grown)
    closed, opened = grow_np(grown, -r, shape), grow_np(shrunk, r, shape)
    assert np.all(closed >= m - slack)  # closing never loses mask
    assert np.all(opened <= m + slack)  # opening never adds mask
    assert 0.0 <= grown.min() and grown.max() <= 1.0


def test_empty_full_and_zero_pixels():
    empty, full = torch.zeros(2, 9, 13), torch.ones(2, 9, 13)
    for shape in M.GROW_SHAPES:
        for pixels in (-5, 5, 100):
            assert torch.equal(M.grow_mask(empty, pixels, shape), empty)
            assert torch.equal(M.grow_mask(full, pixels, shape), full)
    m = torch.rand(1, 5, 5)
    assert M.grow_mask(m, 0, "round") is m


def test_huge_radius_covers_everything():
    m = torch.zeros(1, 20, 30)
    m[0, 0, 0] = 0.7
    for shape in M.GROW_SHAPES:
        assert torch.all(M.grow_mask(m, 4096, shape) == 0.7 if shape != "round" else M.grow_mask(m, 4096, shape) >= 0.68)


def test_grow_bad_inputs():
    with pytest.raises(InputError, match="shape"):
        M.grow_mask(torch.zeros(4, 4), 2, "star")
    bad = torch.zeros(4, 4)
    bad[1, 1] = float("nan")
    with pytest.raises(InputError, match="mask"):
        M.grow_mask(bad, 2, "round")
    with pytest.raises(InputError, match="mask"):
        M.grow_mask(torch.zeros(1, 4, 4, 3), 2, "round")


# ---------------------------------------------------------------------------- feather

def square_mask(size=64, lo=20, hi=44):
    m = torch.zeros(1, size, size)
    m[0, lo:hi, lo:hi] = 1.0
    return m


@pytest.mark.parametrize("radius", [1, 4, 16])
def test_feather_modes_keep_their_side(radius):
    m = square_mask()
    outward = M.feather_mask(m, radius, "outward")
    inward = M.feather_mask(m, radius, "inward")
    centered = M.feather_mask(m, radius, "centered")
    inside, outside = m == 1, m == 0
    assert torch.all(outward[inside] == 1.0) and torch.all(outward >= m)
    assert torch.all(inward[outside] == 0.0) and torch.all(inward <= m)
    for out in (outward, inward, centered):
        assert out.shape == m.shape and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    if radius >= 4:
        assert float(outward[0, 32, 44 + radius // 2]) > 0.05  # a ramp outside
        assert float(inward[0, 32, 43 - radius // 2]) < 0.95  # a ramp inside
        assert 0.3 < float(centered[0, 32, 44]) < 0.7 or 0.3 < float(centered[0, 32, 43]) < 0.7


def test_feather_outward_ramp_ends_near_radius_and_is_exactly_zero_far_away():
    out = M.feather_mask(square_mask(128, 50, 78), 16, "outward")[0, 64]
    assert float(out[78 + 16]) < 0.03
    assert float(out[78 + 40:].abs().max()) == 0.0


def test_feather_is_symmetric():
    out = M.feather_mask(square_mask(), 10, "centered")[0]
    assert torch.allclose(out, out.flip(0), atol=1e-5) and torch.allclose(out, out.t(), atol=1e-5)


def test_feather_empty_full_and_soft():
    for mode in M.FEATHER_MODES:
        assert torch.equal(M.feather_mask(torch.zeros(1, 16, 16), 5, mode), torch.zeros(1, 16, 16))
        assert torch.allclose(M.feather_mask(torch.ones(1, 16, 16), 5, mode), torch.ones(1, 16, 16))
    soft = torch.full((16, 16), 0.4)
    assert torch.allclose(M.feather_mask(soft, 3, "centered"), soft, atol=1e-5)
    m = torch.rand(2, 8, 8)
    assert M.feather_mask(m, 0, "outward") is m


def test_feather_bad_inputs():
    with pytest.raises(InputError, match="mode"):
        M.feather_mask(torch.zeros(4, 4), 2, "sideways")
    with pytest.raises(InputError, match="radius"):
        M.feather_mask(torch.zeros(4, 4), -1)


def test_gaussian_blur_matches_a_gaussian():
    impulse = np.zeros((101, 101), np.float32)
    impulse[50, 50] = 1.0
    blurred = M.gaussian_blur(impulse, 6.0)
    assert abs(float(blurred.sum()) - 1.0) < 1e-4
    yy, xx = np.mgrid[-50:51, -50:51]
    sigma = np.sqrt(float((blurred * xx * xx).sum()))
    assert abs(sigma - 6.0) < 0.35


# ---------------------------------------------------------------------------- mask from image, bbox

def test_mask_from_image():
    image = torch.zeros(1, 2, 2, 3)
    image[0, 0, 0] = torch.tensor([1.0, 0.0, 0.0])
    image[0, 0, 1] = 1.0
    soft = M.mask_from_image(image, 0.0, False)
    assert torch.allclose(soft[0, 0], torch.tensor([0.299, 1.0])) and float(soft[0, 1].max()) == 0.0
    binary = M.mask_from_image(image, 0.5, False)
    assert binary[0].tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert M.mask_from_image(image, 0.5, True)[0].tolist() == [[1.0, 0.0], [1.0, 1.0]]
    with pytest.raises(InputError, match="threshold"):
        M.mask_from_image(image, 1.5, False)


@FAST
@given(m=masks(max_side=20))
def test_mask_bbox(m):
    box = M.mask_bbox(torch.from_numpy(m))
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        assert box is None
    else:
        assert box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


# ---------------------------------------------------------------------------- crop and stitch

@st.composite
def crop_cases(draw):
    h, w = draw(st.integers(1, 60)), draw(st.integers(1, 60))
    count = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(count, h, w, 3, generator=g)
    mask = torch.zeros(count, h, w)
    for i in range(count):
        if draw(st.booleans()):
            y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
            y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
            mask[i, y0:y1, x0:x1] = draw(st.sampled_from([1.0, 0.5]))
    context = draw(st.sampled_from([0.0, 0.3, 1.0, 3.0]))
    max_edge = draw(st.sampled_from([16, 32, 1024]))
    multiple = draw(st.sampled_from([1, 8]))
    return image, mask, context, max_edge, multiple


def outside_boxes(record, height, width):
    keep = torch.ones(len(record.boxes), height, width, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(record.boxes):
        keep[i, max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = False
    return keep


@FAST
@given(case=crop_cases())
def test_unedited_crop_stitches_back_to_the_original(case):
    image, mask, context, max_edge, multiple = case
    crops, crop_masks, record = M.crop_to_mask(image, mask, context, max_edge, multiple)
    ch, cw = record.crop_size
    assert crops.shape == (image.shape[0], ch, cw, 3) and crop_masks.shape == (image.shape[0], ch, cw)
    assert ch % multiple == 0 and cw % multiple == 0 and max(ch, cw) <= max(max_edge, multiple)
    out = M.stitch(record, crops, feather=2)
    keep = outside_boxes(record, image.shape[1], image.shape[2])
    assert torch.equal(out[keep], image[keep])  # bit-identical outside the boxes
    if record.box_size == record.crop_size:
        assert torch.equal(out, image)  # no resize: exact everywhere
    # The mask is entirely inside the boxes.
    assert not bool(mask[keep].any())


@FAST
@given(case=crop_cases())
def test_unedited_resized_crop_comes_back_within_resize_error(case):
    _, mask, context, max_edge, multiple = case
    count, h, w = mask.shape
    # Gentle ramps (0.005 per pixel): resizing error stays far below the values' range.
    yy, xx = torch.meshgrid(torch.arange(h) * 0.005, torch.arange(w) * 0.005, indexing="ij")
    smooth = torch.stack([0.2 + yy, 0.3 + xx, 0.1 + yy + xx], dim=-1).expand(count, h, w, 3).contiguous()
    crops, _, record = M.crop_to_mask(smooth, mask, context, max_edge, multiple)
    out = M.stitch(record, crops, feather=2)
    # Down- and up-sampling blurs the ramp over a few crop pixels near the box's edges.
    (bh, bw), (ch, cw) = record.box_size, record.crop_size
    scale = max(bh / ch, bw / cw, 1.0)
    assert float((out - smooth).abs().max()) < 0.01 + 4 * 0.005 * scale


@FAST
@given(case=crop_cases(), samples=st.integers(1, 3))
def test_stitch_samples_and_purity(case, samples):
    image, mask, context, max_edge, multiple = case
    crops, crop_masks, record = M.crop_to_mask(image, mask, context, max_edge, multiple)
    edited = torch.rand(samples * image.shape[0], 5, 7, 3)
    before = record.crop_masks.clone()
    first = M.stitch(record, edited, feather=3)
    second = M.stitch(record, edited, feather=3)
    assert torch.equal(first, second) and torch.equal(record.crop_masks, before)
    assert first.shape == (samples * image.shape[0], *image.shape[1:])
    keep = outside_boxes(record, image.shape[1], image.shape[2])
    for j in range(first.shape[0]):
        i = j // samples
        assert torch.equal(first[j][keep[i]], image[i][keep[i]])
        untouched = (mask[i] == 0) & keep[i]
        assert torch.equal(first[j][untouched], image[i][untouched])


def test_stitch_pastes_the_edit_where_the_mask_is_full():
    image = torch.rand(1, 40, 50, 3)
    mask = torch.zeros(1, 40, 50)
    mask[0, 10:30, 15:35] = 1.0
    crops, _, record = M.crop_to_mask(image, mask, 0.5, 1024, 8)
    out = M.stitch(record, torch.full_like(crops, 0.25), feather=0)
    assert torch.all(out[0, 10:30, 15:35] == 0.25)
    assert torch.equal(out[0, :, :5], image[0, :, :5]) or record.boxes[0][0] < 5


def test_crop_empty_mask_is_the_whole_picture_and_big_boxes_pad():
    image = torch.rand(1, 30, 20, 3)
    crops, crop_masks, record = M.crop_to_mask(image, torch.zeros(1, 30, 20), 0.5, 1024, 8)
    assert record.crop_size == (32, 24) and record.paddings[0] == (2, 1, 2, 1)
    assert torch.equal(crops[0, 1:31, 2:22], image[0])
    assert torch.equal(crops[0, 0, 2:22], image[0, 0])  # replicated edge row
    assert float(crop_masks.abs().max()) == 0.0
    assert torch.equal(M.stitch(record, crops, 4), image)


def test_crop_boxes_share_one_size_and_stay_inside():
    image = torch.rand(2, 100, 200, 3)
    mask = torch.zeros(2, 100, 200)
    mask[0, 5:15, 5:15] = 1.0
    mask[1, 40:90, 120:190] = 1.0
    crops, _, record = M.crop_to_mask(image, mask, 0.2, 1024, 8)
    sizes = {(x1 - x0, y1 - y0) for x0, y0, x1, y1 in record.boxes}
    assert len(sizes) == 1 and all(p == (0, 0, 0, 0) for p in record.paddings)
    assert record.boxes[0][:2] == (0, 0)


def test_crop_downscales_to_max_edge():
    image = torch.rand(1, 1024, 1536, 3)
    mask = torch.zeros(1, 1024, 1536)
    mask[0, 100:700, 200:1100] = 1.0
    crops, crop_masks, record = M.crop_to_mask(image, mask, 0.1, 256, 8)
    assert max(record.crop_size) <= 256 and crops.shape[1:3] == record.crop_size
    out = M.stitch(record, crops, 0)
    keep = outside_boxes(record, 1024, 1536)
    assert torch.equal(out[keep], image[keep])


def test_crop_and_stitch_bad_inputs():
    image = torch.rand(2, 10, 10, 3)
    with pytest.raises(InputError):
        M.crop_to_mask(image, torch.zeros(3, 10, 10), 0.5)
    with pytest.raises(InputError, match="10x10"):
        M.crop_to_mask(image, torch.ones(1, 10, 30), 0.5)
    with pytest.raises(InputError, match="context"):
        M.crop_to_mask(image, torch.zeros(1, 10, 10), -1.0)
    _, _, record = M.crop_to_mask(image, torch.ones(1, 10, 10), 0.5)
    with pytest.raises(InputError, match="stitch"):
        M.stitch(record, torch.rand(3, 8, 8, 3), 0)
    with pytest.raises(InputError, match="feather"):
        M.stitch(record, torch.rand(2, 8, 8, 3), -2)


def test_other_mask_layouts_come_back_as_batches():
    for layout in [(2, 1, 9, 9), (2, 9, 9, 1)]:
        m = torch.zeros(layout)
        assert M.grow_mask(m, 2, "round").shape == (2, 9, 9)
        assert M.grow_mask(m, 0, "round").shape == (2, 9, 9)
        assert M.feather_mask(m, 2, "outward").shape == (2, 9, 9)


def test_work_in_column_bands_gives_the_same_result(monkeypatch):
    monkeypatch.setattr(M, "_WORK_ELEMENTS", 16)
    monkeypatch.setattr(M, "_MIN_BAND_ELEMENTS", 1)
    rng = np.random.default_rng(5)
    soft = rng.random((23, 31)).astype(np.float32) * (rng.random((23, 31)) < 0.3)
    for pixels in (3, -4, 9):
        assert np.array_equal(grow_np(soft, pixels, "diamond"), comfy_grow_mask(soft, pixels, True))
        assert np.array_equal(grow_np(soft, pixels, "square"), comfy_grow_mask(soft, pixels, False))
