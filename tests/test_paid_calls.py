"""The journal of paid calls through run_edit against the sandbox: identical calls are not paid twice,
interrupted jobs are resumed (after a Cancel or in a new process), and the journal never holds a key."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from comfyui_imgedit.nodes.core import images as img
from comfyui_imgedit.nodes.core.edit import run_edit
from comfyui_imgedit.nodes.core.errors import AuthError
from comfyui_imgedit.nodes.core.journal import Journal
from comfyui_imgedit.nodes.core.providers.dezgo import DezgoClient
from comfyui_imgedit.nodes.core.providers.imagepipeline import ImagePipelineClient
from comfyui_imgedit.nodes.core.providers.modelslab import ModelsLabClient
from comfyui_imgedit.nodes.core.providers.sdapi import SDAPIClient
from comfyui_imgedit.nodes.core.request import Cancelled
from comfyui_imgedit.sandbox import Canned, render
from remote_support import KEY, RecordingHooks, fast_http, sandbox  # noqa: F401
from remote_support import box_mask as small_mask
from remote_support import picture as small_picture

SUBMIT = {"modelslab": "modelslab.img2img", "sdapi": "sdapi.img2img", "imagepipeline": "imagepipeline.submit",
          "dezgo": "dezgo.image2image"}
CLIENTS = {"modelslab": ModelsLabClient, "sdapi": SDAPIClient, "imagepipeline": ImagePipelineClient,
           "dezgo": DezgoClient}
REPO = Path(__file__).resolve().parents[1]
# inside every service's size window (ModelsLab: edges 256-1024), so the result is the sandbox's exact edit
H, W = 256, 320


def picture(seed: int = 0):
    return small_picture(H, W, seed=seed)


def box_mask():
    return small_mask(H, W)


@pytest.fixture
def journal(tmp_path) -> Journal:
    return Journal(tmp_path / "journal")


def client(service: str, **kw):
    return CLIENTS[service](http=fast_http(service), **kw)


def edit(provider, journal, image=None, hooks=None, **kw):
    params = dict(prompt="a red barn", strength=0.5, seed=42)
    params.update(kw)
    return run_edit(provider, picture() if image is None else image, journal=journal, hooks=hooks, **params)


def records(journal: Journal) -> list[dict]:
    return [json.loads(p.read_text()) for p in journal.folder.glob("*/record.json")]


def expected(seed: int = 42, strength: float = 0.5) -> np.ndarray:
    return np.asarray(render(img.tensor_to_pil(picture()), None, seed, strength), dtype=np.float32) / 255.0


def cancel_while_polling(provider, journal, sandbox, endpoint: str, after_s: float = 0.5) -> float:
    """Run an edit, press Cancel once it polls; returns how long the Cancel took to stop it."""
    recorder = RecordingHooks()
    timer = threading.Timer(after_s, recorder.stop.set)
    timer.start()
    with pytest.raises(Cancelled):
        edit(provider, journal, hooks=recorder.hooks())
    stopped = time.monotonic() - recorder.started - after_s
    timer.cancel()
    assert sandbox.count(endpoint) == 1
    return stopped


@pytest.mark.parametrize("service", ["dezgo", "modelslab", "sdapi", "imagepipeline"])
def test_same_request_twice_is_submitted_once(sandbox, journal, service):
    first = edit(client(service), journal)
    second = edit(client(service), journal)
    assert sandbox.count(SUBMIT[service]) == 1
    assert np.abs(first.images.numpy() - expected()).max() < 2 / 255
    assert np.array_equal(first.images.numpy(), second.images.numpy())
    assert second.info["seeds"] == first.info["seeds"] == [42]
    assert "taken from the journal (no request sent, cost 0)" in second.info["journal"][0]
    assert "journal" not in first.info
    if service == "dezgo":
        assert first.info["metadata"]["cost_usd"] > 0 and second.info["metadata"]["cost_usd"] == 0
    assert [r["state"] for r in records(journal)] == ["done"]


@pytest.mark.parametrize("service", ["modelslab", "sdapi", "imagepipeline"])
def test_cancel_while_polling_then_run_again_resumes_the_job(sandbox, journal, service):
    sandbox.job_delay = 2.0
    assert cancel_while_polling(client(service), journal, sandbox, SUBMIT[service]) < 1.0
    [record] = records(journal)  # a Cancel never deletes a record
    assert record["state"] == "submitted" and record["job_id"]
    out = edit(client(service), journal)
    assert sandbox.count(SUBMIT[service]) == 1
    assert np.abs(out.images.numpy() - expected()).max() < 2 / 255
    assert f"resumed job {record['job_id']}" in out.info["journal"][0]
    assert out.info["job_ids"] == [record["job_id"]]
    assert [r["state"] for r in records(journal)] == ["done"]


def test_a_job_the_service_forgot_is_submitted_again(sandbox, journal):
    sandbox.job_delay = 2.0
    cancel_while_polling(client("modelslab"), journal, sandbox, SUBMIT["modelslab"])
    sandbox.forget_jobs()
    sandbox.job_delay = 0.0
    out = edit(client("modelslab"), journal)
    assert sandbox.count(SUBMIT["modelslab"]) == 2
    assert any("no longer knows job" in w and "submitted again" in w for w in out.info["warnings"])
    assert np.abs(out.images.numpy() - expected()).max() < 2 / 255


def test_dezgo_call_of_unknown_outcome_is_made_again_with_a_warning(sandbox, journal):
    sandbox.sync_delay = 3.0
    cancel_while_polling(client("dezgo"), journal, sandbox, SUBMIT["dezgo"], after_s=0.3)
    [record] = records(journal)
    assert record["state"] == "submitted" and record["job_id"] is None
    sandbox.sync_delay = 0.0
    out = edit(client("dezgo"), journal)
    assert sandbox.count(SUBMIT["dezgo"]) == 2
    assert any("outcome is unknown" in w and "made again" in w for w in out.info["warnings"])


def test_a_refused_call_is_recorded_failed_and_made_again_without_warning(sandbox, journal):
    sandbox.script(SUBMIT["dezgo"], Canned(401, {"message": "Invalid API key"}))
    with pytest.raises(AuthError):
        edit(client("dezgo"), journal)
    assert [r["state"] for r in records(journal)] == ["failed"]
    out = edit(client("dezgo"), journal)
    assert sandbox.count(SUBMIT["dezgo"]) == 2 and out.info["warnings"] == []


def test_any_change_is_a_new_submission(sandbox, journal):
    edit(client("modelslab"), journal)
    edit(client("modelslab"), journal, seed=43)
    edit(client("modelslab"), journal, prompt="a blue barn")
    edit(client("modelslab"), journal, image=picture(seed=1))
    edit(client("modelslab", scheduler="DDIMScheduler"), journal)
    edit(client("modelslab"), journal, mask=box_mask())
    assert sandbox.count(SUBMIT["modelslab"]) == 5 and sandbox.count("modelslab.inpaint") == 1
    edit(client("modelslab"), journal, prompt="a blue barn")
    assert sandbox.count(SUBMIT["modelslab"]) == 5 and sandbox.count("modelslab.inpaint") == 1
    assert len(records(journal)) == 6


def test_identical_calls_at_once_are_paid_once(sandbox, journal):
    """A batch of equal pictures with one seed: one submission, the other calls read its result."""
    sandbox.sync_delay = 0.3
    out = edit(client("dezgo", max_concurrency=4), journal, image=picture().expand(3, -1, -1, -1))
    assert sandbox.count(SUBMIT["dezgo"]) == 1
    assert out.images.shape[0] == 3 and all(torch.equal(out.images[0], out.images[i]) for i in (1, 2))
    assert len(out.info["journal"]) == 2 and len(records(journal)) == 1


def test_random_seed_is_never_matched(sandbox, journal):
    edit(client("modelslab"), journal, seed=None)
    edit(client("modelslab"), journal, seed=None)
    assert sandbox.count(SUBMIT["modelslab"]) == 2 and records(journal) == []


def test_journal_folder_never_holds_the_key(sandbox, journal):
    sandbox.job_delay = 2.0
    cancel_while_polling(client("modelslab"), journal, sandbox, SUBMIT["modelslab"])
    sandbox.job_delay = 0.0
    for service in CLIENTS:
        edit(client(service), journal, mask=box_mask(), seed=7)
    sandbox.script(SUBMIT["dezgo"], Canned(401, {"message": f"Invalid API key {KEY}"}))
    with pytest.raises(AuthError):
        edit(client("dezgo"), journal, seed=8)
    files = [p for p in journal.folder.rglob("*") if p.is_file()]
    assert len(files) == 1 + len(CLIENTS) * 2 + 1  # the pending record, done ones with a picture, the failed one
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("damaged,keep,said", [("record.json", 40, "corrupt or half-written"),
                                                ("0.png", 100, "result picture")])
def test_truncated_record_or_picture_is_skipped_and_the_call_made_again(sandbox, journal, caplog, damaged, keep,
                                                                        said):
    edit(client("dezgo"), journal)
    [path] = journal.folder.glob(f"*/{damaged}")
    path.write_bytes(path.read_bytes()[:keep])
    with caplog.at_level(logging.WARNING, logger="comfyui_imgedit"):
        out = edit(client("dezgo"), journal)
    assert said in caplog.text and "corrupt" in caplog.text
    assert sandbox.count(SUBMIT["dezgo"]) == 2
    assert np.abs(out.images.numpy() - expected()).max() < 2 / 255
    assert [r["state"] for r in records(journal)] == ["done"]


def test_caps_apply_after_a_run_now_and_then(sandbox, tmp_path):
    small = Journal(tmp_path / "small", max_bytes=1, caps_every_s=0)
    edit(client("dezgo"), small, seed=1)
    edit(client("dezgo"), small, seed=2)
    [record] = records(small)  # the older call's record went, the running one stayed
    assert record["state"] == "done" and record["result"]["seeds"] == [2]
    seldom = Journal(tmp_path / "seldom", max_bytes=1, caps_every_s=3600)
    for seed in (3, 4, 5):  # applied after the first run, then not again within the hour
        edit(client("dezgo"), seldom, seed=seed)
    assert sorted(r["result"]["seeds"][0] for r in records(seldom)) == [3, 4, 5]


def test_a_new_process_resumes_a_pending_job(sandbox, journal):
    """A restart: a process submits a job and dies while polling; the next one resumes that job."""
    sandbox.processing_forever = True
    script = textwrap.dedent("""
        import sys, torch
        sys.path.insert(0, sys.argv[2])
        from remote_support import fast_http, picture
        H, W = int(sys.argv[3]), int(sys.argv[4])
        from comfyui_imgedit.nodes.core.edit import run_edit
        from comfyui_imgedit.nodes.core.journal import Journal
        from comfyui_imgedit.nodes.core.providers.modelslab import ModelsLabClient
        run_edit(ModelsLabClient(http=fast_http("modelslab")), picture(H, W), prompt="a red barn", strength=0.5,
                 seed=42, journal=Journal(sys.argv[1]))
    """)
    env = {**os.environ, **sandbox.environ()}
    child = subprocess.Popen([sys.executable, "-c", script, str(journal.folder), str(REPO / "tests"), str(H), str(W)],
                             env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not any(r.get("job_id") for r in _readable(journal)):
            assert child.poll() is None, child.stdout.read().decode()
            assert time.monotonic() < deadline, "the child never recorded its job"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait(timeout=10)
    sandbox.finish_jobs()
    out = edit(client("modelslab"), journal)
    assert sandbox.count(SUBMIT["modelslab"]) == 1
    assert np.abs(out.images.numpy() - expected()).max() < 2 / 255
    assert "resumed job" in out.info["journal"][0]


def _readable(journal: Journal) -> list[dict]:
    try:
        return records(journal)
    except ValueError:  # never half-written (atomic), but be safe while the child writes
        return []


def test_an_unwritable_journal_never_fails_the_paid_call(sandbox, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the journal folder should be")
    with caplog.at_level(logging.WARNING, logger="comfyui_imgedit"):
        out = edit(client("modelslab"), Journal(blocker / "journal"))
    assert np.abs(out.images.numpy() - expected()).max() < 2 / 255
    assert any("cannot be written" in w for w in out.info["warnings"]) and "cannot write" in caplog.text
