"""The provider on ComfyUI's own MODEL, CLIP and VAE: img2img, inpaint and reference edits.

It runs what the model family's core graph runs (:mod:`.conditioning`: encode nodes ->
InpaintModelConditioning / SetLatentNoiseMask -> ReferenceLatent / TextEncodeQwenImageEdit ->
FluxGuidance; :mod:`.sampling`: KSamplerAdvanced; then VAEDecode) through ComfyUI's own functions:
no sampling maths here. Models are loaded by ComfyUI's model management (comfy.sample loads the
MODEL, the VAE and CLIP load themselves), so VRAM, offload, --lowvram and *Unload models* behave as
with core nodes, and no weights are copied.

It fulfils the core Provider contract and is run by ``run_edit`` (size fitting, samples,
keep_unmasked) like every other provider; it takes the prompt of each request it is given.
ComfyUI modules are imported inside functions so importing the pack stays cheap.
"""

from __future__ import annotations

import random
from typing import Any

from ..core.errors import InputError
from ..core.request import SEED_MAX, EditRequest, EditResult, Hooks, Provider, SizeRule
from .conditioning import Conditioner, check_reference_inputs
from .families import traits
from .sampling import sample


def vae_multiple(vae) -> int:
    """The VAE's pixel multiple (8 for SD/SDXL/Flux VAEs); pictures are padded to it and cropped back."""
    try:
        return max(1, int(vae.spacial_compression_encode()))
    except (AttributeError, TypeError, ValueError):
        return 8


class ComfyModelProvider(Provider):
    """Edits with a ComfyUI MODEL/CLIP/VAE; one sample per call, one call at a time."""

    name = "comfy_model"
    max_samples_per_call = 1  # sample k is its own run with seed + k, as KSamplerAdvanced on a batch of 1
    max_concurrency = 1
    remote = False

    def __init__(self, model, clip, vae, sampler_name: str, scheduler: str, reference: bool = False,
                 references=None):
        for name, value in (("model", model), ("clip", clip), ("vae", vae)):
            if value is None:
                raise InputError(f"the {name} input is empty: connect a checkpoint loader's {name.upper()} output "
                                 f"(this checkpoint may not contain one; load it with a separate loader).")
        self.model, self.clip, self.vae = model, clip, vae
        self.sampler_name, self.scheduler = sampler_name, scheduler
        self.traits = traits(model)
        check_reference_inputs(self.traits, reference, references)
        self.reference = bool(reference)
        self.size_rule = SizeRule(max_edge=None, multiple=vae_multiple(vae), mode="pad")
        self._conditioner = Conditioner(model, clip, vae, self.traits, reference, references)
        self._last_run: dict[str, Any] = {}  # what the last call ran, for info

    def describe(self) -> dict[str, Any]:
        return {"provider": self.name, **self.traits.as_info(), "reference": self.reference,
                "sampler": self.sampler_name, "scheduler": self.scheduler, **self._last_run}

    def edit(self, request: EditRequest, hooks: Hooks) -> EditResult:
        import torch

        seed = random.randint(0, SEED_MAX) if request.seed is None else int(request.seed)
        run_steps = int(request.steps * request.strength)
        if run_steps == 0:
            return EditResult(images=[request.image] * request.samples, seeds=[seed] * request.samples,
                              warnings=[f"strength {request.strength} x steps {request.steps} gives 0 denoising "
                                        f"steps: the picture is returned unchanged"])
        # run_edit calls this on its own thread, which does not inherit ComfyUI's inference mode
        with torch.inference_mode():
            hooks.check_cancelled()
            conditioned = self._conditioner.condition(request)
            self._last_run = conditioned.as_info(self.traits)
            samples = sample(conditioned.model, seed, request, conditioned.cfg, self.sampler_name, self.scheduler,
                             conditioned.positive, conditioned.negative, conditioned.latent, hooks)
            decoded = self.vae.decode(samples)
        picture = decoded.reshape(-1, *decoded.shape[-3:])[0].float().cpu()
        return EditResult(images=[picture], seeds=[seed], warnings=list(conditioned.warnings))
