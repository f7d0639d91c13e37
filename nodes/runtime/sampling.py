"""Sampling as KSamplerAdvanced does it (``nodes.common_ksampler``), with the pack's Cancel check per step.

add_noise on, start_at_step = steps - int(steps * strength), end_at_step = steps, no leftover noise;
each step reports to ComfyUI's progress bar with the latent preview of the model's own latent format
(``latent_preview.prepare_callback``), as KSampler does, for every model family.
"""

from __future__ import annotations

from ..core.request import EditRequest, Hooks


def sample(model, seed: int, request: EditRequest, cfg: float, sampler_name: str, scheduler: str,
           positive, negative, latent: dict, hooks: Hooks):
    """The denoised latent samples; ``comfy.sample.sample`` is looked up at call time (tests wrap it)."""
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
        model, noise, request.steps, cfg, sampler_name, scheduler, positive, negative,
        latent_image, denoise=1.0, disable_noise=False,
        start_step=request.steps - int(request.steps * request.strength), last_step=request.steps,
        force_full_denoise=True, noise_mask=latent.get("noise_mask"), callback=callback,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
