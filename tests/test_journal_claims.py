"""The journal shared by several processes (nodes.core.journal_claims): one paid submission however many
processes ask at once, a live claim is waited for (Cancel honoured), a dead or silent one taken over."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from comfyui_imgedit.nodes.core.journal import Journal
from comfyui_imgedit.nodes.core.journal_claims import CLAIM_FILE, claimed
from comfyui_imgedit.nodes.core.request import Cancelled
from remote_support import RecordingHooks, sandbox  # noqa: F401
from remote_support import picture as small_picture
from test_paid_calls import SUBMIT, client, edit, expected, records

TESTS = Path(__file__).resolve().parent
ROUNDS = 6


def racer(journal: Path, go: Path, sandbox, rounds: int = ROUNDS, heartbeat_s: float = 0.5) -> subprocess.Popen:
    env = {**os.environ, **sandbox.environ(),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "IMGEDIT_JOURNAL_HEARTBEAT_S": str(heartbeat_s)}
    child = subprocess.Popen([sys.executable, str(TESTS / "journal_racer.py"), str(journal), str(go), str(rounds)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    return child


def test_two_processes_on_one_request_at_once_pay_once_and_both_get_it(sandbox, tmp_path):
    """The race is the point: repeated, each round a new request released to both at the same instant."""
    sandbox.job_delay = 0.3
    go = tmp_path / "go"
    go.mkdir()
    children = [racer(tmp_path / "journal", go, sandbox) for _ in range(2)]
    try:
        for r in range(ROUNDS):
            (go / f"go-{r}").touch()
            answers = [json.loads(child.stdout.readline() or "{}") for child in children]
            assert all(a.get("round") == r for a in answers), [c.stderr.read() for c in children]
            assert sandbox.count(SUBMIT["modelslab"]) == r + 1, f"round {r}: paid twice"
            assert answers[0]["sha"] == answers[1]["sha"]
            # exactly one of them made the call; the other read its result from disk
            assert sorted(bool(a["journal"]) for a in answers) == [False, True], answers
            assert any("taken from the journal" in a["journal"][0] for a in answers if a["journal"])
    finally:
        for child in children:
            child.kill()
            child.wait(timeout=10)
    assert [r["state"] for r in records(Journal(tmp_path / "journal"))] == ["done"] * ROUNDS
    assert not list((tmp_path / "journal").glob(f"*/{CLAIM_FILE}")), "claims are released"


def _child_holding_a_claim(sandbox, journal: Journal, go: Path) -> subprocess.Popen:
    """A process whose call (round 0, seed 100) is submitted and polls forever, its claim held."""
    sandbox.processing_forever = True
    go.mkdir()
    child = racer(journal.folder, go, sandbox, rounds=1, heartbeat_s=0.2)
    (go / "go-0").touch()
    deadline = time.monotonic() + 30
    while not any(r.get("job_id") for r in _readable(journal)):
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.02)
    assert list(journal.folder.glob(f"*/{CLAIM_FILE}"))
    return child


def _readable(journal: Journal) -> list[dict]:
    try:
        return records(journal)
    except ValueError:
        return []


def test_a_live_claim_is_waited_for_and_its_result_read_from_disk(sandbox, tmp_path):
    journal = Journal(tmp_path / "journal", heartbeat_s=0.2)
    child = _child_holding_a_claim(sandbox, journal, tmp_path / "go")
    try:
        box: dict = {}
        waiter = threading.Thread(target=lambda: box.setdefault("out", edit(
            client("modelslab"), journal, image=picture_256(), seed=100)))
        waiter.start()
        time.sleep(2.0)  # well past the stale time (6 beats of 0.2 s): a beating owner keeps its claim
        assert waiter.is_alive() and sandbox.count(SUBMIT["modelslab"]) == 1
        sandbox.finish_jobs()
        waiter.join(timeout=30)
        answer = json.loads(child.stdout.readline())
    finally:
        child.kill()
        child.wait(timeout=10)
    assert sandbox.count(SUBMIT["modelslab"]) == 1
    assert "taken from the journal" in box["out"].info["journal"][0]
    assert answer["journal"] == []


def picture_256():
    """What journal_racer.py sends (256², inside every service's window)."""
    return small_picture(256, 256)


def test_an_owner_killed_while_its_job_polls_is_taken_over(sandbox, tmp_path):
    journal = Journal(tmp_path / "journal", heartbeat_s=0.2)
    child = _child_holding_a_claim(sandbox, journal, tmp_path / "go")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    sandbox.finish_jobs()
    started = time.monotonic()
    out = edit(client("modelslab"), journal, image=picture_256(), seed=100)
    assert time.monotonic() - started < 5.0  # a dead process of this host: no need to wait for silence
    assert sandbox.count(SUBMIT["modelslab"]) == 1
    assert "resumed job" in out.info["journal"][0]
    assert not list(journal.folder.glob(f"*/{CLAIM_FILE}"))


def _pending_record(sandbox, journal: Journal) -> str:
    """A queued job left 'submitted' by a Cancel, as a process of another machine would leave it."""
    sandbox.job_delay = 2.0
    recorder = RecordingHooks(cancel_after=0.5)
    with pytest.raises(Cancelled):
        edit(client("modelslab"), journal, hooks=recorder.hooks())
    [record] = records(journal)
    assert record["state"] == "submitted" and record["job_id"]
    return record["digest"]


def _foreign_claim(journal: Journal, digest: str, beats: int = 0) -> Path:
    path = journal.folder / digest / CLAIM_FILE
    path.write_text(json.dumps({"host": "another-machine", "pid": 1, "token": "f00d", "beats": beats}))
    return path


def test_a_claim_whose_owner_stopped_beating_is_taken_over(sandbox, tmp_path, caplog):
    journal = Journal(tmp_path / "journal", heartbeat_s=0.1)
    digest = _pending_record(sandbox, journal)
    _foreign_claim(journal, digest)
    sandbox.job_delay = 0.0
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="comfyui_imgedit"):
        out = edit(client("modelslab"), journal)
    waited = time.monotonic() - started
    assert 0.6 <= waited < 5.0  # six silent beats of 0.1 s, by this process's own clock
    assert "takes it over" in caplog.text
    assert sandbox.count(SUBMIT["modelslab"]) == 1 and "resumed job" in out.info["journal"][0]
    assert np.abs(out.images.numpy() - expected()).max() < 2 / 255


def test_waiting_for_a_live_claim_honours_cancel(sandbox, tmp_path):
    journal = Journal(tmp_path / "journal", heartbeat_s=0.1)
    digest = _pending_record(sandbox, journal)
    path = _foreign_claim(journal, digest)
    stop = threading.Event()

    def beat() -> None:  # the other machine's process, alive and beating
        beats = 0
        while not stop.wait(0.05):
            beats += 1
            _foreign_claim(journal, digest, beats)

    beater = threading.Thread(target=beat)
    beater.start()
    fetches = sandbox.count("modelslab.fetch")
    try:
        recorder = RecordingHooks(cancel_after=1.5)
        with pytest.raises(Cancelled):
            edit(client("modelslab"), journal, hooks=recorder.hooks())
        assert time.monotonic() - recorder.started < 2.0
    finally:
        stop.set()
        beater.join()
    # it waited without touching the service: the live owner's job was neither resubmitted nor polled
    assert sandbox.count(SUBMIT["modelslab"]) == 1 and sandbox.count("modelslab.fetch") == fetches
    assert path.exists()


def test_of_many_waiters_on_a_stale_claim_one_holds_it_at_a_time(tmp_path):
    folder = tmp_path / ("a" * 64)
    folder.mkdir()
    (folder / CLAIM_FILE).write_text(json.dumps({"host": "another-machine", "pid": 1, "token": "dead"}))
    holders, most, lock = [0], [0], threading.Lock()
    takeovers = []

    def worker() -> None:
        with claimed(folder, heartbeat_s=0.02, is_done=lambda: False, check_cancelled=lambda: None,
                     poll_s=0.005) as claim:
            with lock:
                holders[0] += 1
                most[0] = max(most[0], holders[0])
                takeovers.append(claim.took_over)
            time.sleep(0.05)
            with lock:
                holders[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert most[0] == 1 and len(takeovers) == 8
    assert takeovers.count(True) == 1  # the stale claim was taken over once; the rest were fresh claims
    assert not list(folder.iterdir())


def test_a_slower_beating_owner_is_judged_by_its_own_heartbeat(tmp_path):
    """A process set to beat every 0.3 s is not taken over by one that beats every 0.05 s after 0.3 s."""
    folder = tmp_path / ("b" * 64)
    folder.mkdir()
    (folder / CLAIM_FILE).write_text(json.dumps({"host": "another-machine", "pid": 1, "token": "slow",
                                                 "heartbeat_s": 0.3}))
    started = time.monotonic()
    with claimed(folder, heartbeat_s=0.05, is_done=lambda: False, check_cancelled=lambda: None,
                 poll_s=0.01) as claim:
        waited = time.monotonic() - started
        assert claim.took_over
    assert 1.8 <= waited < 5.0  # six of the owner's beats, not six of the waiter's
