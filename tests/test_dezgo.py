"""DezgoClient against the sandbox: multipart mapping, seed/cost headers, errors, extra, no key leaks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_imgedit.nodes.core import images as img
from comfyui_imgedit.nodes.core.errors import AuthError, CreditsError, InputError, InvalidRequest, ProviderFailed
from comfyui_imgedit.nodes.core.providers.dezgo import DezgoClient
from comfyui_imgedit.nodes.core.request import Hooks
from comfyui_imgedit.sandbox import Canned, render
from remote_support import KEY, assert_no_key, fast_http, make_request, picture, sandbox  # noqa: F401


def client(**kw):
    return DezgoClient(http=fast_http("dezgo"), **kw)


def test_img2img_field_mapping_and_multipart(sandbox):
    request = make_request(seed=1234)
    result = client(model="dreamshaper_8", sampler="euler_a").edit(request, Hooks())
    (sent,) = sandbox.requests_to("dezgo.image2image")
    assert sent.headers["X-Dezgo-Key"] == KEY
    assert sent.headers["Content-Type"].startswith("multipart/form-data")
    assert sent.form == {"prompt": "a red barn", "negative_prompt": "blurry", "strength": "0.6", "steps": "30",
                         "guidance": "7.5", "seed": "1234", "model": "dreamshaper_8", "sampler": "euler_a",
                         "format": "png"}
    assert list(sent.files) == ["init_image"]
    assert sent.files["init_image"] == img.encode_png(request.image)  # binary part, not base64
    assert KEY not in sent.body.decode("latin-1")
    assert result.seeds == [1234]
    assert result.job_ids and result.job_ids[0].startswith("dz-")
    expected = render(img.tensor_to_pil(request.image), None, 1234, 0.6)
    got = (result.images[0].numpy() * 255).round()
    assert np.abs(got - np.asarray(expected, dtype=np.float32)).max() <= 1


def test_inpaint_sends_a_white_is_change_mask(sandbox):
    request = make_request(inpaint=True)
    client().edit(request, Hooks())
    (sent,) = sandbox.requests_to("dezgo.inpainting")
    assert set(sent.files) == {"init_image", "mask_image"}
    mask = Image.open(io.BytesIO(sent.files["mask_image"]))
    assert mask.mode == "L" and mask.size == (48, 32)
    values = np.asarray(mask)
    assert values[10, 15] == 255 and values[0, 0] == 0  # inside the box = white = change


def test_seed_from_header_and_cost_in_metadata(sandbox):
    result = client().edit(make_request(seed=None), Hooks())
    (sent,) = sandbox.requests_to("dezgo.image2image")
    assert "seed" not in sent.form
    assert isinstance(result.seeds[0], int)
    assert result.metadata["cost_usd"] == pytest.approx(0.001987, abs=1e-6)
    assert result.metadata["balance_usd"] == pytest.approx(10 - 0.001987, abs=1e-5)


def test_multipart_upload_is_not_inflated(sandbox):
    request = make_request(h=512, w=512)
    client().edit(request, Hooks())
    (sent,) = sandbox.requests_to("dezgo.image2image")
    ratio = len(sent.body) / len(img.encode_png(request.image))
    assert ratio <= 1.02


def test_format_and_extra(sandbox):
    result = client(format="jpg", extra='{"upscale": 1, "lora1": "x"}').edit(make_request(), Hooks())
    (sent,) = sandbox.requests_to("dezgo.image2image")
    assert sent.form["format"] == "jpg" and sent.form["upscale"] == "1" and sent.form["lora1"] == "x"
    assert any("'lora1' is not a documented Dezgo parameter" in w for w in result.warnings)
    assert result.images[0].shape == (32, 48, 3)


@pytest.mark.parametrize("extra,words", [
    ('{"key": "x"}', "keys, hosts and images"),
    ('{"X-Dezgo-Key": "x"}', "keys, hosts and images"),
    ('{"init_image": "x"}', "keys, hosts and images"),
    ('{"steps": 20}', "Img2Img / Inpaint node"),
    ('{"upscale": 3}', "upscale"),
    ('[1, 2]', "JSON object"),
    ('{"upscale": ', "not valid JSON"),
])
def test_bad_extra_is_an_input_error(extra, words):
    with pytest.raises(InputError) as caught:
        client(extra=extra)
    assert words in str(caught.value)


def test_result_of_another_size_is_resized_with_a_warning(sandbox):
    sandbox.output_scale = 0.5
    result = client().edit(make_request(), Hooks())
    assert result.images[0].shape == (32, 48, 3)
    assert any("resized" in w for w in result.warnings)


@pytest.mark.parametrize("canned,kind,words", [
    (Canned(401, {"message": "bad key"}), AuthError, "DEZGO_API_KEY"),
    (Canned(402, {"message": "Insufficient balance"}), CreditsError, "top up"),
    (Canned(400, {"message": {"prompt": ["too long"]}}), InvalidRequest, "prompt: too long"),
    (Canned(404, {"message": "model not found"}), InvalidRequest, "model"),
    (Canned(200, body=b"<html>oops</html>", content_type="text/html"), ProviderFailed, "oops"),
])
def test_errors_are_typed(sandbox, canned, kind, words):
    sandbox.script("dezgo.image2image", canned)
    with pytest.raises(kind) as caught:
        client().edit(make_request(), Hooks())
    assert words in str(caught.value)
    assert sandbox.count("dezgo.image2image") == 1


def test_wrong_key_is_an_auth_error(sandbox, monkeypatch):
    monkeypatch.setenv("DEZGO_API_KEY", "wrong-key-not-real")
    with pytest.raises(AuthError):
        client().edit(make_request(), Hooks())


def test_validation_errors_from_dezgo_name_the_field(sandbox):
    # steps out of range are clamped before sending now (test_remote_contract.py), so Dezgo's
    # field error is scripted
    sandbox.script("dezgo.image2image", Canned(400, {"message": {"steps": ["must be between 10 and 150"]}}))
    with pytest.raises(InvalidRequest) as caught:
        client().edit(make_request(steps=5), Hooks())
    assert caught.value.fields == {"steps": "must be between 10 and 150"}


def test_missing_key_fails_before_sending(sandbox, monkeypatch, tmp_path):
    monkeypatch.delenv("DEZGO_API_KEY")
    with pytest.raises(AuthError) as caught:
        client(user_dir=str(tmp_path)).edit(make_request(), Hooks())
    assert "DEZGO_API_KEY" in str(caught.value)
    assert sandbox.requests == []


def test_key_file_is_read_at_call_time(sandbox, monkeypatch, tmp_path):
    from comfyui_imgedit.nodes.core import keys

    monkeypatch.delenv("DEZGO_API_KEY")
    dz = client(user_dir=str(tmp_path))
    keys.save_key("dezgo", KEY, tmp_path)
    assert len(dz.edit(make_request(), Hooks()).images) == 1


def test_one_sample_per_call():
    assert DezgoClient.max_samples_per_call == 1
    with pytest.raises(InputError):
        client().form_fields(make_request(samples=2))


def test_key_never_in_repr_attributes_or_results(sandbox):
    dz = client(model="m", extra={"upscale": 1})
    result = dz.edit(make_request(), Hooks())
    sandbox.script("dezgo.image2image", Canned(401, {"message": f"key {KEY} is not valid"}))
    with pytest.raises(AuthError) as caught:
        dz.edit(make_request(), Hooks())
    assert_no_key(dz, vars(dz), dz.describe(), result.metadata, result.warnings, result.job_ids, caught.value)
    assert "[redacted]" in str(caught.value)


def test_jpeg_and_rgba_answers_decode_to_rgb(sandbox):
    rgba = Image.new("RGBA", (48, 32), (10, 200, 30, 128))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    sandbox.script("dezgo.image2image", Canned(200, body=buffer.getvalue(), content_type="image/png",
                                               headers={"x-input-seed": "42"}))
    result = client().edit(make_request(), Hooks())
    assert result.images[0].shape == (32, 48, 3) and result.seeds == [42]
    assert torch.is_floating_point(result.images[0])


def test_picture_helper_is_deterministic():
    assert torch.equal(picture(8, 8, seed=3), picture(8, 8, seed=3))
