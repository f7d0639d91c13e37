"""Run one img2img or inpaint job on any provider: the part every provider shares.

:func:`run_edit` takes ComfyUI-shaped batches, and for each picture:

1. fits its size to the provider's :class:`SizeRule` (remote: longest edge <= 1024, multiples of 8;
   local: padded to a multiple of 8) so any picture works with any provider;
2. splits ``samples`` into calls of at most ``provider.max_samples_per_call``;
3. runs every call on a thread pool bounded by ``provider.max_concurrency`` while the calling
   thread watches for Cancel (so a stuck request never delays a Cancel by more than ~0.2 s);
4. brings each result back to the input size, and with ``keep_unmasked`` pastes the original
   pixels outside the mask (blended through its soft edge).

Output order is input order: picture 0's samples, then picture 1's, and so on. Nothing is dropped:
a call that fails fails the whole run with a message naming the picture.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from . import images as img
from .errors import InputError, ProviderError, ProviderFailed
from .journal import Journal
from .paid_calls import paid_edit
from .prompts import prompts_per_picture, split_prompts
from .request import MAX_SAMPLES, SEED_MAX, Cancelled, EditRequest, EditResult, Hooks, Provider

_WAIT_SLICE_S = 0.2


@dataclass
class EditOutcome:
    """``images`` is ``[B * samples, H, W, 3]`` float32 0..1; ``info`` is JSON-serialisable."""

    images: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Call:
    item: int
    first_sample: int
    request: EditRequest
    fit: "img.SizeFit"


def run_edit(
    provider: Provider,
    image: torch.Tensor,
    *,
    prompt: str,
    mask: Optional[torch.Tensor] = None,
    negative_prompt: str = "",
    strength: float = 0.75,
    steps: int = 30,
    guidance: float = 7.5,
    seed: Optional[int] = None,
    samples: int = 1,
    keep_unmasked: bool = True,
    options: Optional[dict[str, Any]] = None,
    hooks: Optional[Hooks] = None,
    journal: Optional[Journal] = None,
) -> EditOutcome:
    """Edit every picture of ``image`` (``[B,H,W,3]``, or ``[H,W,3]``) with ``provider``.

    ``mask`` (``[B,H,W]`` or ``[H,W]``, 1 = change) makes it an inpaint; a batch of 1 is broadcast
    against the other side. ``seed`` is the seed of each picture's first sample; sample ``k`` uses
    ``seed + k`` (wrapping at 2**32), so asking for more samples never changes earlier ones.
    ``journal`` (remote providers, fixed seeds): identical calls come from disk, interrupted jobs
    are resumed (:mod:`.paid_calls`); None sends every call. ``prompt`` and ``negative_prompt`` may
    hold one prompt per picture, separated by ``---`` lines (:mod:`.prompts`): each picture's calls
    carry only its own, and ``info["prompts"]`` says which went where.
    """
    hooks = hooks or Hooks()
    _check_params(provider, strength, steps, samples, seed)
    started = time.monotonic()
    images, masks = _normalise_inputs(image, mask)
    prompts = prompts_per_picture(prompt, images.shape[0], "prompt")
    negative_prompts = prompts_per_picture(negative_prompt, images.shape[0], "negative_prompt")
    result = EditResult()
    skipped = _empty_mask_items(masks)
    for item in skipped:
        result.warnings.append(f"mask of picture {item} is empty: nothing was sent and the picture is returned unchanged")

    calls = _plan_calls(provider, images, masks, skipped, prompts=prompts, negative_prompts=negative_prompts,
                        strength=strength, steps=steps, guidance=guidance, seed=seed, samples=samples,
                        options=dict(options or {}))
    digests: set[str] = set()
    answers = _run_calls(provider, calls, hooks, journal, digests)
    if journal is not None and digests:
        journal.enforce_caps_now_and_then(keep=digests)

    per_item: dict[int, list[torch.Tensor]] = {}
    seeds: dict[int, list[Optional[int]]] = {}
    for call, answer in zip(calls, answers):
        edited = _restore_size(call, answer)
        per_item.setdefault(call.item, []).extend(edited)
        seeds.setdefault(call.item, []).extend(answer.seeds or [None] * len(edited))
        result.job_ids.extend(answer.job_ids)
        result.warnings.extend(w for w in answer.warnings if w not in result.warnings)
        result.notes.extend(f"picture {call.item}, samples from {call.first_sample}: {note}" for note in answer.notes)
        _merge_metadata(result.metadata, answer.metadata)

    outputs = []
    for item in range(images.shape[0]):
        if item in skipped:
            outputs.extend([images[item]] * samples)
            result.seeds.extend([None] * samples)
            continue
        edited = torch.stack(per_item[item])
        if masks is not None and keep_unmasked:
            edited = img.composite(images[item : item + 1].expand_as(edited), edited,
                                   masks[item : item + 1].expand(edited.shape[:3]))
        outputs.extend(edited)
        result.seeds.extend(seeds[item])

    info = {
        **provider.describe(),
        "mode": "inpaint" if masks is not None else "img2img",
        "seeds": result.seeds,
        "job_ids": result.job_ids,
        "warnings": result.warnings,
        "calls": len(calls),
        "metadata": result.metadata,
        "timings": {"total_s": round(time.monotonic() - started, 3)},
    }
    if len(split_prompts(prompt)) > 1 or len(split_prompts(negative_prompt)) > 1:
        info["prompts"] = [{"picture": item, "prompt": prompts[item], "negative_prompt": negative_prompts[item]}
                           for item in range(images.shape[0])]
    if result.notes:
        info["journal"] = result.notes
    return EditOutcome(images=torch.stack(outputs).clamp_(0.0, 1.0), info=info)


# Per-call figures that add up over a run; every other key keeps the latest call's value.
_SUMMED_METADATA = ("cost_usd",)


def _merge_metadata(total: dict[str, Any], call: dict[str, Any]) -> None:
    for key, value in call.items():
        if key in _SUMMED_METADATA and isinstance(value, (int, float)) and key in total:
            total[key] = round(total[key] + value, 6)
        else:
            total[key] = value


def _check_params(provider: Provider, strength: float, steps: int, samples: int, seed: Optional[int]) -> None:
    if not isinstance(provider, Provider):
        raise InputError("provider is not an ImgEdit provider: connect a provider node (for example ImgEditDezgo or ImgEditLocalDiffusers) to the provider input.")
    if not 0.0 <= float(strength) <= 1.0:
        raise InputError(f"strength is {strength}; use a value from 0 to 1.")
    if int(steps) < 1:
        raise InputError(f"steps is {steps}; use at least 1.")
    if not 1 <= int(samples) <= MAX_SAMPLES:
        raise InputError(f"samples is {samples}; use 1 to {MAX_SAMPLES}.")
    if seed is not None and not 0 <= int(seed) <= SEED_MAX:
        raise InputError(f"seed is {seed}; use 0 to {SEED_MAX}.")


def _normalise_inputs(image: torch.Tensor, mask: Optional[torch.Tensor]):
    images = img.to_image_batch(image, name="image")
    if mask is None:
        return images, None
    masks = img.match_mask_to_image(img.to_mask_batch(mask, name="mask"), images)
    if images.shape[0] == 1 and masks.shape[0] > 1:
        images = images.expand(masks.shape[0], -1, -1, -1)
    return images, masks


def _empty_mask_items(masks: Optional[torch.Tensor]) -> set[int]:
    if masks is None:
        return set()
    return {i for i in range(masks.shape[0]) if not bool(masks[i].any())}


def _plan_calls(provider: Provider, images, masks, skipped, *, prompts, negative_prompts, seed, samples, options,
                **params) -> list[_Call]:
    rule = provider.size_rule
    per_call = max(1, int(provider.max_samples_per_call))
    calls = []
    for item in range(images.shape[0]):
        if item in skipped:
            continue
        picture, fit = img.fit_size(images[item], rule.max_edge, rule.multiple, rule.mode, rule.min_edge)
        area = None
        if masks is not None:
            area, _ = img.fit_size(masks[item], rule.max_edge, rule.multiple, rule.mode, rule.min_edge)
        for first in range(0, samples, per_call):
            calls.append(_Call(item, first, EditRequest(
                image=picture, mask=area, samples=min(per_call, samples - first),
                seed=None if seed is None else (int(seed) + first) % (SEED_MAX + 1),
                prompt=prompts[item], negative_prompt=negative_prompts[item], options=options, **params), fit))
    return calls


def _run_calls(provider: Provider, calls: list[_Call], hooks: Hooks, journal: Optional[Journal],
               digests: set[str]) -> list[EditResult]:
    """Run the calls concurrently (bounded), in order, giving up within ~0.2 s of a Cancel."""
    if not calls:
        return []
    progress = _CombinedProgress(hooks, len(calls))
    # Latched: the host's flag may be read-and-cleared once (ComfyUI's is), and a failed call
    # must stop its siblings too; every call watches this instead of the host flag alone.
    stop = threading.Event()
    workers = max(1, min(int(provider.max_concurrency), len(calls)))
    pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"imgedit-{provider.name}")
    futures = []
    try:
        for index, call in enumerate(calls):
            # Each call gets a copy of the caller's context: ComfyUI's progress hook reads it.
            context = contextvars.copy_context()
            call_hooks = Hooks(progress=progress.for_call(index), preview=hooks.preview,
                               cancelled=lambda: stop.is_set() or hooks.cancelled())
            futures.append(pool.submit(context.run, paid_edit, provider, journal, call.request, call_hooks, digests))
        pending = set(futures)
        while pending:
            hooks.check_cancelled()
            done, pending = cf.wait(pending, timeout=_WAIT_SLICE_S, return_when=cf.FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    raise _named_failure(future.exception(), calls[futures.index(future)], len(calls))
        return [_checked(future.result(), call) for future, call in zip(futures, calls)]
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


def _named_failure(error: BaseException, call: _Call, total_calls: int) -> BaseException:
    """Say which picture failed when there were several; keep the error's type."""
    if total_calls > 1 and isinstance(error, ProviderError) and error.args:
        error.args = (f"picture {call.item}, samples from {call.first_sample}: {error.args[0]}",) + error.args[1:]
    return error


def _checked(answer: EditResult, call: _Call) -> EditResult:
    wanted = call.request.samples
    if len(answer.images) != wanted:
        raise ProviderFailed(f"the provider returned {len(answer.images)} images for picture {call.item} where {wanted} were asked for; nothing was dropped, try again.")
    return answer


def _restore_size(call: _Call, answer: EditResult) -> list[torch.Tensor]:
    """Undo the size fitting of one call's images (undo_fit also resizes a result of another size)."""
    return [img.undo_fit(img.to_image_batch(picture, name="provider result")[0], call.fit)
            for picture in answer.images]


class _CombinedProgress:
    """Sums the step progress of concurrent calls into one bar (thread-safe)."""

    def __init__(self, hooks: Hooks, calls: int):
        self._hooks = hooks
        self._calls = calls
        self._done = [0] * calls
        self._total = [0] * calls
        self._lock = threading.Lock()

    def for_call(self, index: int):
        def report(done: int, total: int, text: str = "") -> None:
            with self._lock:
                self._done[index] = int(done)
                self._total[index] = max(int(total), 1)
                # Calls that have not reported yet are assumed as long as the longest one seen.
                step_total = max(self._total) * self._calls
                overall = sum(self._done)
            prefix = f"[{index + 1}/{self._calls}] " if self._calls > 1 and text else ""
            self._hooks.progress(min(overall, step_total), step_total, prefix + text)

        return report


__all__ = ["EditOutcome", "run_edit", "Cancelled"]
