"""run_edit: size fitting, sample splitting, concurrency, order, seeds, cancel, keep_unmasked."""

import threading
import time

import pytest
import torch

from comfyui_imgedit.nodes.core.edit import run_edit
from comfyui_imgedit.nodes.core.errors import InputError, ProviderFailed, RateLimited
from comfyui_imgedit.nodes.core.request import Cancelled, EditResult, Hooks, Provider, SizeRule


class RecordingProvider(Provider):
    """Brightens the picture by seed-derived amounts and records every request it gets."""

    name = "recording"

    def __init__(self, per_call=1, concurrency=4, rule=SizeRule(), delay=0.0, fail_on_item=None, shrink=False):
        self.max_samples_per_call = per_call
        self.max_concurrency = concurrency
        self.size_rule = rule
        self.delay = delay
        self.fail_on_item = fail_on_item
        self.shrink = shrink
        self.requests = []
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def edit(self, request, hooks):
        with self._lock:
            self.requests.append(request)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            deadline = time.monotonic() + self.delay
            while time.monotonic() < deadline:
                hooks.check_cancelled()
                time.sleep(0.01)
            if self.fail_on_item is not None and float(request.image.mean()) == self.fail_on_item:
                raise RateLimited("rate limited, try again in 30 s", provider=self.name)
            out = []
            for k in range(request.samples):
                value = ((request.seed or 0) + k) % 7 / 10.0
                picture = torch.full_like(request.image, value)
                if self.shrink:
                    picture = picture[: picture.shape[0] // 2, : picture.shape[1] // 2]
                out.append(picture)
            hooks.progress(1, 1, "done")
            return EditResult(images=out, seeds=[(request.seed or 0) + k for k in range(request.samples)],
                              job_ids=[f"job-{len(self.requests)}"])
        finally:
            with self._lock:
                self.active -= 1


def picture(h=40, w=60, b=1, value=0.5):
    return torch.full((b, h, w, 3), value)


def test_remote_rule_fits_longest_edge_and_multiples_then_restores_size():
    provider = RecordingProvider()
    out = run_edit(provider, picture(1500, 2001), prompt="x", seed=3)
    sent = provider.requests[0].image
    assert max(sent.shape[:2]) <= 1024 and sent.shape[0] % 8 == 0 and sent.shape[1] % 8 == 0
    assert out.images.shape == (1, 1500, 2001, 3)


def test_pad_rule_sends_padded_picture_and_crops_back_exactly():
    provider = RecordingProvider(rule=SizeRule(max_edge=None, multiple=8, mode="pad"))
    out = run_edit(provider, picture(45, 67), prompt="x", seed=1)
    assert tuple(provider.requests[0].image.shape) == (48, 72, 3)
    assert out.images.shape == (1, 45, 67, 3)


def test_samples_split_into_calls_with_consecutive_seeds_in_order():
    provider = RecordingProvider(per_call=4)
    out = run_edit(provider, picture(b=2), prompt="x", seed=10, samples=6)
    sizes = sorted((r.seed, r.samples) for r in provider.requests)
    assert sizes == [(10, 4), (10, 4), (14, 2), (14, 2)]
    assert out.images.shape[0] == 12
    assert out.info["seeds"] == [10, 11, 12, 13, 14, 15] * 2
    # sample k of a picture has value (seed + k) % 7 / 10 in this provider
    expected = torch.tensor([(s % 7) / 10 for s in out.info["seeds"]])
    assert torch.allclose(out.images.mean(dim=(1, 2, 3)), expected)


def test_batch_runs_concurrently_bounded_and_keeps_order():
    provider = RecordingProvider(concurrency=3, delay=0.15)
    batch = torch.stack([torch.full((16, 16, 3), i / 10) for i in range(6)])
    started = time.monotonic()
    out = run_edit(provider, batch, prompt="x", seed=0, mask=torch.ones(6, 16, 16), keep_unmasked=False)
    wall = time.monotonic() - started
    assert provider.peak == 3
    assert wall < 6 * 0.15  # overlapped, not sequential
    assert out.images.shape[0] == 6


def test_empty_mask_returns_input_and_sends_nothing():
    provider = RecordingProvider()
    image = torch.rand(2, 16, 16, 3)
    mask = torch.zeros(2, 16, 16)
    mask[1, 4:8, 4:8] = 1
    out = run_edit(provider, image, mask=mask, prompt="x", seed=0)
    assert len(provider.requests) == 1
    assert torch.equal(out.images[0], image[0])
    assert any("empty" in w for w in out.info["warnings"])


def test_keep_unmasked_pastes_original_outside_soft_mask():
    provider = RecordingProvider()
    image = torch.rand(1, 32, 32, 3)
    mask = torch.zeros(1, 32, 32)
    mask[0, 8:24, 8:24] = 1.0
    mask[0, 8:24, 7] = 0.5
    out = run_edit(provider, image, mask=mask, prompt="x", seed=2).images[0]
    assert torch.equal(out[:, :7], image[0, :, :7])
    assert torch.allclose(out[8:24, 8:24], torch.full((16, 16, 3), 0.2))
    assert torch.allclose(out[10, 7], 0.5 * image[0, 10, 7] + 0.5 * 0.2)


def test_mask_batch_of_one_broadcasts_against_images_and_vice_versa():
    provider = RecordingProvider()
    out = run_edit(provider, torch.rand(3, 16, 16, 3), mask=torch.ones(16, 16), prompt="x", seed=0)
    assert out.images.shape[0] == 3
    out = run_edit(provider, torch.rand(1, 16, 16, 3), mask=torch.ones(2, 16, 16), prompt="x", seed=0)
    assert out.images.shape[0] == 2


def test_result_of_wrong_size_is_resized_not_rejected():
    out = run_edit(RecordingProvider(shrink=True), picture(64, 64), prompt="x", seed=0)
    assert out.images.shape == (1, 64, 64, 3)


def test_failure_names_the_picture_and_keeps_type():
    provider = RecordingProvider(fail_on_item=0.25)
    batch = torch.stack([torch.full((16, 16, 3), v) for v in (0.5, 0.25)])
    with pytest.raises(RateLimited, match="picture 1"):
        run_edit(provider, batch, prompt="x", seed=0)


def test_missing_images_from_a_provider_is_an_error_not_a_silent_drop():
    class Short(RecordingProvider):
        def edit(self, request, hooks):
            result = super().edit(request, hooks)
            result.images = result.images[:1]
            return result

    with pytest.raises(ProviderFailed, match="returned 1 images"):
        run_edit(Short(per_call=4), picture(), prompt="x", seed=0, samples=3)


def test_cancel_stops_waiting_within_a_second_even_if_provider_ignores_it():
    class Stuck(RecordingProvider):
        def edit(self, request, hooks):
            time.sleep(3)
            return super().edit(request, hooks)

    flag = threading.Event()
    threading.Timer(0.3, flag.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        run_edit(Stuck(), picture(), prompt="x", seed=0, hooks=Hooks(cancelled=flag.is_set))
    assert time.monotonic() - started < 1.3


def test_progress_is_combined_over_calls():
    seen = []
    run_edit(RecordingProvider(), picture(b=3), prompt="x", seed=0,
             hooks=Hooks(progress=lambda d, t, text: seen.append((d, t, text))))
    assert seen[-1][0] == seen[-1][1] == 3 or max(d for d, _, _ in seen) == 3
    assert all(text.startswith("[") for _, _, text in seen)


@pytest.mark.parametrize("bad, match", [
    (dict(strength=1.5), "strength"), (dict(steps=0), "steps"), (dict(samples=0), "samples"),
    (dict(seed=-1), "seed"),
])
def test_bad_parameters_name_the_input(bad, match):
    params = dict(prompt="x", seed=0)
    params.update(bad)
    with pytest.raises(InputError, match=match):
        run_edit(RecordingProvider(), picture(), **params)


def test_non_provider_is_refused_with_a_sentence():
    with pytest.raises(InputError, match="provider"):
        run_edit(object(), picture(), prompt="x")


def test_cost_is_summed_over_calls_and_balance_is_the_latest():
    class Billed(RecordingProvider):
        def edit(self, request, hooks):
            result = super().edit(request, hooks)
            result.metadata = {"cost_usd": 0.0019, "balance_usd": 10 - 0.0019 * len(self.requests)}
            return result

    out = run_edit(Billed(concurrency=1), picture(b=3), prompt="x", seed=0)
    assert out.info["metadata"]["cost_usd"] == pytest.approx(3 * 0.0019)
    assert out.info["metadata"]["balance_usd"] == pytest.approx(10 - 3 * 0.0019)


class WaitsForStop(RecordingProvider):
    """Runs until its hooks say stop (then records that and raises); a picture of mean
    ``fail_on_item`` fails at once instead."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.stopped = threading.Event()

    def edit(self, request, hooks):
        if self.fail_on_item is not None and float(request.image.mean()) == self.fail_on_item:
            raise RateLimited("rate limited", provider=self.name)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if hooks.cancelled():
                self.stopped.set()
                raise Cancelled("stopped")
            time.sleep(0.01)
        raise AssertionError("never told to stop")


def test_cancel_seen_once_by_the_host_still_stops_every_running_call():
    """ComfyUI's flag is cleared when read; calls still running must stop all the same."""
    reads = []

    def read_once():  # True exactly once, like a read-and-clear flag
        reads.append(1)
        return len(reads) == 20

    provider = WaitsForStop()
    with pytest.raises(Cancelled):
        run_edit(provider, picture(), prompt="x", seed=0, hooks=Hooks(cancelled=read_once))
    assert provider.stopped.wait(1.0)


def test_a_failed_call_stops_its_siblings():
    provider = WaitsForStop(concurrency=2, fail_on_item=0.25)
    batch = torch.stack([torch.full((16, 16, 3), v) for v in (0.5, 0.25)])
    with pytest.raises(RateLimited):
        run_edit(provider, batch, prompt="x", seed=0)
    assert provider.stopped.wait(1.0)
