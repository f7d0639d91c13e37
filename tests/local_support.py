"""Shared helpers for the local diffusers provider tests (test_local_diffusers, test_local_models):
small pictures and masks, requests, a UNet call counter, and the module-wide fresh model cache.

The tiny models themselves come from the session fixtures ``tiny`` and ``roots`` of conftest.py
(built once for both modules). Import the autouse fixture into a test module with
``from local_support import fresh_cache_one_thread  # noqa: F401``.
"""

from __future__ import annotations

import pytest
import torch

from comfyui_imgedit.nodes.core.providers import local_diffusers as ld
from comfyui_imgedit.nodes.core.request import EditRequest

EULER = "EulerDiscreteScheduler"


@pytest.fixture(autouse=True, scope="module")
def fresh_cache_one_thread(one_torch_thread):
    """An empty model cache for this module (and one torch thread, see conftest)."""
    ld.clear_cache()
    yield
    ld.clear_cache()


def picture(h=64, w=64, seed=0) -> torch.Tensor:
    return torch.rand(h, w, 3, generator=torch.Generator().manual_seed(seed))


def blob_mask(h=64, w=64) -> torch.Tensor:
    m = torch.zeros(h, w)
    m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1.0
    return m


def req(image=None, **kw) -> EditRequest:
    base = dict(prompt="a red cat", image=picture() if image is None else image, steps=10, strength=0.5, seed=7)
    base.update(kw)
    return EditRequest(**base)


class UnetCounter:
    def __init__(self, provider, task="img2img"):
        self.unet = provider.pipeline(task).unet
        self.calls = 0

    def __enter__(self):
        self.handle = self.unet.register_forward_pre_hook(self._hook)
        return self

    def _hook(self, *_):
        self.calls += 1

    def __exit__(self, *exc):
        self.handle.remove()


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.rstrip().endswith(".") and len(message) < 400
