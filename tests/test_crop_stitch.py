"""crop_stitch.py: target_edge, regions, crop order with pictures x regions x samples, CropLike, colour match."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from comfyui_imgedit.nodes.core import masks as M
from comfyui_imgedit.nodes.core.errors import InputError
from mask_strategies import pictures_with_rectangles

FAST = settings(max_examples=30, deadline=None)
ASSETS = Path(__file__).resolve().parents[1] / "assets"
TARGET_EDGES = [0, 16, 40, 96]


@st.composite
def region_cases(draw):
    """Pictures with 0-3 rectangles each (binary or soft), and crop settings."""
    image, mask = draw(pictures_with_rectangles(min_side=4, max_rect=12))
    settings_ = dict(context=draw(st.sampled_from([0.0, 0.3, 1.0])), max_edge=draw(st.sampled_from([32, 1024])),
                     multiple_of=draw(st.sampled_from([1, 8])), target_edge=draw(st.sampled_from(TARGET_EDGES)),
                     regions=draw(st.sampled_from(M.REGION_MODES)))
    return image, mask, settings_


def outside_all_boxes(record, count, height, width):
    """Per picture: True where no crop box of that picture reaches."""
    keep = torch.ones(count, height, width, dtype=torch.bool)
    for (x0, y0, x1, y1), i in zip(record.boxes, record.pictures):
        keep[i, max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = False
    return keep


# ---------------------------------------------------------------------------- crop -> stitch, every combination

@pytest.mark.parametrize("regions", M.REGION_MODES)
@pytest.mark.parametrize("target_edge", TARGET_EDGES)
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_unedited_crops_stitch_back_exactly_outside_the_boxes(regions, target_edge, data):
    image, mask, s = data.draw(region_cases())
    s.update(regions=regions, target_edge=target_edge)
    crops, crop_masks, record = M.crop_to_mask(image, mask, **s)
    ch, cw = record.crop_size
    assert crops.shape == (len(record.boxes), ch, cw, 3) and crop_masks.shape == (len(record.boxes), ch, cw)
    assert ch % s["multiple_of"] == 0 and cw % s["multiple_of"] == 0
    if target_edge:
        expected = min(max(s["multiple_of"], int(min(target_edge, s["max_edge"]) / s["multiple_of"] + 0.5) * s["multiple_of"]),
                       max(s["multiple_of"], s["max_edge"] // s["multiple_of"] * s["multiple_of"]))
        assert max(ch, cw) == expected
    out = M.stitch(record, crops, feather=2, color_match="none")
    keep = outside_all_boxes(record, *mask.shape)
    assert torch.equal(out[keep], image[keep])
    assert not bool(mask[keep].any())  # every masked pixel is inside some box of its picture
    if record.box_size == record.crop_size and regions == "together":
        assert torch.equal(out, image)


@pytest.mark.parametrize("regions", M.REGION_MODES)
@pytest.mark.parametrize("target_edge", TARGET_EDGES)
def test_unedited_scaled_crops_come_back_within_resampling_error(regions, target_edge):
    h, w = 80, 120
    yy, xx = torch.meshgrid(torch.arange(h) * 0.004, torch.arange(w) * 0.004, indexing="ij")
    smooth = torch.stack([0.2 + yy, 0.3 + xx, 0.1 + yy + xx], dim=-1)[None]
    mask = torch.zeros(1, h, w)
    mask[0, 10:22, 8:30] = 1.0
    mask[0, 55:75, 90:112] = 1.0
    crops, _, record = M.crop_to_mask(smooth, mask, 0.5, 1024, 8, target_edge, regions)
    out = M.stitch(record, crops, feather=2)
    (bh, bw), (ch, cw) = record.box_size, record.crop_size
    scale = max(bh / ch, bw / cw, ch / bh, cw / bw)
    assert float((out - smooth).abs().max()) < 0.01 + 4 * 0.004 * scale


def test_target_edge_scales_a_small_region_up_to_the_model_size():
    image = torch.rand(1, 400, 600, 3)
    mask = torch.zeros(1, 400, 600)
    mask[0, 100:160, 200:300] = 1.0  # 100x60
    crops, crop_masks, record = M.crop_to_mask(image, mask, 0.0, 1024, 8, 512)
    assert record.box_size == (60, 100) and record.crop_size == (304, 512)
    assert crops.shape == (1, 304, 512, 3) and float(crop_masks.min()) > 0.99
    # Down as well as up, and never past max_edge.
    assert M.crop_to_mask(image, mask, 0.0, 1024, 8, 64)[2].crop_size == (40, 64)
    assert M.crop_to_mask(image, mask, 0.0, 256, 8, 512)[2].crop_size == (152, 256)
    # target_edge 0 keeps today's crop: the box's own pixels.
    assert M.crop_to_mask(image, mask, 0.0, 1024, 8)[2].crop_size == (64, 104)


# ---------------------------------------------------------------------------- regions

def two_faces():
    image = torch.rand(1, 300, 400, 3)
    mask = torch.zeros(1, 300, 400)
    mask[0, 10:40, 10:50] = 1.0  # top left
    mask[0, 250:290, 340:390] = 1.0  # bottom right
    return image, mask


def test_separate_regions_are_small_crops_each_with_only_its_own_mask():
    image, mask = two_faces()
    together = M.crop_to_mask(image, mask, 0.5, 1024, 8)[2]
    crops, crop_masks, record = M.crop_to_mask(image, mask, 0.5, 1024, 8, 0, "separately")
    assert len(record.boxes) == 2 and record.pictures == (0, 0)
    assert max(record.box_size) < 100 < max(together.box_size)
    assert record.boxes[0][1] < 50 and record.boxes[1][1] > 200  # reading order
    for k, (x0, y0, x1, y1) in enumerate(record.boxes):
        assert torch.equal(crops[k], image[0, y0:y1, x0:x1])
        assert torch.equal(crop_masks[k], mask[0, y0:y1, x0:x1])
    # Each edit goes back into its own region.
    edits = torch.stack([torch.full_like(crops[0], 0.2), torch.full_like(crops[1], 0.7)])
    out = M.stitch(record, edits, feather=0)
    assert torch.all(out[0, 10:40, 10:50] == 0.2) and torch.all(out[0, 250:290, 340:390] == 0.7)
    keep = mask[0] == 0
    assert torch.equal(out[0][keep], image[0][keep])


def test_regions_whose_boxes_overlap_are_merged():
    image = torch.rand(1, 100, 100, 3)
    mask = torch.zeros(1, 100, 100)
    mask[0, 20:30, 20:30] = 1.0
    mask[0, 20:30, 33:43] = 1.0  # 3 px apart: grown boxes (context 0.5) overlap
    assert len(M.crop_to_mask(image, mask, 0.5, 1024, 8, 0, "separately")[2].boxes) == 1
    assert len(M.crop_to_mask(image, mask, 0.0, 1024, 8, 0, "separately")[2].boxes) == 2


def test_a_crop_mask_never_holds_a_neighbouring_region():
    image = torch.rand(1, 60, 200, 3)
    mask = torch.zeros(1, 60, 200)
    mask[0, 20:40, 10:20] = 1.0  # small
    mask[0, 5:55, 100:190] = 1.0  # large, and first in reading order: the small box is widened to its size
    crops, crop_masks, record = M.crop_to_mask(image, mask, 0.0, 1024, 1, 0, "separately")
    assert len(record.boxes) == 2 and record.box_size == (50, 90)
    assert float(crop_masks[0].sum()) == 4500.0 and float(crop_masks[1].sum()) == 200.0  # own region only
    out = M.stitch(record, torch.zeros(2, *record.crop_size, 3), feather=0)
    assert torch.equal(out[0][mask[0] == 0], image[0][mask[0] == 0])
    assert float(out[0][mask[0] == 1].abs().max()) == 0.0


def test_order_with_pictures_regions_and_samples():
    """Crops: picture 0's regions (reading order), then picture 1's. Edits: k samples per crop.
    Output: k per picture, picture-major; output i*k+s holds sample s of every crop of picture i."""
    image = torch.rand(3, 120, 160, 3)
    mask = torch.zeros(3, 120, 160)
    mask[0, 5:15, 5:15] = 1.0
    mask[0, 90:110, 130:150] = 1.0
    mask[1, 50:60, 70:80] = 1.0  # one region; picture 2: empty mask = the whole picture
    # (picture 2's empty mask makes every box the whole picture: the boxes share one size)
    crops, _, record = M.crop_to_mask(image, mask, 0.2, 1024, 8, 0, "separately")
    assert record.pictures == (0, 0, 1, 2) and record.box_size == (120, 160)
    samples = 3
    value = lambda crop, sample: 0.1 * crop + 0.02 * sample + 0.05  # noqa: E731
    edits = torch.stack([torch.full((20, 30, 3), value(c, s)) for c in range(4) for s in range(samples)])
    out = M.stitch(record, edits, feather=0)
    assert out.shape == (3 * samples, 120, 160, 3)
    for s in range(samples):
        assert torch.allclose(out[0 * samples + s, 5:15, 5:15], torch.tensor(value(0, s)))
        assert torch.allclose(out[0 * samples + s, 90:110, 130:150], torch.tensor(value(1, s)))
        assert torch.allclose(out[1 * samples + s, 50:60, 70:80], torch.tensor(value(2, s)))
        assert torch.equal(out[2 * samples + s], image[2])  # empty mask: nothing blended in
        assert torch.equal(out[1 * samples + s][mask[1] == 0], image[1][mask[1] == 0])


def test_stitch_rejects_a_wrong_count_and_bad_settings():
    image, mask = two_faces()
    crops, _, record = M.crop_to_mask(image, mask, 0.5, 1024, 8, 0, "separately")
    with pytest.raises(InputError, match="2 crops"):
        M.stitch(record, crops[:1])
    with pytest.raises(InputError, match="color_match"):
        M.stitch(record, crops, 0, "sepia")
    with pytest.raises(InputError, match="target_edge"):
        M.crop_to_mask(image, mask, 0.5, 1024, 8, 4)
    with pytest.raises(InputError, match="target_edge"):
        M.crop_to_mask(image, mask, 0.5, 1024, 8, -8)
    with pytest.raises(InputError, match="regions"):
        M.crop_to_mask(image, mask, 0.5, 1024, 8, 0, "each")
    specks = torch.zeros(1, 300, 400)
    specks[0, ::4, ::4] = 1.0
    with pytest.raises(InputError, match="together"):
        M.crop_to_mask(image, specks, 0.0, 1024, 8, 0, "separately")


# ---------------------------------------------------------------------------- CropLike

@FAST
@given(case=region_cases())
def test_crop_like_gives_the_crops_of_crop_to_mask(case):
    image, mask, s = case
    crops, crop_masks, record = M.crop_to_mask(image, mask, **s)
    like_image, like_mask = M.crop_like(record, image, mask)
    assert torch.equal(like_image, crops)
    if s["regions"] == "together":
        assert torch.equal(like_mask, crop_masks)
    else:  # the whole mask cut the same way; each crop mask is its region's part of it
        assert torch.all(like_mask >= crop_masks)
    other = torch.rand(1, *image.shape[1:])  # one picture for every original
    other_crops, _ = M.crop_like(record, other)
    assert torch.equal(other_crops, M.crop_to_mask(other.expand_as(image).contiguous(), mask, **s)[0])
    # Nothing connected: the record's own crops and masks.
    none_image, none_mask = M.crop_like(record)
    assert torch.equal(none_image, crops) and none_mask is record.crop_masks


def test_crop_like_resizes_a_picture_of_the_same_aspect_and_rejects_others():
    image, mask = two_faces()
    _, _, record = M.crop_to_mask(image, mask, 0.5, 1024, 8, 64, "separately")
    half = torch.rand(1, 150, 200, 3)
    from comfyui_imgedit.nodes.core import images as img
    expected = M.crop_like(record, img.resize_image(half, 300, 400))[0]
    assert torch.equal(M.crop_like(record, half)[0], expected)
    with pytest.raises(InputError, match="image is 200x200"):
        M.crop_like(record, torch.rand(1, 200, 200, 3))
    with pytest.raises(InputError, match="image has 2 pictures"):
        M.crop_like(record, torch.rand(2, 300, 400, 3))


# ---------------------------------------------------------------------------- colour match

def sample_case():
    picture = np.asarray(Image.open(ASSETS / "sample.png").convert("RGB"), dtype=np.float32) / 255.0
    mask = np.asarray(Image.open(ASSETS / "sample_mask.png").convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(picture)[None], torch.from_numpy((mask > 0.5).astype(np.float32))[None]


def drift_left(mode: str, regions: str = "together", target_edge: int = 0) -> float:
    """Mean error inside the mask after stitching a drifted (0.85x + 0.12) crop, over the drift's own."""
    picture, mask = sample_case()
    crops, _, record = M.crop_to_mask(picture, mask, 0.75, 1024, 8, target_edge, regions)
    drifted = (0.85 * crops + 0.12).clamp(0.0, 1.0)
    inside = mask[0] > 0.5
    error = lambda out: float((out - picture)[0][inside].abs().mean())  # noqa: E731
    return error(M.stitch(record, drifted, 8, mode)) / error(M.stitch(record, drifted, 8, "none"))


@pytest.mark.parametrize("mode", [m for m in M.COLOR_MATCH_MODES if m != "none"])
def test_colour_match_removes_two_thirds_of_a_drift(mode):
    assert drift_left(mode) < 1 / 3
    assert drift_left(mode, "separately", 512) < 1 / 3


def test_colour_match_keeps_the_outside_and_an_undrifted_edit():
    picture, mask = sample_case()
    crops, _, record = M.crop_to_mask(picture, mask, 0.75, 1024, 8)
    for mode in M.COLOR_MATCH_MODES:
        out = M.stitch(record, crops, 8, mode)
        assert float((out - picture).abs().max()) < 2e-3  # the crop's own colours: (almost) nothing to move
        drifted = M.stitch(record, 0.85 * crops + 0.12, 8, mode)
        keep = outside_all_boxes(record, *mask.shape)
        assert torch.equal(drifted[keep], picture[keep])
