"""Remote clients through the orchestrator (nodes.core.edit.run_edit) against the sandbox: batch order,
sample splitting, concurrency, empty masks, info without keys."""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from comfyui_imgedit.nodes.core import images as img
from comfyui_imgedit.nodes.core.edit import run_edit
from comfyui_imgedit.nodes.core.providers.dezgo import DezgoClient
from comfyui_imgedit.nodes.core.providers.modelslab import ModelsLabClient
from comfyui_imgedit.sandbox import render
from remote_support import KEY, fast_http, picture, sandbox  # noqa: F401


def batch(n: int, h: int = 24, w: int = 32) -> torch.Tensor:
    return torch.stack([picture(h, w, seed=i) for i in range(n)])


def expected(image: torch.Tensor, seed: int, strength: float) -> np.ndarray:
    return np.asarray(render(img.tensor_to_pil(image), None, seed, strength), dtype=np.float32) / 255.0


def test_dezgo_batch_order_and_seeds(sandbox):
    images = batch(3)
    out = run_edit(DezgoClient(http=fast_http("dezgo"), max_concurrency=4), images, prompt="p", strength=0.5,
                   seed=100, samples=2)
    assert out.images.shape == (6, 24, 32, 3)
    assert out.info["seeds"] == [100, 101, 100, 101, 100, 101]
    for index in range(6):
        source = images[index // 2]
        want = expected(source, 100 + index % 2, 0.5)
        assert np.abs(out.images[index].numpy() - want).max() < 2 / 255
    assert sandbox.count("dezgo.image2image") == 6
    assert out.info["metadata"]["cost_usd"] > 0
    assert KEY not in json.dumps(out.info)


def test_modelslab_samples_split_into_calls_of_four(sandbox):
    sandbox.job_delay = 0.2
    out = run_edit(ModelsLabClient(http=fast_http("modelslab")), batch(1), prompt="p", seed=7, samples=6)
    assert out.images.shape[0] == 6
    calls = [r.json["samples"] for r in sandbox.requests_to("modelslab.img2img")]
    assert sorted(calls) == [2, 4]
    assert KEY not in json.dumps(out.info, default=str)


def test_concurrent_calls_overlap(sandbox):
    sandbox.sync_delay = 0.4
    started = time.monotonic()
    run_edit(DezgoClient(http=fast_http("dezgo"), max_concurrency=8), batch(8, 16, 16), prompt="p", seed=1)
    wall = time.monotonic() - started
    assert wall < 0.4 * 2.5  # sequential would be 3.2 s


def test_empty_mask_sends_nothing(sandbox):
    images = batch(2)
    masks = torch.zeros(2, 24, 32)
    masks[1, 4:10, 4:10] = 1
    out = run_edit(DezgoClient(http=fast_http("dezgo")), images, prompt="p", mask=masks, seed=1)
    assert sandbox.count("dezgo.inpainting") == 1
    assert torch.equal(out.images[0], images[0])
    # keep_unmasked: outside the mask the original pixels come back
    assert torch.allclose(out.images[1][12:, 12:], images[1][12:, 12:], atol=1e-6)
