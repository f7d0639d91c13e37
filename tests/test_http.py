"""The shared HTTP layer: hosts from env, error mapping, retries, 429, deadline, cancel, redirects, downloads."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from comfyui_imgedit.nodes.core.errors import (
    AuthError,
    CreditsError,
    DeadlineExceeded,
    InputError,
    InvalidRequest,
    NetworkError,
    ProviderFailed,
    RateLimited,
    UncertainOutcome,
)
from comfyui_imgedit.nodes.core.providers.dezgo import DezgoClient
from comfyui_imgedit.nodes.core.providers.http_errors import body_message, error_for
from comfyui_imgedit.nodes.core.providers.urls import base_url, same_origin
from comfyui_imgedit.nodes.core.services import SERVICES
from comfyui_imgedit.nodes.core.providers.modelslab import ModelsLabClient
from comfyui_imgedit.nodes.core.request import Cancelled, Hooks
from comfyui_imgedit.sandbox import Canned, SandboxServer
from remote_support import KEY, RecordingHooks, assert_no_key, fast_http, make_request, other_host, sandbox  # noqa: F401


def dezgo(**kw):
    return DezgoClient(http=fast_http("dezgo"), **kw)


def modelslab(**kw):
    kw.setdefault("image_transport", "base64")
    return ModelsLabClient(http=fast_http("modelslab"), **kw)


# -- hosts -----------------------------------------------------------------------------------


def test_base_urls_come_from_env_only(monkeypatch):
    assert base_url("dezgo") == SERVICES["dezgo"].default_url == "https://api.dezgo.com"
    assert base_url("modelslab") == "https://modelslab.com"
    monkeypatch.setenv("IMGEDIT_DEZGO_URL", "http://127.0.0.1:9/proxy/")
    assert base_url("dezgo") == "http://127.0.0.1:9/proxy"
    assert fast_http("dezgo").url("/image2image") == "http://127.0.0.1:9/proxy/image2image"
    monkeypatch.setenv("IMGEDIT_DEZGO_URL", "https://dezgo.example.org/v")
    assert base_url("dezgo") == "https://dezgo.example.org/v"


@pytest.mark.parametrize("value", ["http://api.example.org", "ftp://127.0.0.1", "https://u:p@host.org",
                                   "https://host.org/?x=1", "not a url", "https://host.org:99999"])
def test_bad_base_urls_are_refused(monkeypatch, value):
    monkeypatch.setenv("IMGEDIT_MODELSLAB_URL", value)
    with pytest.raises(InputError) as caught:
        base_url("modelslab")
    assert "IMGEDIT_MODELSLAB_URL" in str(caught.value)


def test_same_origin():
    assert same_origin("https://a.com/x", "https://a.com:443/y")
    assert not same_origin("https://a.com/x", "https://b.com/x")
    assert not same_origin("http://127.0.0.1:1/x", "http://127.0.0.1:2/x")


# -- message parsing and error mapping -------------------------------------------------------


def test_body_message_drift():
    assert body_message({"status": "error", "messege": "Rate limit exceeded"})[0] == "Rate limit exceeded"
    text, fields = body_message({"status": "error", "message": {"prompt": ["The prompt field is required."]}})
    assert fields == {"prompt": "The prompt field is required."} and "prompt" in text
    text, fields = body_message({"detail": [{"loc": ["body", "model_id"], "msg": "field required"}]})
    assert fields == {"model_id": "field required"}
    assert body_message({"error": {"message": "boom", "code": "X"}})[0] == "boom"
    assert body_message(b"plain text failure")[0] == "plain text failure"
    assert len(body_message("x" * 5000)[0]) <= 300


@pytest.mark.parametrize("status,message,kind", [
    (401, "", AuthError),
    (None, "Invalid Api Key", AuthError),
    (402, "", CreditsError),
    (None, "Insufficient credits in your wallet", CreditsError),
    (429, "", RateLimited),
    (None, "Rate limit exceeded", RateLimited),
    (403, "plan does not allow this", AuthError),
    (400, "prompt is required", InvalidRequest),
    (None, "Model id not found", InvalidRequest),
    (503, "", ProviderFailed),
    (None, "Failed, Try Again", ProviderFailed),
])
def test_error_mapping(status, message, kind):
    error = error_for("modelslab", message, status=status)
    assert type(error) is kind
    assert str(error).endswith(".")
    if kind is AuthError and status != 403:
        assert "MODELSLAB_API_KEY" in str(error)


def test_field_errors_are_listed():
    error = error_for("sdapi", "", fields={"prompt": "required", "width": "too big"})
    assert isinstance(error, InvalidRequest) and error.fields == {"prompt": "required", "width": "too big"}
    assert "prompt: required" in str(error) and "width: too big" in str(error)


# -- retries ---------------------------------------------------------------------------------


def test_502_503_504_are_retried_for_polls(sandbox):
    # A poll is idempotent: gateway errors are sent again (a charged POST is not: test_charged.py).
    sandbox.job_delay = 0.3
    sandbox.script("modelslab.fetch", Canned(502), Canned(503), Canned(504, {"message": "gateway"}))
    client = ModelsLabClient(http=fast_http("modelslab", retries=3), image_transport="base64")
    result = client.edit(make_request(), Hooks())
    assert len(result.images) == 1
    assert sandbox.count("modelslab.img2img") == 1
    assert sandbox.count("modelslab.fetch") >= 4


def test_5xx_after_all_retries_is_provider_failed(sandbox):
    sandbox.script("dezgo.image2image", *[Canned(503, {"message": "overloaded"})] * 3)
    with pytest.raises(ProviderFailed) as caught:
        dezgo().edit(make_request(), Hooks())
    assert "503" in str(caught.value) and "3 tries" in str(caught.value)
    assert sandbox.count("dezgo.image2image") == 3


def test_retry_after_header_is_honoured_on_503(sandbox):
    sandbox.script("dezgo.image2image", Canned(503, headers={"Retry-After": "1"}))
    started = time.monotonic()
    dezgo().edit(make_request(), Hooks())
    assert time.monotonic() - started >= 0.95
    assert sandbox.count("dezgo.image2image") == 2


def test_429_waits_retry_after_header_then_retries(sandbox):
    sandbox.script("dezgo.image2image", Canned(429, {"message": "slow down"}, headers={"Retry-After": "1"}))
    hooks = RecordingHooks()
    started = time.monotonic()
    dezgo().edit(make_request(), hooks.hooks())
    assert time.monotonic() - started >= 0.95
    assert sandbox.count("dezgo.image2image") == 2
    assert any("rate limited" in t for t in hooks.texts)


def test_429_body_retry_after_is_honoured(sandbox):
    limited = {"status": "error", "message": "Rate limit exceeded. Maximum 5 queued requests allowed.",
               "retry_after": 0.6}
    sandbox.script("modelslab.img2img", Canned(429, limited))
    started = time.monotonic()
    modelslab().edit(make_request(), Hooks())
    assert time.monotonic() - started >= 0.55
    assert sandbox.count("modelslab.img2img") == 2


def test_429_gives_up_after_bounded_tries(sandbox):
    sandbox.script("dezgo.image2image", *[Canned(429, {"message": "busy"}, headers={"Retry-After": "0"})] * 5)
    with pytest.raises(RateLimited) as caught:
        dezgo().edit(make_request(), Hooks())
    assert sandbox.count("dezgo.image2image") == 3  # 1 + rate_limit_retries (2)
    assert caught.value.retry_after == 0


def test_429_longer_than_the_deadline_is_not_waited(sandbox):
    sandbox.script("dezgo.image2image", Canned(429, {"message": "busy"}, headers={"Retry-After": "120"}))
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        dezgo(deadline_s=5).edit(make_request(), Hooks())
    assert time.monotonic() - started < 1
    assert "120" in str(caught.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_retried(monkeypatch):
    port = _free_port()
    monkeypatch.setenv("IMGEDIT_DEZGO_URL", f"http://127.0.0.1:{port}/dezgo")
    monkeypatch.setenv("DEZGO_API_KEY", KEY)
    late = SandboxServer(key=KEY, port=port)
    timer = threading.Timer(0.3, late.start)
    timer.start()
    try:
        client = DezgoClient(http=fast_http("dezgo", retries=4, backoff=0.25))
        result = client.edit(make_request(), Hooks())
        assert len(result.images) == 1
    finally:
        timer.cancel()
        late.stop()


def test_connection_refused_gives_network_error(monkeypatch):
    monkeypatch.setenv("IMGEDIT_DEZGO_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("DEZGO_API_KEY", KEY)
    with pytest.raises(NetworkError) as caught:
        dezgo().edit(make_request(), Hooks())
    assert "IMGEDIT_DEZGO_URL" in str(caught.value) and "3 tries" in str(caught.value)


# -- charged POSTs are never sent twice -------------------------------------------------------


def test_dezgo_read_timeout_is_uncertain_and_not_resent(sandbox):
    sandbox.sync_delay = 2.0
    client = DezgoClient(http=fast_http("dezgo"), request_timeout_s=1)
    started = time.monotonic()
    with pytest.raises(UncertainOutcome) as caught:
        client.edit(make_request(), Hooks())
    assert time.monotonic() - started < 1.8
    time.sleep(0.1)
    assert sandbox.count("dezgo.image2image") == 1
    assert "not sent again" in str(caught.value) and "charged" in str(caught.value)


def test_dezgo_dropped_connection_is_uncertain_and_not_resent(sandbox):
    sandbox.script("dezgo.inpainting", Canned(close=True))
    with pytest.raises(UncertainOutcome):
        dezgo().edit(make_request(inpaint=True), Hooks())
    assert sandbox.count("dezgo.inpainting") == 1


def test_deadline_during_a_blocking_post_is_uncertain(sandbox):
    sandbox.sync_delay = 3.0
    started = time.monotonic()
    with pytest.raises(UncertainOutcome):
        dezgo(deadline_s=1).edit(make_request(), Hooks())
    assert time.monotonic() - started < 1.6


def test_modelslab_fetch_read_timeout_is_retried(sandbox):
    sandbox.job_delay = 0.3
    sandbox.script("modelslab.fetch", Canned(passthrough=True, delay=1.2))
    client = ModelsLabClient(http=fast_http("modelslab", read_timeout=0.5), image_transport="base64")
    result = client.edit(make_request(), Hooks())
    assert len(result.images) == 1
    assert sandbox.count("modelslab.fetch") >= 2
    assert sandbox.count("modelslab.img2img") == 1


# -- deadline and cancel ---------------------------------------------------------------------


def test_deadline_on_a_job_that_never_finishes(sandbox):
    sandbox.processing_forever = True
    sandbox.eta = 0.3
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as caught:
        modelslab(deadline_s=1.5).edit(make_request(), Hooks())
    elapsed = time.monotonic() - started
    assert 1.3 <= elapsed < 2.3
    message = str(caught.value)
    assert "may still be running" in message and "deadline_s" in message
    job_id = sandbox.requests_to("modelslab.fetch")[0].json["request_id"]
    assert job_id in message


def test_cancel_during_a_poll_wait(sandbox):
    sandbox.processing_forever = True
    sandbox.eta = 8.0  # a long wait between polls
    hooks = RecordingHooks(cancel_after=0.5)
    started = time.monotonic()
    with pytest.raises(Cancelled):
        modelslab().edit(make_request(), hooks.hooks())
    assert time.monotonic() - started < 1.5
    assert any("processing" in t for t in hooks.texts)


def test_cancel_during_a_slow_synchronous_post(sandbox):
    sandbox.sync_delay = 5.0
    hooks = RecordingHooks(cancel_after=0.4)
    started = time.monotonic()
    with pytest.raises(Cancelled):
        dezgo().edit(make_request(), hooks.hooks())
    assert time.monotonic() - started < 1.4


def test_cancel_during_a_retry_backoff(sandbox):
    sandbox.script("dezgo.image2image", Canned(503, headers={"Retry-After": "30"}))
    hooks = RecordingHooks(cancel_after=0.4)
    started = time.monotonic()
    with pytest.raises(Cancelled):
        dezgo().edit(make_request(), hooks.hooks())
    assert time.monotonic() - started < 1.4


def test_cancel_during_a_rate_limit_wait(sandbox):
    sandbox.script("modelslab.img2img", Canned(429, {"status": "error", "message": "Rate limit exceeded",
                                                     "retry_after": 30}))
    hooks = RecordingHooks(cancel_after=0.4)
    started = time.monotonic()
    with pytest.raises(Cancelled):
        modelslab().edit(make_request(), hooks.hooks())
    assert time.monotonic() - started < 1.4


# -- redirects and downloads never carry the key ----------------------------------------------


def test_key_header_dropped_on_redirect_to_another_host(sandbox, other_host):
    other, other_url = other_host
    sandbox.script("dezgo.image2image", Canned(307, headers={"Location": f"{other_url}/dezgo/image2image"}))
    with pytest.raises(AuthError) as caught:  # the other host sees no key and says so
        dezgo().edit(make_request(), Hooks())
    seen = other.requests_to("dezgo.image2image")
    assert len(seen) == 1 and seen[0].host.startswith("localhost:")
    assert "X-Dezgo-Key" not in seen[0].headers
    assert KEY not in other.all_text()
    assert_no_key(caught.value)


def test_key_header_kept_on_same_host_redirect(sandbox):
    sandbox.script("dezgo.image2image", Canned(307, headers={"Location": f"{sandbox.url}/dezgo/image2image"}))
    assert len(dezgo().edit(make_request(), Hooks()).images) == 1
    assert [r.headers.get("X-Dezgo-Key") for r in sandbox.requests_to("dezgo.image2image")] == [KEY, KEY]


def test_body_key_never_follows_a_redirect_to_another_host(sandbox, other_host):
    other, other_url = other_host
    sandbox.script("modelslab.img2img", Canned(307, headers={"Location": f"{other_url}/modelslab/api/v6/images/img2img"}))
    with pytest.raises(ProviderFailed) as caught:
        modelslab().edit(make_request(), Hooks())
    assert "another host" in str(caught.value) and "IMGEDIT_MODELSLAB_URL" in str(caught.value)
    assert other.requests == []


def test_fetch_result_on_another_host_is_ignored(sandbox, other_host):
    other, other_url = other_host
    sandbox.job_delay = 0.2
    result = modelslab().edit(make_request(), Hooks())
    assert len(result.images) == 1
    assert other.requests == []
    assert all(r.path.startswith("/modelslab/api/v6/images/fetch/") for r in sandbox.requests_to("modelslab.fetch"))


def test_downloads_carry_no_key(sandbox):
    sandbox.job_delay = 0.2
    ModelsLabClient(http=fast_http("modelslab")).edit(make_request(samples=2), Hooks())
    downloads = sandbox.requests_to("files")
    assert len(downloads) == 2
    for record in downloads:
        assert KEY not in record.text()
        assert not {"x-dezgo-key", "api-key", "x-api-key", "authorization"} & {h.lower() for h in record.headers}


def test_no_key_in_logs_even_at_debug(sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    sandbox.job_delay = 0.2
    sandbox.script("modelslab.img2img", Canned(429, {"status": "error", "message": "Rate limit exceeded",
                                                     "retry_after": 0.1}))
    ModelsLabClient(http=fast_http("modelslab")).edit(make_request(inpaint=True), Hooks())
    dezgo().edit(make_request(), Hooks())
    assert caplog.records  # urllib3 and ImgEdit did log
    assert KEY not in caplog.text
