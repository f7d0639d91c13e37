"""The journal of paid calls inside a real ComfyUI: the start-up summary line, the settings route, and
the remote inpaint example interrupted while it polls a slow job then queued again: one submission."""

from __future__ import annotations

import json
import time

import pytest

from comfyui_workflow import adapt_for_test, ui_to_api
from test_comfyui_2_workflows import load
from test_comfyui_5_runtime import _status, _wait_until

pytestmark = pytest.mark.comfyui


def _journal_files(comfy) -> list:
    folder = comfy.server.user_dir / "imgedit" / "journal"
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


def _records(comfy) -> list[dict]:
    return [json.loads(p.read_text()) for p in _journal_files(comfy) if p.name == "record.json"]


def test_log_has_the_journal_summary_line(comfy):
    log = _wait_until(lambda: "ImgEdit journal of paid calls:" in comfy.log() and comfy.log(), timeout=30)
    line = next(l for l in log.splitlines() if "ImgEdit journal of paid calls:" in l)
    assert "record(s)" in line and "MB in " in line and str(comfy.server.user_dir / "imgedit" / "journal") in line


def test_interrupted_remote_inpaint_queued_again_is_submitted_once(comfy):
    prompt = adapt_for_test(ui_to_api(load("inpaint_crop_stitch_remote"), comfy.object_info), comfy.object_info)
    edit = next(node for node in prompt.values() if node["class_type"] == "ImgEditInpaint")
    edit["inputs"]["seed"] = 424242  # a call no earlier test made
    before = {r["digest"] for r in _records(comfy)}  # other tests' calls (an earlier Cancel test's too)
    submissions, fetches = comfy.sandbox.count("modelslab.inpaint"), comfy.sandbox.count("modelslab.fetch")
    comfy.sandbox.processing_forever = True  # the slow job
    try:
        prompt_id = comfy.client.queue_prompt(prompt)
        # polling once the sandbox has the job and has been asked about it
        _wait_until(lambda: comfy.sandbox.count("modelslab.inpaint") > submissions
                    and comfy.sandbox.count("modelslab.fetch") > fetches, timeout=120)
        assert comfy.client.post_json("/interrupt", {})[0] == 200
        final = _wait_until(lambda: _status(comfy, prompt_id), timeout=10, poll=0.02)
        assert "execution_interrupted" in [m[0] for m in final.get("messages", [])], final
    finally:
        comfy.sandbox.processing_forever = False
    pending = [r for r in _records(comfy) if r["state"] == "submitted" and r["job_id"] and r["digest"] not in before]
    assert len(pending) == 1, pending  # the Cancel kept the record, with its job id

    comfy.sandbox.finish_jobs()  # the job went on running on the service and is done now
    started = time.monotonic()
    entry = comfy.client.run(prompt, timeout=120)
    print(f"\njournal: re-queued run took {time.monotonic() - started:.2f} s")
    assert comfy.sandbox.count("modelslab.inpaint") == submissions + 1  # the sandbox saw one submission
    assert [i for i in comfy.client.output_images(entry) if i["type"] == "output"]
    done = json.loads((comfy.server.user_dir / "imgedit" / "journal" / pending[0]["digest"] / "record.json")
                      .read_text())
    assert done["state"] == "done" and done["job_id"] == pending[0]["job_id"]
    for path in _journal_files(comfy):
        assert comfy.test_key.encode() not in path.read_bytes(), path


def test_settings_route_reports_and_switches_the_journal(comfy):
    state = comfy.client.get_json("/imgedit/journal")
    assert state["enabled"] is True and state["records"] >= 1
    status, off = comfy.client.post_json("/imgedit/journal", {"enabled": False})
    try:
        assert status == 200 and off["enabled"] is False
        settings = json.loads((comfy.server.user_dir / "imgedit" / "settings.json").read_text())
        assert settings == {"journal": False}
    finally:
        assert comfy.client.post_json("/imgedit/journal", {"enabled": True})[1]["enabled"] is True
