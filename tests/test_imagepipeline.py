"""ImagePipelineClient (legacy API): API-Key header, PENDING -> status GET -> SUCCESS, data: URIs or links, errors."""

from __future__ import annotations

import pytest

from comfyui_imgedit.nodes.core import images as img
from comfyui_imgedit.nodes.core.errors import AuthError, InputError, InvalidRequest, ProviderFailed
from comfyui_imgedit.nodes.core.providers.imagepipeline import ImagePipelineClient
from comfyui_imgedit.nodes.core.request import Hooks
from comfyui_imgedit.sandbox import Canned
from remote_support import KEY, assert_no_key, fast_http, make_request, sandbox  # noqa: F401


def client(**kw):
    return ImagePipelineClient(http=fast_http("imagepipeline"), **kw)


def test_inpaint_mapping_and_polling(sandbox):
    sandbox.job_delay = 0.3
    result = client().edit(make_request(inpaint=True, samples=2, seed=3, steps=150), Hooks())
    (sent,) = sandbox.requests_to("imagepipeline.submit")
    assert sent.path == "/imagepipeline/sdxl/inpainting/v1"
    assert sent.headers["API-Key"] == KEY
    body = dict(sent.json)
    assert body.pop("init_image").startswith("data:image/png;base64,")
    assert body.pop("mask_image").startswith("data:image/png;base64,")
    assert body == {"model_id": "sdxl", "prompt": "a red barn", "negative_prompt": "blurry",
                    "num_inference_steps": 100, "strength": 0.6, "samples": 2, "guidance_scale": 7.5, "width": 48,
                    "height": 32, "safety_checker": True, "refiner": False, "seed": 3}
    assert "key" not in body
    polls = sandbox.requests_to("imagepipeline.status")
    assert polls and all(p.method == "GET" and p.headers["API-Key"] == KEY for p in polls)
    assert polls[0].path.startswith("/imagepipeline/sdxl/inpainting/v1/status/")
    assert len(result.images) == 2 and result.seeds == [3, None]  # only the first is known (issue 10)
    assert any("steps 1-100" in w for w in result.warnings)
    assert all("API-Key" not in r.headers for r in sandbox.requests_to("files"))


def test_sd_family_img2img_and_public_links(sandbox):
    request = make_request(seed=None)
    link = sandbox.add_file(img.encode_png(request.image))
    result = client(family="sd", scheduler="UniPCMultistepScheduler", init_image_url=link,
                    extra={"server_id": "eu-1"}).edit(request, Hooks())
    (sent,) = sandbox.requests_to("imagepipeline.submit")
    assert sent.path == "/imagepipeline/sd/image2image/v1"
    assert sent.json["init_image"] == link and sent.json["model_id"] == "sd1.5"
    assert sent.json["scheduler"] == "UniPCMultistepScheduler" and sent.json["server_id"] == "eu-1"
    assert "seed" not in sent.json
    assert isinstance(result.seeds[0], int)


def test_failure_status(sandbox):
    sandbox.script("imagepipeline.submit", Canned(200, {"status": "FAILURE", "error": "model crashed"}))
    with pytest.raises(ProviderFailed) as caught:
        client().edit(make_request(), Hooks())
    assert "model crashed" in str(caught.value)


def test_unknown_status_keeps_polling(sandbox):
    sandbox.job_delay = 0.5
    sandbox.script("imagepipeline.status", Canned(200, {"status": "IN_QUEUE", "id": "x"}))
    result = client().edit(make_request(), Hooks())
    assert len(result.images) == 1


def test_errors(sandbox, monkeypatch):
    with pytest.raises(InvalidRequest) as caught:
        client().edit(make_request(prompt=""), Hooks())
    assert caught.value.fields == {"prompt": "The prompt field is required."}
    monkeypatch.setenv("IMAGEPIPELINE_API_KEY", "wrong-not-real")
    with pytest.raises(AuthError) as caught:
        client().edit(make_request(), Hooks())
    assert "IMAGEPIPELINE_API_KEY" in str(caught.value)


def test_options_are_validated():
    with pytest.raises(InputError):
        client(family="sd3")
    with pytest.raises(InputError):
        client(init_image_url="file:///etc/passwd")
    with pytest.raises(InputError):
        client(extra={"refiner": "sometimes"})


def test_key_never_leaks(sandbox):
    ip = client(init_image_url="", mask_image_url="")
    result = ip.edit(make_request(inpaint=True), Hooks())
    assert_no_key(ip, vars(ip), result.warnings, result.metadata, result.job_ids)
