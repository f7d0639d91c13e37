"""outpaint.py (ImgEditExtendCanvas): the larger picture and its mask, the fills, the seam, the limits,
and the whole outpaint chain ExtendCanvas -> CropToMask -> Inpaint (sandbox) -> Stitch."""

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from comfyui_imgedit.nodes.core import masks as M
from comfyui_imgedit.nodes.core import outpaint
from comfyui_imgedit.nodes.core.edit import run_edit
from comfyui_imgedit.nodes.core.errors import InputError
from comfyui_imgedit.nodes.core.providers.dezgo import DezgoClient
from remote_support import fast_http, sandbox  # noqa: F401

FAST = settings(max_examples=30, deadline=None)


def waves(h: int = 96, w: int = 128) -> torch.Tensor:
    """A smooth picture with structure in both directions and different colours per channel."""
    y = torch.linspace(0, 1, h)[:, None, None]
    x = torch.linspace(0, 1, w)[None, :, None]
    channel = torch.tensor([1.0, 0.6, 0.3])
    return (0.5 + 0.2 * torch.sin(7 * x + 3 * y + channel) + 0.15 * torch.cos(11 * y - 5 * x * channel)).clamp(0, 1)


def textured(h: int = 96, w: int = 128) -> torch.Tensor:
    noise = torch.rand(h, w, 3, generator=torch.Generator().manual_seed(3))
    return (0.3 * noise + 0.35 + 0.3 * torch.linspace(0, 1, w)[None, :, None]).clamp(0, 1)


def largest_neighbour_step(picture: torch.Tensor) -> float:
    return max(float((picture[1:] - picture[:-1]).abs().max()), float((picture[:, 1:] - picture[:, :-1]).abs().max()))


def seam_steps(out: torch.Tensor, h: int, w: int, left: int, top: int, right: int, bottom: int) -> list[float]:
    """Largest step across each extended side, between the picture's outer pixel and the fill beside it."""
    inner = (slice(top, top + h), slice(left, left + w))
    steps = []
    if top:
        steps.append(float((out[top - 1, inner[1]] - out[top, inner[1]]).abs().max()))
    if bottom:
        steps.append(float((out[top + h, inner[1]] - out[top + h - 1, inner[1]]).abs().max()))
    if left:
        steps.append(float((out[inner[0], left - 1] - out[inner[0], left]).abs().max()))
    if right:
        steps.append(float((out[inner[0], left + w] - out[inner[0], left + w - 1]).abs().max()))
    return steps


@FAST
@given(h=st.integers(1, 40), w=st.integers(1, 40), sides=st.tuples(*[st.integers(0, 90)] * 4),
       fill=st.sampled_from(outpaint.EXTEND_FILL_MODES), overlap=st.integers(0, 12), count=st.integers(1, 3))
def test_the_original_stays_bit_exact_in_place_and_the_mask_covers_the_new_area(h, w, sides, fill, overlap, count):
    left, top, right, bottom = sides
    image = torch.rand(count, h, w, 3)
    before = image.clone()
    out, mask = M.extend_canvas(image, left, top, right, bottom, fill, overlap)
    assert out.shape == (count, top + h + bottom, left + w + right, 3) and out.dtype == torch.float32
    assert mask.shape == out.shape[:3]
    assert torch.equal(out[:, top:top + h, left:left + w], image)
    assert torch.equal(image, before)
    new_area = torch.ones(out.shape[1:3], dtype=torch.bool)
    new_area[top:top + h, left:left + w] = False
    assert bool((mask[:, new_area] == 1).all())
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert 0.0 <= float(mask.min()) and float(mask.max()) <= 1.0


def test_the_mask_ramps_into_the_original_only_along_extended_sides():
    out, mask = M.extend_canvas(torch.rand(1, 20, 30, 3), left=5, top=0, right=0, bottom=4, fill="neutral", overlap=3)
    inner = mask[0, 0:20, 5:35]
    # Left side extended: 3/4, 2/4, 1/4 over the first three columns, then 0.
    assert torch.allclose(inner[5, :5], torch.tensor([0.75, 0.5, 0.25, 0.0, 0.0]))
    # Bottom extended: the same ramp upwards from the last row; corners take the higher of the two.
    assert torch.allclose(inner[-4:, 15], torch.tensor([0.0, 0.25, 0.5, 0.75]))
    assert float(inner[-1, 0]) == 0.75
    # Top and right not extended: no ramp there.
    assert float(inner[0, 15]) == 0.0 and float(inner[10, -1]) == 0.0
    assert float(inner[4:16, 3:].max()) == 0.0
    _, hard = M.extend_canvas(torch.rand(1, 20, 30, 3), left=5, bottom=4, fill="neutral", overlap=0)
    assert float(hard[0, 0:20, 5:35].max()) == 0.0


@pytest.mark.parametrize("picture", [waves(), textured()], ids=["smooth", "textured"])
def test_at_the_seam_the_surround_fill_jumps_no_more_than_neighbouring_pixels_inside(picture):
    h, w = picture.shape[:2]
    for sides in ((24, 16, 40, 80), (100, 3, 0, 1), (1, 1, 1, 1), (0, 0, 200, 0)):
        out, _ = M.extend_canvas(picture, *sides, fill="surround", overlap=0)
        inside = largest_neighbour_step(picture)
        assert max(seam_steps(out[0], h, w, *sides)) <= inside, sides
        # Nor anywhere in the fill, corners included, for the smooth picture.
        if inside < 0.05:
            assert largest_neighbour_step(out[0]) <= inside * 1.01, sides


def test_a_grey_fill_breaks_the_seam_criterion():
    """The seam test above can fail: neutral (and plain push-pull) jump at the border."""
    picture = waves()
    out, _ = M.extend_canvas(picture, 24, 16, 40, 80, fill="neutral")
    assert max(seam_steps(out[0], 96, 128, 24, 16, 40, 80)) > 5 * largest_neighbour_step(picture)


def test_surround_is_the_push_pull_fill_away_from_the_seam():
    """Past the seam blend, the fill is exactly ImgEditFillMasked's surround fill of the canvas."""
    picture = textured(30, 40)
    left, top, right, bottom = 70, 66, 90, 75
    out, _ = M.extend_canvas(picture, left, top, right, bottom, "surround")
    canvas_mask = torch.ones(out.shape[:3])
    canvas_mask[:, top:top + 30, left:left + 40] = 0
    reference = M.fill_masked(out, canvas_mask, "surround")
    far = torch.ones(out.shape[1:3], dtype=torch.bool)
    blend = outpaint.SEAM_BLEND
    far[max(0, top - blend):top + 30 + blend, max(0, left - blend):left + 40 + blend] = False
    assert int(far.sum()) > 1000
    assert float((out[0][far] - reference[0][far]).abs().max()) < 1e-6


def test_edge_repeats_the_border_pixels_and_neutral_is_grey():
    picture = torch.rand(1, 6, 7, 3)
    edge, _ = M.extend_canvas(picture, 2, 3, 4, 5, "edge")
    assert torch.equal(edge[0, 0, 0], picture[0, 0, 0]) and torch.equal(edge[0, -1, -1], picture[0, -1, -1])
    assert torch.equal(edge[0, 0, 2:9], picture[0, 0]) and torch.equal(edge[0, 3:9, -1], picture[0, :, -1])
    grey, _ = M.extend_canvas(picture, 2, 3, 4, 5, "neutral")
    assert float((grey[0, :3] - 0.5).abs().max()) == 0.0


def test_each_picture_of_a_batch_is_filled_from_itself():
    pictures = torch.stack([torch.full((8, 8, 3), 0.1), torch.full((8, 8, 3), 0.9)])
    out, mask = M.extend_canvas(pictures, 8, 8, 8, 8, "surround")
    assert torch.allclose(out[0], torch.full_like(out[0], 0.1), atol=1e-6)
    assert torch.allclose(out[1], torch.full_like(out[1], 0.9), atol=1e-6)
    assert mask.shape == (2, 24, 24) and torch.equal(mask[0], mask[1])


def test_sizes_past_the_limits_get_one_clear_sentence():
    picture = torch.rand(1, 8, 8, 3)
    with pytest.raises(InputError, match=r"^left is 4097 pixels; use 0 to 4096\.$"):
        M.extend_canvas(picture, left=4097)
    with pytest.raises(InputError, match=r"^bottom is -1 pixels"):
        M.extend_canvas(picture, bottom=-1)
    with pytest.raises(InputError, match=r"^overlap is 2000 pixels; use 0 to 1024\.$"):
        M.extend_canvas(picture, top=8, overlap=2000)
    with pytest.raises(InputError, match=r"fill is 'mirror'; use surround, edge or neutral\."):
        M.extend_canvas(picture, top=8, fill="mirror")
    wide = torch.zeros(1, 1, 9000, 3)
    with pytest.raises(InputError, match=r"^the extended picture would be 17096x1 pixels, more than ComfyUI's 16384 per side; extend the 9000x1 picture by less\.$"):
        M.extend_canvas(wide, left=4096, right=4000)


def _sent_size(record) -> tuple[int, int]:
    return Image.open(io.BytesIO(record.files["init_image"])).size


def test_the_outpaint_chain_sends_only_the_border_region_and_keeps_the_original(sandbox):
    """ExtendCanvas -> CropToMask(target_edge) -> Inpaint (Dezgo, sandbox) -> Stitch."""
    picture = waves(96, 128)[None]
    overlap, feather = 8, 4
    canvas, mask = M.extend_canvas(picture, left=0, top=0, right=64, bottom=0, fill="surround", overlap=overlap)
    crops, crop_masks, record = M.crop_to_mask(canvas, mask, context=0.5, max_edge=1024, multiple_of=8, target_edge=128)
    assert max(crops.shape[1:3]) == 128  # the model's size, from a box of the border region only
    box = record.boxes[0]
    assert box[0] > 64 and box[2] - box[0] < 192  # the crop does not reach the far side of the picture
    edited = run_edit(DezgoClient(http=fast_http("dezgo")), crops, mask=crop_masks, prompt="more of the same", seed=5,
                      strength=1.0)
    requests = sandbox.requests_to("dezgo.inpainting")
    assert len(requests) == 1 and max(_sent_size(requests[0])) == 128
    result = M.stitch(record, edited.images, feather=feather)
    assert result.shape == canvas.shape
    # Away from the overlap (and the stitch's feather) the original is untouched, bit for bit.
    untouched = 128 - overlap - feather - 1
    assert torch.equal(result[0, :, :untouched], picture[0, :, :untouched])
    # The new area was repainted (the sandbox inverts and tints it), not left as the fill.
    assert float((result[0, :, 140:] - canvas[0, :, 140:]).abs().mean()) > 0.1
