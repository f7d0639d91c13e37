"""ImgEditComfyModel: ImgEdit Img2Img / Inpaint on ComfyUI's own MODEL, CLIP and VAE.

The provider runs what core ComfyUI runs for CLIPTextEncode -> VAEEncode -> KSamplerAdvanced
(add_noise on, start_at_step = steps - int(steps * strength), end_at_step = steps, no leftover
noise) -> VAEDecode, through ComfyUI's own functions: no sampling maths here. Models are loaded
by ComfyUI's model management (comfy.sample loads the MODEL, the VAE and CLIP load themselves),
so VRAM, offload, --lowvram and *Unload models* behave as with core nodes, and no weights are
copied. Each step reports to ComfyUI's progress bar with its latent preview, as KSampler does.

It is ComfyUI code, so it lives on the node side; it fulfils the core Provider contract and is run
by ``run_edit`` (size fitting, samples, keep_unmasked) like every other provider. ComfyUI modules
are imported inside functions so importing the pack stays cheap.
"""

from __future__ import annotations

import random
from typing import Any

from comfy_api.latest import io

from .comfy_types import PROVIDER
from .core.errors import InputError
from .core.request import SEED_MAX, EditRequest, EditResult, Hooks, Provider, SizeRule

STEPS_MEANING = ("A schedule of `steps` steps of which the last int(steps x strength) run (as KSamplerAdvanced "
                 "with start_at_step = steps - int(steps x strength)); sample k uses seed + k.")


def vae_multiple(vae) -> int:
    """The VAE's pixel multiple (8 for SD/SDXL/Flux VAEs); pictures are padded to it and cropped back."""
    try:
        return max(1, int(vae.spacial_compression_encode()))
    except (AttributeError, TypeError, ValueError):
        return 8


def takes_masked_picture(model) -> bool:
    """True for inpainting UNets (SD/SDXL 9-channel) that take the mask and masked picture as input."""
    keys = getattr(getattr(model, "model", None), "concat_keys", ()) or ()
    return "mask" in keys and "masked_image" in keys


def has_soft_values(mask) -> bool:
    return bool(((mask > 0) & (mask < 1)).any())


class ComfyModelProvider(Provider):
    """Img2img and inpaint with a ComfyUI MODEL/CLIP/VAE; one sample per call, one call at a time."""

    name = "comfy_model"
    max_samples_per_call = 1  # sample k is its own run with seed + k, as KSamplerAdvanced on a batch of 1
    max_concurrency = 1
    remote = False

    def __init__(self, model, clip, vae, sampler_name: str, scheduler: str):
        for name, value in (("model", model), ("clip", clip), ("vae", vae)):
            if value is None:
                raise InputError(f"the {name} input is empty: connect a checkpoint loader's {name.upper()} output "
                                 f"(this checkpoint may not contain one; load it with a separate loader).")
        self.model, self.clip, self.vae = model, clip, vae
        self.sampler_name, self.scheduler = sampler_name, scheduler
        self.size_rule = SizeRule(max_edge=None, multiple=vae_multiple(vae), mode="pad")
        self._last_conditioning = None  # (clip, prompt, negative prompt, (positive, negative)) of the last encode

    def describe(self) -> dict[str, Any]:
        config = getattr(getattr(self.model, "model", None), "model_config", None)
        return {"provider": self.name, "model": type(config).__name__ if config is not None else "unknown",
                "sampler": self.sampler_name, "scheduler": self.scheduler,
                "inpaint_model": takes_masked_picture(self.model)}

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
            model, positive, negative, latent = self._conditioning(request)
            samples = self._sample(model, seed, request, positive, negative, latent, hooks)
            decoded = self.vae.decode(samples)
        picture = decoded.reshape(-1, *decoded.shape[-3:])[0].float().cpu()
        return EditResult(images=[picture], seeds=[seed])

    def _conditioning(self, request: EditRequest):
        """(model, positive, negative, latent) as the core nodes would give them for this request."""
        import nodes

        positive, negative = self._encode_prompts(request.prompt, request.negative_prompt)
        pixels = request.image[None, :, :, :3]
        if request.mask is None:
            return self.model, positive, negative, {"samples": self.vae.encode(pixels)}
        mask = request.mask[None]
        if takes_masked_picture(self.model):
            positive, negative, latent = nodes.InpaintModelConditioning().encode(
                positive, negative, pixels, self.vae, mask, noise_mask=True)
            return self.model, positive, negative, latent
        latent = nodes.SetLatentNoiseMask().set_mask({"samples": self.vae.encode(pixels)}, mask)[0]
        return self._soft_mask_model(mask), positive, negative, latent

    def _encode_prompts(self, prompt: str, negative_prompt: str):
        """(positive, negative) from CLIPTextEncode, encoded once for the same clip and texts.

        run_edit calls edit() once per sample and picture, while the core graph encodes once; so the
        last pair is kept (one pair: nothing grows) and reused while clip and texts are the same.
        Reusing it is what ComfyUI's cache does with a CLIPTextEncode output: nothing downstream
        changes a conditioning in place (node_helpers.conditioning_set_values copies).
        """
        last = self._last_conditioning
        if last is not None and last[0] is self.clip and last[1:3] == (prompt, negative_prompt):
            return last[3]
        import nodes

        encoder = nodes.CLIPTextEncode()
        encoded = (encoder.encode(self.clip, prompt)[0], encoder.encode(self.clip, negative_prompt)[0])
        self._last_conditioning = (self.clip, prompt, negative_prompt, encoded)
        return encoded

    def _soft_mask_model(self, mask):
        """The model, with core's DifferentialDiffusion on a clone when the mask has soft values."""
        if not has_soft_values(mask):
            return self.model
        from comfy_extras.nodes_differential_diffusion import DifferentialDiffusion

        return DifferentialDiffusion.execute(self.model).result[0]

    def _sample(self, model, seed: int, request: EditRequest, positive, negative, latent: dict, hooks: Hooks):
        """nodes.common_ksampler as KSamplerAdvanced calls it, with our Cancel check at each step."""
        import comfy.sample
        import comfy.utils
        import latent_preview

        latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
        preview_and_progress = latent_preview.prepare_callback(model, request.steps)

        def callback(step, x0, x, total_steps):
            # run_edit's stop flag: ComfyUI's interrupt flag may already be read and cleared by then
            hooks.check_cancelled()
            preview_and_progress(step, x0, x, total_steps)

        return comfy.sample.sample(
            model, noise, request.steps, request.guidance, self.sampler_name, self.scheduler, positive, negative,
            latent_image, denoise=1.0, disable_noise=False,
            start_step=request.steps - int(request.steps * request.strength), last_step=request.steps,
            force_full_denoise=True, noise_mask=latent.get("noise_mask"), callback=callback,
            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)


class ImgEditComfyModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        import comfy.samplers  # ComfyUI's own lists, so new samplers and schedulers appear by themselves

        samplers, schedulers = list(comfy.samplers.KSampler.SAMPLERS), list(comfy.samplers.KSampler.SCHEDULERS)
        return io.Schema(
            node_id="ImgEditComfyModel",
            display_name="ImgEdit ComfyUI Model",
            category="ImgEdit/providers",
            description="Run ImgEdit Img2Img / Inpaint locally on a MODEL, CLIP and VAE from any loader (checkpoint, "
                        "UNET + CLIP + VAE loaders, LoRA and other patches), sampled by ComfyUI exactly as "
                        "KSamplerAdvanced. " + STEPS_MEANING,
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model, e.g. from Load Checkpoint (patched models work). "
                                                "Inpainting models (9-channel) get the masked picture as input."),
                io.Clip.Input("clip", tooltip="Encodes the edit node's prompt and negative prompt, as CLIPTextEncode."),
                io.Vae.Input("vae", tooltip="Encodes the picture and decodes the result; pictures are padded to its "
                                            "multiple (8 for SD) and cropped back."),
                io.Combo.Input("sampler_name", options=samplers, default="euler" if "euler" in samplers else samplers[0],
                               tooltip="ComfyUI's sampler, as in KSampler. " + STEPS_MEANING),
                io.Combo.Input("scheduler", options=schedulers,
                               default="normal" if "normal" in schedulers else schedulers[0],
                               tooltip="ComfyUI's scheduler for the `steps`-step schedule; strength picks how many "
                                       "of its last steps run."),
            ],
            outputs=[PROVIDER.Output(display_name="provider",
                                     tooltip="Connect to ImgEdit Img2Img or ImgEdit Inpaint.")],
        )

    @classmethod
    def execute(cls, model, clip, vae, sampler_name, scheduler) -> io.NodeOutput:
        return io.NodeOutput(ComfyModelProvider(model, clip, vae, sampler_name, scheduler))


NODES = [ImgEditComfyModel]
