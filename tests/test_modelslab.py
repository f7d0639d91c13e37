"""ModelsLabClient against the sandbox: field mapping, uploads, queued jobs, response drift, NSFW, errors."""

from __future__ import annotations

import time

import pytest

from comfyui_imgedit.nodes.core.errors import (
    AuthError,
    ContentFiltered,
    CreditsError,
    InputError,
    InvalidRequest,
    ProviderFailed,
)
from comfyui_imgedit.nodes.core.providers.jobs import next_wait, parse_job
from comfyui_imgedit.nodes.core.providers.modelslab import SCHEDULERS, ModelsLabClient
from comfyui_imgedit.nodes.core.request import Hooks
from comfyui_imgedit.sandbox import Canned
from remote_support import KEY, RecordingHooks, assert_no_key, fast_http, make_request, sandbox  # noqa: F401


def client(**kw):
    return ModelsLabClient(http=fast_http("modelslab"), **kw)


def test_eighteen_schedulers():
    assert len(SCHEDULERS) == 18 and len(set(SCHEDULERS)) == 18


def test_field_mapping_with_upload(sandbox):
    sandbox.job_delay = 0.2
    ml = client(model_id="lazymixv4-inpaint", scheduler="DPMSolverMultistepScheduler", use_karras_sigmas=False,
                clip_skip=2, lora_model="a, b", lora_strength="0.5,1", vae="my-vae", safety_checker=False,
                safety_checker_type="blur", tomesd=False, algorithm_type="dpmsolver+++",
                extra={"enhance_style": "cinematic", "temp": True})
    result = ml.edit(make_request(inpaint=True, samples=3, seed=99, guidance=25), Hooks())
    uploads = sandbox.requests_to("modelslab.upload")
    assert len(uploads) == 2
    assert all(u.json["key"] == KEY and u.json["base64_string"].startswith("data:image/png;base64,") for u in uploads)
    (sent,) = sandbox.requests_to("modelslab.inpaint")
    body = dict(sent.json)
    assert body.pop("key") == KEY
    assert body.pop("init_image").startswith(f"{sandbox.url}/uploads/")
    assert body.pop("mask_image").startswith(f"{sandbox.url}/uploads/")
    assert body == {
        "model_id": "lazymixv4-inpaint", "prompt": "a red barn", "negative_prompt": "blurry", "width": 48,
        "height": 32, "samples": 3, "num_inference_steps": 30, "steps": 30, "guidance_scale": 20.0,
        "strength": 0.6, "seed": 99, "enhance_prompt": "no", "safety_checker": "no", "safety_checker_type": "blur",
        "use_karras_sigmas": "no", "tomesd": "no", "base64": "no", "scheduler": "DPMSolverMultistepScheduler",
        "clip_skip": 2, "lora_model": "a,b", "lora_strength": "0.5,1", "vae": "my-vae",
        "algorithm_type": "dpmsolver+++", "enhance_style": "cinematic", "temp": "yes",
    }
    assert len(result.images) == 3 and all(i.shape == (32, 48, 3) for i in result.images)
    assert result.seeds == [99, None, None]  # the answer names only the first (issue 10)
    assert result.job_ids == [str(sandbox.requests_to("modelslab.fetch")[0].json["request_id"])]
    assert any("guidance 1-20" in w for w in result.warnings)
    fetch = sandbox.requests_to("modelslab.fetch")[0]
    assert fetch.json["key"] == KEY and fetch.path.endswith(f"/fetch/{fetch.json['request_id']}")


def test_defaults_keep_edits_faithful(sandbox):
    client().edit(make_request(seed=None), Hooks())
    body = sandbox.requests_to("modelslab.img2img")[0].json
    assert body["enhance_prompt"] == "no" and body["seed"] is None and body["model_id"] == "realistic-vision-51"
    assert "scheduler" not in body and "clip_skip" not in body and "steps" not in body


def test_base64_transport_skips_the_upload(sandbox):
    client(image_transport="base64").edit(make_request(inpaint=True), Hooks())
    assert sandbox.count("modelslab.upload") == 0
    body = sandbox.requests_to("modelslab.inpaint")[0].json
    assert body["init_image"].startswith("data:image/png;base64,")
    assert body["mask_image"].startswith("data:image/png;base64,")


def test_known_duration_job_takes_one_poll(sandbox):
    sandbox.job_delay = 0.6
    hooks = RecordingHooks()
    started = time.monotonic()
    client().edit(make_request(), hooks.hooks())
    assert sandbox.count("modelslab.fetch") == 1
    assert time.monotonic() - started < 1.5


def test_response_drift_is_tolerated(sandbox):
    sandbox.job_delay = 0.3
    sandbox.numbers_as_strings = True
    sandbox.output_empty_string = True
    sandbox.use_messege = True
    result = client().edit(make_request(seed=5), Hooks())
    assert result.seeds == [5] and len(result.images) == 1


def test_parse_job_drift():
    job = parse_job({"status": "processing", "eta": "2.75", "messege": "Try to fetch", "id": "134701497",
                     "output": "", "future_links": ["https://x/0.png"], "fetch_result": "https://x/fetch/1"})
    assert (job.state, job.eta, job.job_id, job.outputs, job.future_links) == (
        "processing", 2.75, "134701497", [], ["https://x/0.png"])
    job = parse_job({"status": "success", "id": 1, "output": ["u"], "proxy_links": "", "meta": {"seed": "12"},
                     "nsfw_content_detected": "false"})
    assert (job.state, job.seed, job.nsfw) == ("success", 12, [False])
    assert parse_job({"status": "failed", "id": "", "message": "Failed, Try Again", "output": ""}).state == "failed"
    assert parse_job({"status": "SUCCESS", "download_urls": ["u"]}).outputs == ["u"]
    assert parse_job({"status": "QUEUED_SOMEHOW", "id": "x"}).state == "processing"
    assert parse_job({"status": "error", "message": {"prompt": ["required"]}}).fields == {"prompt": "required"}


def test_next_wait_is_bounded():
    job = parse_job({"status": "processing", "eta": 0.01, "id": 1})
    assert next_wait(job, 0) == pytest.approx(0.2)
    assert next_wait(job, 5) == pytest.approx(2.0)  # an eta that keeps being wrong slows the polls
    assert next_wait(parse_job({"status": "processing", "eta": 500, "id": 1}), 0) == 10.0
    assert next_wait(parse_job({"status": "processing", "id": 1}), 0) == 1.0


def test_nsfw_is_a_warning_or_an_error(sandbox):
    sandbox.nsfw = True
    result = client().edit(make_request(samples=2), Hooks())
    assert any("NSFW" in w for w in result.warnings)
    assert float(result.images[0].max()) == 0.0
    with pytest.raises(ContentFiltered) as caught:
        client(fail_on_nsfw=True).edit(make_request(), Hooks())
    assert "fail_on_nsfw" in str(caught.value)


def test_early_output_links_404_are_not_ready(sandbox):
    sandbox.job_delay = 0.2
    sandbox.not_ready_gets = 2
    result = client().edit(make_request(), Hooks())
    assert len(result.images) == 1
    assert sandbox.count("files") == 3


def test_output_link_that_never_appears_fails(sandbox):
    sandbox.not_ready_gets = 10_000
    ml = ModelsLabClient(http=fast_http("modelslab", not_ready_s=0.5))
    with pytest.raises(ProviderFailed) as caught:
        ml.edit(make_request(), Hooks())
    assert "404" in str(caught.value)


def test_base64_outputs_behind_links(sandbox):
    sandbox.base64_output = True
    result = client().edit(make_request(samples=2), Hooks())
    assert len(result.images) == 2


@pytest.mark.parametrize("canned,kind,words", [
    (Canned(401, {"status": "error", "message": "Invalid Api Key"}), AuthError, "MODELSLAB_API_KEY"),
    (Canned(402, {"status": "error", "message": "Insufficient credits"}), CreditsError, "top up"),
    (Canned(400, {"status": "error", "message": "Model not found: nope"}), InvalidRequest, "model"),
    (Canned(200, {"status": "error", "message": {"prompt": ["The prompt field is required."]}}), InvalidRequest,
     "prompt: The prompt field is required."),
    (Canned(200, {"status": "failed", "id": "", "message": "Failed, Try Again", "output": ""}), ProviderFailed,
     "Failed, Try Again"),
    (Canned(403, {"status": "error", "message": "Your plan does not include this"}), AuthError, "plan"),
])
def test_errors_are_typed(sandbox, canned, kind, words):
    sandbox.script("modelslab.img2img", canned)
    with pytest.raises(kind) as caught:
        client(image_transport="base64").edit(make_request(), Hooks())
    assert words in str(caught.value)
    assert sandbox.count("modelslab.img2img") == 1


def test_job_failing_while_polled(sandbox):
    sandbox.job_delay = 5
    sandbox.eta = 0.2
    sandbox.script("modelslab.fetch", Canned(200, {"status": "failed", "id": 7, "messege": "GPU fell over"}))
    with pytest.raises(ProviderFailed) as caught:
        client().edit(make_request(), Hooks())
    assert "GPU fell over" in str(caught.value)


def test_sandbox_validation_reaches_the_user(sandbox):
    with pytest.raises(InvalidRequest) as caught:
        client(model_id="missing-model").edit(make_request(), Hooks())
    assert "missing-model" in str(caught.value)


def test_options_are_validated():
    with pytest.raises(InputError):
        client(model_id="")
    with pytest.raises(InputError):
        client(scheduler="NotAScheduler")
    with pytest.raises(InputError):
        client(lora_model="a,b", lora_strength="0.5")
    with pytest.raises(InputError):
        client(lora_model="a", lora_strength="2")
    with pytest.raises(InputError):
        client(clip_skip=9)
    with pytest.raises(InputError):
        client(extra={"safety_checker": "maybe"})
    with pytest.raises(InputError):
        client(image_transport="carrier-pigeon")
    assert client(scheduler="default").scheduler == ""


def test_key_never_leaks(sandbox, caplog):
    ml = client()
    sandbox.script("modelslab.img2img", Canned(401, {"status": "error", "message": f"Invalid Api Key {KEY}"}))
    with pytest.raises(AuthError) as caught:
        ml.edit(make_request(), Hooks())
    result = ml.edit(make_request(), Hooks())
    assert_no_key(ml, vars(ml), caught.value, result.metadata, result.warnings, result.job_ids, caplog.text)
