"""After a Cancel no request thread or connection outlives it by more than a moment (issue 10).

Before, each request ran on a daemon thread that stayed blocked in its socket read until the read
timeout (60 s by default); now the call shuts its in-flight sockets, so the thread ends at once.
"""

from __future__ import annotations

import threading
import time

import pytest

from comfyui_imgedit.nodes.core.edit import run_edit
from comfyui_imgedit.nodes.core.providers.dezgo import DezgoClient
from comfyui_imgedit.nodes.core.providers.modelslab import ModelsLabClient
from comfyui_imgedit.nodes.core.request import Cancelled
from comfyui_imgedit.sandbox import Canned
from remote_support import RecordingHooks, fast_http, make_request, picture, sandbox  # noqa: F401

READ_TIMEOUT_S = 30.0  # far longer than the test waits: only an aborted socket ends the thread


def request_threads() -> list[threading.Thread]:
    """The pack's request threads (``imgedit-http-*``) and run_edit's call pool (``imgedit-<provider>_N``)."""
    return [t for t in threading.enumerate()
            if t.name.startswith("imgedit-") and t.name != "imgedit-sandbox" and t.is_alive()]


def client_connections(port: int) -> int:
    """Established TCP connections from this machine to ``port`` (the client side only)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01":  # 01 = ESTABLISHED
                count += 1
    return count


def settle(port: int, within: float = 2.0) -> tuple[int, int]:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not request_threads() and client_connections(port) == 0:
            break
        time.sleep(0.05)
    return len(request_threads()), client_connections(port)


@pytest.fixture
def no_leftovers():
    assert not request_threads(), "another test left request threads running"
    yield


def test_cancel_during_a_blocking_post_ends_its_thread_and_socket(sandbox, no_leftovers):
    sandbox.sync_delay = 20.0
    client = DezgoClient(http=fast_http("dezgo", read_timeout=READ_TIMEOUT_S), request_timeout_s=READ_TIMEOUT_S)
    hooks = RecordingHooks(cancel_after=0.4)
    with pytest.raises(Cancelled):
        client.edit(make_request(), hooks.hooks())
    assert settle(sandbox.port) == (0, 0)


def test_cancel_during_a_slow_download_ends_its_thread_and_socket(sandbox, no_leftovers):
    sandbox.script("files", Canned(passthrough=True, delay=20.0))
    client = ModelsLabClient(http=fast_http("modelslab", read_timeout=READ_TIMEOUT_S), image_transport="base64")
    hooks = RecordingHooks(cancel_after=0.6)
    with pytest.raises(Cancelled):
        client.edit(make_request(), hooks.hooks())
    assert sandbox.count("files") == 1
    assert settle(sandbox.port) == (0, 0)


def test_cancel_of_a_concurrent_run_edit_ends_every_request(sandbox, no_leftovers):
    import torch

    sandbox.sync_delay = 20.0
    client = DezgoClient(http=fast_http("dezgo", read_timeout=READ_TIMEOUT_S), request_timeout_s=READ_TIMEOUT_S,
                         max_concurrency=4)
    hooks = RecordingHooks(cancel_after=0.5)
    with pytest.raises(Cancelled):
        run_edit(client, torch.stack([picture(seed=i) for i in range(4)]), prompt="p", seed=1, hooks=hooks.hooks())
    assert sandbox.count("dezgo.image2image") == 4
    assert settle(sandbox.port) == (0, 0)
