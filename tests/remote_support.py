"""Shared helpers for the remote-provider tests (test_http, test_dezgo, test_modelslab, ...).

Every test runs its own loopback sandbox on a free port (127.0.0.1 only) and stops it.
Import the fixtures into a test module with ``from remote_support import sandbox  # noqa: F401``.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
import torch

from comfyui_imgedit.nodes.core.providers.http import ProviderHttp
from comfyui_imgedit.nodes.core.request import EditRequest, Hooks
from comfyui_imgedit.sandbox import Canned, SandboxServer  # noqa: F401 - re-exported

KEY = "test-key-not-real-7f3a9c"


def fast_http(service: str, **overrides: Any) -> ProviderHttp:
    """HTTP settings with short timeouts and backoffs, so error paths take milliseconds."""
    settings = dict(connect_timeout=1.0, read_timeout=5.0, retries=2, backoff=0.02, rate_limit_retries=2,
                    not_ready_s=3.0, poll_interval=0.25)
    settings.update(overrides)
    return ProviderHttp(service, **settings)


def picture(h: int = 32, w: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(h, w, 3, generator=g)


def box_mask(h: int = 32, w: int = 48) -> torch.Tensor:
    mask = torch.zeros(h, w)
    mask[h // 4: h // 2, w // 4: w // 2] = 1.0
    return mask


def make_request(inpaint: bool = False, samples: int = 1, seed: Optional[int] = 7, h: int = 32, w: int = 48,
                 **kw: Any) -> EditRequest:
    params = dict(prompt="a red barn", negative_prompt="blurry", strength=0.6, steps=30, guidance=7.5)
    params.update(kw)
    return EditRequest(image=picture(h, w), mask=box_mask(h, w) if inpaint else None, samples=samples, seed=seed,
                       **params)


@dataclass
class RecordingHooks:
    """Hooks that record progress texts and cancel when told to (or after ``cancel_after`` s)."""

    cancel_after: Optional[float] = None
    texts: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event)

    def hooks(self) -> Hooks:
        def progress(done: int, total: int, text: str) -> None:
            self.texts.append(text)

        def cancelled() -> bool:
            if self.cancel_after is not None and time.monotonic() - self.started >= self.cancel_after:
                return True
            return self.stop.is_set()

        return Hooks(progress=progress, cancelled=cancelled)


def error_text(error: BaseException) -> str:
    """Everything a user or a log could see of an exception (message, repr, args, traceback)."""
    parts = [str(error), repr(error), repr(getattr(error, "args", ())),
             "".join(traceback.format_exception(type(error), error, error.__traceback__))]
    parts += [repr(v) for v in vars(error).values()] if hasattr(error, "__dict__") else []
    return "\n".join(parts)


def assert_no_key(*artefacts: Any, key: str = KEY) -> None:
    for artefact in artefacts:
        text = error_text(artefact) if isinstance(artefact, BaseException) else repr(artefact) + str(artefact)
        assert key not in text, f"the key leaked into: {text[:400]}"


@pytest.fixture
def sandbox(monkeypatch):
    """A running sandbox with the env vars of all four services pointing at it (fake key)."""
    with SandboxServer(key=KEY) as sb:
        for name, value in sb.environ().items():
            monkeypatch.setenv(name, value)
        yield sb


@pytest.fixture
def other_host():
    """A second sandbox reached as ``localhost`` (another host for redirects), without env vars."""
    with SandboxServer(key=KEY) as sb:
        yield sb, f"http://localhost:{sb.port}"
