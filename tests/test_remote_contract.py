"""Issue 10: the remote services as their documents describe them, against the loopback sandbox.

Size windows (ModelsLab's 256-1024), charged POSTs never re-sent after a gateway error, each
sample's seed as the service reports it, Dezgo's ranges and upscale, ModelsLab's 404 on fetch,
and the limits every layer reads from the one table of services.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import torch

from comfyui_imgedit.nodes.core import images as img
from comfyui_imgedit.nodes.core.edit import run_edit
from comfyui_imgedit.nodes.core.errors import InputError, ProviderFailed, UncertainOutcome
from comfyui_imgedit.nodes.core.providers import CLIENTS
from comfyui_imgedit.nodes.core.providers.dezgo import DezgoClient
from comfyui_imgedit.nodes.core.providers.imagepipeline import ImagePipelineClient
from comfyui_imgedit.nodes.core.providers.modelslab import ModelsLabClient
from comfyui_imgedit.nodes.core.request import Hooks
from comfyui_imgedit.nodes.core.services import SERVICES
from comfyui_imgedit.sandbox import Canned, SandboxServer
from remote_support import KEY, fast_http, make_request, picture, sandbox  # noqa: F401


def modelslab(**kw):
    kw.setdefault("image_transport", "base64")
    return ModelsLabClient(http=fast_http("modelslab"), **kw)


def dezgo(**kw):
    return DezgoClient(http=fast_http("dezgo"), **kw)


# -- 1. size windows -------------------------------------------------------------------------


@pytest.mark.parametrize("h,w", [(120, 1000), (1000, 120), (150, 200), (33, 47), (2000, 3000), (300, 2000),
                                 (256, 256), (1024, 1024), (8, 4096)])
def test_fit_into_the_modelslab_window_and_back(h, w):
    picture_in = torch.rand(h, w, 3)
    fitted, fit = img.fit_size(picture_in, 1024, 8, "resize", 256)
    fh, fw = fitted.shape[:2]
    assert 256 <= fh <= 1024 and 256 <= fw <= 1024 and fh % 8 == 0 and fw % 8 == 0
    assert img.undo_fit(fitted, fit).shape == picture_in.shape


def test_impossible_aspect_ratio_is_padded_and_the_padding_removed_exactly():
    picture_in = torch.rand(120, 1000, 3)
    fitted, fit = img.fit_size(picture_in, 1024, 8, "resize", 256)
    assert tuple(fitted.shape[:2]) == (256, 1000) and (fit.pad_bottom, fit.pad_right) == (136, 0)
    assert torch.equal(img.undo_fit(fitted, fit), picture_in)  # no resize was needed: bit-exact
    mask = torch.zeros(120, 1000)
    fitted_mask, _ = img.fit_size(mask, 1024, 8, "resize", 256)
    assert tuple(fitted_mask.shape) == (256, 1000)


def test_no_minimum_keeps_the_old_fit():
    picture_in = torch.rand(120, 1000, 3)
    fitted, fit = img.fit_size(picture_in, 1024, 8, "resize")
    assert fitted is picture_in and not fit.changed


def test_the_table_states_each_documented_window():
    assert SERVICES["modelslab"].size.min_edge == 256 and SERVICES["modelslab"].size.max_edge == 1024
    for name in ("dezgo", "sdapi", "imagepipeline"):  # their documents state a maximum only
        assert SERVICES[name].size.min_edge is None and SERVICES[name].size.max_edge == 1024
    for name, cls in CLIENTS.items():
        assert cls.size_rule == SERVICES[name].size and cls.max_samples_per_call == SERVICES[name].samples_per_call


def test_small_and_thin_pictures_pass_modelslab_validation(sandbox):
    sandbox.size_window = True
    thin = torch.rand(1, 120, 1000, 3)
    out = run_edit(modelslab(), thin, prompt="p", seed=1)
    assert out.images.shape == thin.shape
    small = torch.rand(1, 150, 200, 3)
    mask = torch.zeros(1, 150, 200)
    mask[:, 40:90, 60:120] = 1
    out = run_edit(modelslab(), small, mask=mask, prompt="p", seed=1)
    assert out.images.shape == small.shape
    assert torch.equal(out.images[0][mask[0] == 0], small[0][mask[0] == 0])  # keep_unmasked
    sizes = [(r.json["width"], r.json["height"]) for r in sandbox.requests_to("modelslab")
             if r.endpoint in ("modelslab.img2img", "modelslab.inpaint")]
    assert sizes == [(1000, 256), (344, 256)]  # padded; scaled up 256/150


def test_the_sandbox_window_rejects_what_modelslab_rejects(sandbox):
    sandbox.size_window = True
    with pytest.raises(Exception) as caught:
        modelslab().edit(make_request(h=120, w=1000), Hooks())  # a request that skipped run_edit's fit
    assert "256" in str(caught.value) and "height" in str(caught.value)


# -- 2. charged POSTs ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 504])
def test_dezgo_gateway_error_after_the_work_is_not_resent(sandbox, status):
    sandbox.script("dezgo.image2image", Canned(status, {"message": "gateway"}, charged=True))
    with pytest.raises(UncertainOutcome) as caught:
        dezgo().edit(make_request(), Hooks())
    assert sandbox.count("dezgo.image2image") == 1 and sandbox.charges == 1
    message = str(caught.value)
    assert f"HTTP {status}" in message and "may already have been charged" in message
    assert "Dezgo account's transactions" in message and message.count(". ") == 0


@pytest.mark.parametrize("service,endpoint,make", [
    ("modelslab", "modelslab.img2img", lambda: modelslab()),
    ("imagepipeline", "imagepipeline.submit", lambda: ImagePipelineClient(http=fast_http("imagepipeline"))),
])
def test_job_submission_after_504_is_not_resent(sandbox, service, endpoint, make):
    sandbox.script(endpoint, Canned(504, charged=True))
    with pytest.raises(UncertainOutcome) as caught:
        make().edit(make_request(), Hooks())
    assert sandbox.count(endpoint) == 1 and sandbox.charges == 1
    assert "check your" in str(caught.value) and SERVICES[service].label in str(caught.value)


def test_charged_post_is_resent_after_503_and_429(sandbox):
    sandbox.script("dezgo.image2image", Canned(503, headers={"Retry-After": "0.2"}),
                   Canned(429, {"message": "busy"}, headers={"Retry-After": "0.2"}))
    assert len(dezgo().edit(make_request(), Hooks()).images) == 1
    assert sandbox.count("dezgo.image2image") == 3 and sandbox.charges == 1


def test_charged_post_is_resent_when_the_connection_was_refused(monkeypatch):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    monkeypatch.setenv("IMGEDIT_DEZGO_URL", f"http://127.0.0.1:{port}/dezgo")
    monkeypatch.setenv("DEZGO_API_KEY", KEY)
    late = SandboxServer(key=KEY, port=port)
    threading.Timer(0.3, late.start).start()  # refused until then: nothing was sent
    try:
        client = DezgoClient(http=fast_http("dezgo", retries=3, backoff=0.4))
        assert len(client.edit(make_request(), Hooks()).images) == 1
        assert late.count("dezgo.image2image") == 1
    finally:
        late.stop()


def test_downloads_keep_retrying_gateway_errors(sandbox):
    sandbox.script("files", Canned(502), Canned(504))
    result = modelslab().edit(make_request(), Hooks())
    assert len(result.images) == 1 and sandbox.count("files") >= 3


# -- 3. seeds of multi-sample calls ----------------------------------------------------------


def test_only_the_first_seed_is_known_unless_the_service_lists_them(sandbox):
    out = run_edit(modelslab(), picture().unsqueeze(0), prompt="p", seed=7, samples=6)
    assert out.info["seeds"] == [7, None, None, None, 11, None]  # calls of 4 + 2
    sandbox.seed_list = True
    assert modelslab().edit(make_request(samples=3, seed=99), Hooks()).seeds == [99, 100, 101]


def test_dezgo_honours_seed_plus_k():
    from comfyui_imgedit.nodes.core.services import seed_per_sample_services

    assert seed_per_sample_services() == ["Dezgo"]


# -- 4. the audit list -----------------------------------------------------------------------


@pytest.mark.parametrize("steps,guidance,sent_steps,sent_guidance", [(5, 7.5, "10", "7.5"), (200, 25, "150", "20"),
                                                                     (30, -30, "30", "-20")])
def test_dezgo_steps_and_guidance_are_clamped_with_a_warning(sandbox, steps, guidance, sent_steps, sent_guidance):
    result = dezgo().edit(make_request(steps=steps, guidance=guidance), Hooks())
    (sent,) = sandbox.requests_to("dezgo.image2image")
    assert (sent.form["steps"], sent.form["guidance"]) == (sent_steps, sent_guidance)
    assert any("Dezgo takes" in w for w in result.warnings)


def test_dezgo_upscale_2_is_refused_with_a_pointer_to_an_upscale_node(sandbox):
    with pytest.raises(InputError) as caught:
        dezgo(extra={"upscale": 2})
    assert "upscale node" in str(caught.value) and "billed" in str(caught.value)
    dezgo(extra={"upscale": 1}).edit(make_request(), Hooks())
    assert sandbox.requests_to("dezgo.image2image")[0].form["upscale"] == "1"


def test_modelslab_fetch_404_means_not_ready_yet(sandbox):
    sandbox.job_delay = 0.2
    sandbox.script("modelslab.fetch", Canned(404, {"status": "error", "message": "Request not found"}),
                   Canned(404, {"status": "error", "message": "Request not found"}))
    assert len(modelslab().edit(make_request(), Hooks()).images) == 1
    assert sandbox.count("modelslab.fetch") >= 3


def test_modelslab_fetch_404_gives_up_after_a_bounded_time(sandbox):
    sandbox.processing_forever = True
    sandbox.eta = 0.2
    sandbox.script("modelslab.fetch", *[Canned(404, {"status": "error", "message": "Request not found"})] * 40)
    client = ModelsLabClient(http=fast_http("modelslab", not_ready_s=0.8), image_transport="base64")
    started = time.monotonic()
    with pytest.raises(ProviderFailed) as caught:
        client.edit(make_request(), Hooks())
    assert time.monotonic() - started < 5 and "404" in str(caught.value) and "run the edit again" in str(caught.value)


# -- 5. one table: limits agree everywhere ---------------------------------------------------


@pytest.mark.parametrize("name", list(SERVICES))
def test_core_limits_come_from_the_table(sandbox, name):
    row = SERVICES[name]
    cls = CLIENTS[name]
    kw = {"model_id": "m"} if name == "modelslab" else {}
    assert cls(max_concurrency=row.max_concurrency, **kw).max_concurrency == row.max_concurrency
    with pytest.raises(InputError):
        cls(max_concurrency=row.max_concurrency + 1, **kw)
    low, _, high = row.deadline_s
    assert cls(deadline_s=low, **kw).deadline_s == low and cls(deadline_s=high, **kw).deadline_s == high
    with pytest.raises(InputError):
        cls(deadline_s=high + 1, **kw)
    assert SERVICES["dezgo"].max_concurrency == 8 and SERVICES["modelslab"].max_concurrency == 15
