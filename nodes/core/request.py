"""The provider-neutral edit request and result, and the contract every provider fulfils.

Nothing here imports ComfyUI or any HTTP library. Node code builds an :class:`EditRequest`;
:func:`nodes.core.edit.run_edit` splits it per image and per call and hands each piece to a
:class:`Provider`; the provider returns an :class:`EditResult`.

Tensors follow ComfyUI's conventions:
- image ``[H, W, 3]`` float32 in 0..1 (one picture; batches are split before a provider sees them)
- mask ``[H, W]`` float32 in 0..1, 1 = change (white = change for every provider)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:  # annotations only: the table of services imports this module without torch
    import torch

# Seeds are unsigned 32-bit for every provider that documents a range (Dezgo: 0..4294967295).
SEED_MAX = 2**32 - 1
#: Most samples one edit makes of each picture (split into calls of ``max_samples_per_call``).
MAX_SAMPLES = 64


@dataclass(frozen=True)
class EditRequest:
    """One edit of one picture.

    ``samples`` is how many images to make from it; a provider receives at most its
    ``max_samples_per_call``. ``seed`` None means the provider picks (and reports) one.
    ``options`` holds provider-specific settings already validated by the provider node
    (model ids, scheduler, the ``extra`` JSON); it can never carry a key or a host.
    """

    prompt: str
    image: torch.Tensor
    mask: Optional[torch.Tensor] = None
    negative_prompt: str = ""
    strength: float = 0.75
    steps: int = 30
    guidance: float = 7.5
    seed: Optional[int] = None
    samples: int = 1
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_inpaint(self) -> bool:
        return self.mask is not None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass
class EditResult:
    """What one provider call (or a whole merged run) produced.

    ``images`` are ``[H, W, 3]`` float32 0..1 RGB tensors, one per sample; ``seeds[i]`` is the seed
    that made ``images[i]`` as the provider reported it (None when it did not say).
    """

    images: list[torch.Tensor] = field(default_factory=list)
    seeds: list[Optional[int]] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: what the journal did for this call ("result from the journal...", "resumed job ...")
    notes: list[str] = field(default_factory=list)


class Cancelled(Exception):
    """The user pressed Cancel; the node layer turns this into ComfyUI's interrupt."""


@dataclass
class Hooks:
    """Callbacks from the host (ComfyUI or the CLI) into long-running core work.

    - ``progress(done, total, text)``: called from any thread; ``text`` is a short status line
      ("queued, 12 s elapsed, ~8 s left") or "" for plain step progress.
    - ``cancelled()``: True once the user asked to stop. Core code checks it at least every
      0.2 s while waiting and at every denoising step, then raises :class:`Cancelled`.
    - ``preview(latents, family)``: optional, for local pipelines: the latents ``[B, C, h, w]``
      of the denoising step about to be reported through ``progress`` (model space, as the
      sampler holds them, on the run's device) and the model family ("sd", "sdxl"), so the host
      can show them with its own previewer for that latent format, attached to that step.
    - ``resume_job``: a job id a queued-job client polls instead of submitting (set by the journal,
      :mod:`nodes.core.paid_calls`); unknown to the service -> :class:`~.errors.JobUnknown`.
    - ``job_submitted(job_id)``: called by a queued-job client as soon as the service gave the job's
      id, so the journal can resume it after a Cancel or a crash.
    """

    progress: Callable[[int, int, str], None] = lambda done, total, text: None
    cancelled: Callable[[], bool] = lambda: False
    preview: Optional[Callable[[torch.Tensor, str], None]] = None
    resume_job: Optional[str] = None
    job_submitted: Callable[[str], None] = lambda job_id: None

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled("cancelled by the user")


@dataclass(frozen=True)
class SizeRule:
    """How a provider wants picture sizes before it sees them.

    ``mode`` "resize": scale into the window (longest edge at most ``max_edge``, shortest at
    least ``min_edge``) with both sides multiples of ``multiple`` (remote services); where the
    aspect ratio fits no such size the short side is padded. "pad": keep the pixels, pad
    right/bottom up to a multiple (local pipelines, so the output is cropped back exactly).
    """

    max_edge: Optional[int] = 1024
    multiple: int = 8
    mode: str = "resize"
    min_edge: Optional[int] = None


class Provider:
    """Base of every provider (remote clients and the local diffusers runner).

    Subclasses set the class attributes and implement :meth:`edit`. ``edit`` receives a request
    whose image/mask already follow :attr:`size_rule` and whose ``samples`` is at most
    :attr:`max_samples_per_call`; it returns exactly ``request.samples`` images of the request's
    size (or raises a :class:`nodes.core.errors.ProviderError`).
    """

    name: str = "provider"
    max_samples_per_call: int = 1
    max_concurrency: int = 4
    size_rule: SizeRule = SizeRule()
    remote: bool = True

    def edit(self, request: EditRequest, hooks: Hooks) -> EditResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Non-secret facts for the ``info`` output (never a key)."""
        return {"provider": self.name}

    def call_identity(self, request: EditRequest) -> Optional[dict[str, Any]]:
        """What identifies a paid call for the journal: ``{"endpoint": url, "fields": body}`` with
        every body field except the key and the pictures (the journal hashes the pictures itself);
        None for providers that are not paid per call (the local runner)."""
        return None
