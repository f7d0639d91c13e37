"""images.py: layouts, mask matching, size fitting and its inverse, PIL/PNG round trips, composite."""

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from comfyui_imgedit.nodes.core import images as img
from comfyui_imgedit.nodes.core.errors import InputError

FAST = settings(max_examples=30, deadline=None)


def one_sentence(error: Exception) -> bool:
    text = str(error)
    return text.endswith(".") and text.count(". ") == 0 and len(text) < 300


# ---------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("shape", [(5, 7, 3), (2, 5, 7, 3), (2, 5, 7, 4), (2, 5, 7, 1), (5, 7, 2)])
def test_to_image_batch_layouts(shape):
    out = img.to_image_batch(torch.rand(shape))
    assert out.dtype == torch.float32 and out.dim() == 4 and out.shape[1:] == (5, 7, 3)


def test_to_image_batch_rgba_drops_alpha_and_keeps_colours():
    rgba = torch.rand(1, 4, 4, 4)
    rgba[..., 3] = 0.0
    assert torch.equal(img.to_image_batch(rgba), rgba[..., :3])


def test_to_image_batch_grey_repeats():
    grey = torch.rand(1, 3, 3, 1)
    out = img.to_image_batch(grey)
    assert torch.equal(out[..., 0], out[..., 2]) and torch.equal(out[..., 1], grey[..., 0])


def test_to_image_batch_clamps_and_keeps_good_input():
    good = torch.rand(1, 4, 4, 3)
    assert img.to_image_batch(good) is good
    wild = torch.tensor([[[[-1.0, 0.5, 2.0]]]])
    assert img.to_image_batch(wild).tolist() == [[[[0.0, 0.5, 1.0]]]]


def test_to_image_batch_uint8():
    out = img.to_image_batch(torch.full((2, 2, 3), 255, dtype=torch.uint8))
    assert torch.equal(out, torch.ones(1, 2, 2, 3))


@pytest.mark.parametrize("bad", [torch.rand(4, 4), torch.rand(1, 4, 4, 5), torch.rand(0, 4, 4, 3)])
def test_to_image_batch_bad_shape(bad):
    with pytest.raises(InputError) as info:
        img.to_image_batch(bad, name="picture")
    assert "picture" in str(info.value) and one_sentence(info.value)


def test_nan_names_the_input():
    bad = torch.rand(1, 4, 4, 3)
    bad[0, 1, 1, 1] = float("nan")
    with pytest.raises(InputError, match="source") as info:
        img.to_image_batch(bad, name="source")
    assert one_sentence(info.value)
    with pytest.raises(InputError, match="inpaint mask"):
        img.to_mask_batch(torch.full((3, 3), float("nan")), name="inpaint mask")


@pytest.mark.parametrize("shape", [(6, 8), (2, 6, 8), (2, 1, 6, 8), (2, 6, 8, 1)])
def test_to_mask_batch_layouts(shape):
    out = img.to_mask_batch(torch.rand(shape))
    assert out.dim() == 3 and out.shape[1:] == (6, 8)


def test_to_mask_batch_rejects_image():
    with pytest.raises(InputError, match="mask") as info:
        img.to_mask_batch(torch.rand(1, 6, 8, 3))
    assert one_sentence(info.value)


# ---------------------------------------------------------------------------- matching

def test_match_same_size_is_identity():
    mask = torch.rand(1, 6, 8)
    assert img.match_mask_to_image(mask, torch.rand(1, 6, 8, 3)) is mask


def test_match_resizes_same_aspect_soft():
    mask = torch.zeros(1, 10, 20)
    mask[:, :, 10:] = 1.0
    out = img.match_mask_to_image(mask, torch.rand(1, 40, 80, 3))
    assert out.shape == (1, 40, 80)
    assert 0 < int(((out > 0) & (out < 1)).sum())  # bilinear keeps the edge soft
    assert float(out[0, :, :30].max()) == 0.0 and float(out[0, :, 50:].min()) == 1.0


def test_match_broadcasts_batches():
    assert img.match_mask_to_image(torch.rand(1, 4, 4), torch.rand(3, 4, 4, 3)).shape == (3, 4, 4)
    assert img.match_mask_to_image(torch.rand(3, 4, 4), torch.rand(1, 4, 4, 3)).shape == (3, 4, 4)
    with pytest.raises(InputError) as info:
        img.match_mask_to_image(torch.rand(2, 4, 4), torch.rand(3, 4, 4, 3))
    assert "3" in str(info.value) and "2" in str(info.value) and one_sentence(info.value)


def test_match_wrong_aspect_names_both_sizes():
    with pytest.raises(InputError) as info:
        img.match_mask_to_image(torch.ones(1, 24, 64), torch.rand(1, 64, 64, 3))
    assert "64x24" in str(info.value) and "64x64" in str(info.value) and one_sentence(info.value)


def test_match_empty_loadimage_mask_any_aspect():
    out = img.match_mask_to_image(torch.zeros(1, 64, 64), torch.rand(1, 30, 90, 3))
    assert out.shape == (1, 30, 90) and not bool(out.any())


def test_aspect_matches_within_one_percent():
    assert img.aspect_matches(45, 67, 90, 134)  # half size, same aspect
    assert img.aspect_matches(100, 100, 100, 101)  # 1 % wider: still the same aspect
    assert not img.aspect_matches(100, 100, 100, 102)  # 2 % wider: another aspect
    assert not img.aspect_matches(24, 64, 64, 64)


def test_broadcast_batch():
    a, b = img.broadcast_batch(torch.rand(1, 2, 2, 3), torch.rand(4, 2, 2))
    assert a.shape[0] == b.shape[0] == 4
    with pytest.raises(InputError):
        img.broadcast_batch(torch.rand(2, 2, 2, 3), torch.rand(4, 2, 2))


# ---------------------------------------------------------------------------- fit_size / undo_fit

sizes = st.integers(min_value=1, max_value=90)


@FAST
@given(h=sizes, w=sizes, max_edge=st.sampled_from([None, 16, 33, 64]), multiple=st.sampled_from([1, 8, 16]))
def test_fit_resize_rule(h, w, max_edge, multiple):
    if max_edge is not None and max_edge < multiple:
        return
    picture = torch.rand(h, w, 3)
    fitted, fit = img.fit_size(picture, max_edge, multiple, "resize")
    fh, fw = fitted.shape[:2]
    assert (fh, fw) == (fit.height, fit.width)
    assert fh % multiple == 0 and fw % multiple == 0 and fh >= multiple and fw >= multiple
    if max_edge is not None and max_edge >= 2 * multiple:
        assert max(fh, fw) <= max_edge
    back = img.undo_fit(fitted, fit)
    assert back.shape == picture.shape
    if not fit.changed:
        assert fitted is picture and back is picture


@FAST
@given(h=sizes, w=sizes, b=st.integers(1, 3), multiple=st.sampled_from([1, 8, 64]), as_mask=st.booleans())
def test_fit_pad_is_bit_exact(h, w, b, multiple, as_mask):
    t = torch.rand(b, h, w) if as_mask and w not in (1, 3, 4) else torch.rand(b, h, w, 3)
    fitted, fit = img.fit_size(t, None, multiple, "pad")
    assert fit.height % multiple == 0 and fit.width % multiple == 0
    back = img.undo_fit(fitted, fit)
    assert torch.equal(back, t)
    # Padding replicates the last row/column.
    if fit.pad_bottom:
        assert torch.equal(fitted[:, -1], fitted[:, h - 1])


def test_fit_pad_with_max_edge_resizes_first():
    t = torch.rand(100, 300, 3)
    fitted, fit = img.fit_size(t, 64, 8, "pad")
    assert fit.resized == (21, 64) and fitted.shape == (24, 64, 3) and fit.pad_bottom == 3
    assert img.undo_fit(fitted, fit).shape == t.shape


def test_fit_unchanged_returns_same_object():
    t = torch.rand(64, 48, 3)
    for mode in ("resize", "pad"):
        out, fit = img.fit_size(t, 1024, 8, mode)
        assert out is t and not fit.changed and img.undo_fit(out, fit) is t


def test_fit_8k_and_1x1():
    big = torch.zeros(1, 4320, 7680, 3)
    fitted, fit = img.fit_size(big, 1024, 8, "resize")
    assert fitted.shape == (1, 576, 1024, 3) and fit.original_width == 7680
    tiny = torch.rand(1, 1)
    fitted, fit = img.fit_size(tiny, 1024, 8, "resize")
    assert fitted.shape == (8, 8) and img.undo_fit(fitted, fit).shape == (1, 1)
    fitted, fit = img.fit_size(tiny, 1024, 8, "pad")
    assert fitted.shape == (8, 8) and torch.equal(img.undo_fit(fitted, fit), tiny)


def test_fit_bad_arguments():
    with pytest.raises(InputError):
        img.fit_size(torch.rand(4, 4, 3), 1024, 8, "stretch")
    with pytest.raises(InputError):
        img.fit_size(torch.rand(4, 4, 3), 4, 8)


def test_undo_fit_accepts_a_result_of_another_size():
    t = torch.rand(30, 50, 3)
    fitted, fit = img.fit_size(t, 32, 8, "resize")
    assert img.undo_fit(torch.rand(7, 9, 3), fit).shape == t.shape


def test_resize_helpers_clamp_and_shapes():
    hard = torch.zeros(1, 16, 16, 3)
    hard[:, :, 8:] = 1.0
    up = img.resize_image(hard, 40, 40)
    assert up.shape == (1, 40, 40, 3) and float(up.min()) >= 0.0 and float(up.max()) <= 1.0
    assert img.resize_mask(torch.rand(16, 16), 4, 4).shape == (4, 4)
    m = torch.rand(2, 16, 16)
    assert img.resize_mask(m, 16, 16) is m


# ---------------------------------------------------------------------------- PIL / bytes

def test_png_round_trip_exact_on_8bit_values():
    values = torch.randint(0, 256, (9, 11, 3)).float() / 255.0
    assert torch.equal(img.decode_image(img.encode_png(values)), values)
    mask = torch.randint(0, 256, (9, 11)).float() / 255.0
    assert torch.equal(img.decode_mask(img.encode_png(mask)), mask)


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "L", "CMYK", "I;16", "I", "F"])
def test_pil_modes_become_rgb(mode):
    pil = Image.new("RGB", (5, 4), (200, 100, 50)).convert(mode)
    out = img.pil_to_tensor(pil)
    assert out.shape == (4, 5, 3) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_16bit_grey_is_scaled():
    pil = Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16))
    assert torch.allclose(img.pil_to_tensor(pil), torch.ones(2, 2, 3))
    assert torch.allclose(img.pil_to_mask(pil), torch.ones(2, 2))


def test_decode_other_formats():
    buffer = io.BytesIO()
    Image.new("RGB", (6, 3), (255, 0, 0)).save(buffer, format="JPEG")
    out = img.decode_image(buffer.getvalue())
    assert out.shape == (3, 6, 3) and float(out[..., 0].mean()) > 0.9


@pytest.mark.parametrize("data", [b"", b"not a picture at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
def test_decode_garbage_is_one_sentence(data):
    with pytest.raises(InputError) as info:
        img.decode_image(data)
    assert one_sentence(info.value)


def test_tensor_to_pil_modes():
    assert img.tensor_to_pil(torch.rand(1, 4, 5, 3)).mode == "RGB"
    assert img.mask_to_pil(torch.rand(4, 5)).size == (5, 4)


# ---------------------------------------------------------------------------- composite

@FAST
@given(seed=st.integers(0, 2**16))
def test_composite_exact_where_mask_is_0_or_1(seed):
    g = torch.Generator().manual_seed(seed)
    original, edited = torch.rand(2, 8, 8, 3, generator=g), torch.rand(2, 8, 8, 3, generator=g)
    mask = torch.rand(2, 8, 8, generator=g)
    mask[:, :4] = 0.0
    mask[:, 6:] = 1.0
    out = img.composite(original, edited, mask)
    assert torch.equal(out[:, :4], original[:, :4]) and torch.equal(out[:, 6:], edited[:, 6:])


def test_composite_of_identical_pictures_is_exact():
    original = torch.rand(1, 6, 6, 3)
    assert torch.equal(img.composite(original, original.clone(), torch.rand(1, 6, 6)), original)


@pytest.mark.parametrize("size", [(22, 2, 16), (40, 7, 4), (5, 3, 2), (22, 1, 16), (9, 1, 20)])
def test_resizing_to_one_column_keeps_the_vertical_profile(size):
    # torch's one-pass antialiased resize to width 1 returns one value for every row (the crop of a
    # 1-pixel-wide picture then came back as a flat colour); rows must keep their own values. The
    # reference is the same resize to 3 columns, which torch gets right, of a picture constant across.
    height, width, new_height = size
    column = (0.2 + 0.005 * torch.arange(height, dtype=torch.float32))[:, None, None]
    picture = column.expand(height, width, 3).contiguous()
    expected = img.resize_image(column.expand(height, 3, 3).contiguous(), new_height, 3)[:, :1]
    assert torch.allclose(img.resize_image(picture, new_height, 1), expected, atol=1e-5)
    expected_mask = img.resize_mask(column[..., 0].expand(height, 3).contiguous(), new_height, 3)[:, :1]
    assert torch.allclose(img.resize_mask(picture[..., 0], new_height, 1), expected_mask, atol=1e-5)
