"""SDAPIClient (Stable Diffusion API v3): steps snapping, HTTP-200 errors, upload through ModelsLab, polling."""

from __future__ import annotations

import time

import pytest

from comfyui_imgedit.nodes.core.errors import AuthError, InputError, InvalidRequest, ProviderFailed, RateLimited
from comfyui_imgedit.nodes.core.providers.sdapi import SDAPIClient, snap_steps
from comfyui_imgedit.nodes.core.request import Hooks
from comfyui_imgedit.sandbox import Canned
from remote_support import KEY, assert_no_key, fast_http, make_request, sandbox  # noqa: F401


def client(**kw):
    return SDAPIClient(http=fast_http("sdapi"), **kw)


@pytest.mark.parametrize("asked,sent", [(1, 21), (20, 21), (26, 31), (30, 31), (36, 41), (46, 51), (150, 51),
                                        (31, 31)])
def test_snap_steps(asked, sent):
    assert snap_steps(asked) == sent


def test_field_mapping_and_upload_through_modelslab(sandbox):
    sandbox.job_delay = 0.2
    result = client().edit(make_request(inpaint=True, samples=2, steps=25, seed=11), Hooks())
    assert sandbox.count("modelslab.upload") == 2  # same vendor, same key
    (sent,) = sandbox.requests_to("sdapi.inpaint")
    body = dict(sent.json)
    assert body.pop("key") == KEY
    assert body.pop("init_image").startswith(f"{sandbox.url}/uploads/")
    assert body.pop("mask_image").startswith(f"{sandbox.url}/uploads/")
    assert body == {"prompt": "a red barn", "negative_prompt": "blurry", "width": 48, "height": 32, "samples": 2,
                    "num_inference_steps": 21, "safety_checker": "yes", "enhance_prompt": "no",
                    "guidance_scale": 7.5, "strength": 0.6, "seed": 11, "base64": "no"}
    assert "model_id" not in body
    assert any("25 was sent as 21" in w for w in result.warnings)
    assert len(result.images) == 2 and result.seeds == [11, None]  # the answer names only the first (issue 10)
    assert all(r.path.startswith("/sdapi/api/v3/fetch/") for r in sandbox.requests_to("sdapi.fetch"))


def test_documented_steps_give_no_warning(sandbox):
    result = client(image_transport="base64").edit(make_request(steps=41), Hooks())
    assert not any("steps" in w for w in result.warnings)
    assert sandbox.requests_to("sdapi.img2img")[0].json["num_inference_steps"] == 41


def test_errors_with_http_200_are_typed(sandbox, monkeypatch):
    monkeypatch.setenv("MODELSLAB_API_KEY", "wrong-not-real")
    with pytest.raises(AuthError) as caught:
        client(image_transport="base64").edit(make_request(), Hooks())
    assert "MODELSLAB_API_KEY" in str(caught.value)


def test_message_object_names_the_fields(sandbox):
    sandbox.script("sdapi.img2img", Canned(200, {"status": "error", "message": {"width": ["too big"],
                                                                                 "samples": ["max 4"]}}))
    with pytest.raises(InvalidRequest) as caught:
        client(image_transport="base64").edit(make_request(), Hooks())
    assert caught.value.fields == {"width": "too big", "samples": "max 4"}


def test_rate_limit_messege_with_http_200_is_retried(sandbox):
    limited = {"status": "error", "messege": "Rate limit exceeded", "tips": "wait", "retry_after": "0.3"}
    sandbox.script("sdapi.img2img", Canned(200, limited))
    started = time.monotonic()
    result = client(image_transport="base64").edit(make_request(), Hooks())
    assert len(result.images) == 1 and time.monotonic() - started >= 0.25
    assert sandbox.count("sdapi.img2img") == 2


def test_rate_limit_exhausted(sandbox):
    limited = {"status": "error", "messege": "Rate limit exceeded", "retry_after": 0}
    sandbox.script("sdapi.img2img", *[Canned(200, limited)] * 3)
    with pytest.raises(RateLimited):
        client(image_transport="base64").edit(make_request(), Hooks())


def test_failed_status(sandbox):
    sandbox.script("sdapi.img2img", Canned(200, {"status": "failed", "id": "", "message": "Failed, Try Again",
                                                 "output": ""}))
    with pytest.raises(ProviderFailed):
        client(image_transport="base64").edit(make_request(), Hooks())


def test_extra_and_key_never_leaks(sandbox):
    sd = client(extra={"track_id": "t-1", "webhook": "https://hooks.example.org/x"})
    result = sd.edit(make_request(), Hooks())
    body = sandbox.requests_to("sdapi.img2img")[0].json
    assert body["track_id"] == "t-1" and body["webhook"] == "https://hooks.example.org/x"
    with pytest.raises(InputError):
        client(extra={"num_inference_steps": 30})
    assert_no_key(sd, vars(sd), result.warnings, result.metadata, result.job_ids)
