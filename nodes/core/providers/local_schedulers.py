"""The schedulers the local provider offers: the table, names refused with a reason, and how many
UNet evaluations a run costs (what the cancel and progress tests count).

Nothing here imports torch, diffusers or ComfyUI, so the provider node can list the names cheaply
when ComfyUI asks for its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import InputError


@dataclass(frozen=True)
class SchedulerInfo:
    """One entry of the scheduler list.

    ``calls_per_step`` and ``extra_calls`` give the UNet evaluations of a run of ``n`` denoising
    steps: ``calls_per_step * n - (calls_per_step - 1) + extra_calls`` (second-order schedulers
    evaluate twice per step except the last; PNDM/PLMS makes one warm-up evaluation).
    """

    name: str
    class_name: Optional[str]
    karras: bool = False
    calls_per_step: int = 1
    extra_calls: int = 0
    overrides: tuple = ()
    note: str = ""


_S = SchedulerInfo
# "default" plus the ModelsLab scheduler names that run img2img and inpaint (each verified by a
# test that runs it on the tiny SD, SD-inpaint and SDXL models).
SCHEDULERS: dict[str, SchedulerInfo] = {s.name: s for s in [
    _S("default", None, note="the scheduler saved with the model"),
    _S("DDPMScheduler", "DDPMScheduler"),
    _S("DDIMScheduler", "DDIMScheduler"),
    _S("PNDMScheduler", "PNDMScheduler", extra_calls=1, overrides=(("skip_prk_steps", True),),
       note="PLMS (skip_prk_steps) as in SD 1.5; one warm-up UNet call"),
    _S("LMSDiscreteScheduler", "LMSDiscreteScheduler", karras=True),
    _S("EulerDiscreteScheduler", "EulerDiscreteScheduler", karras=True),
    _S("EulerAncestralDiscreteScheduler", "EulerAncestralDiscreteScheduler"),
    _S("DPMSolverMultistepScheduler", "DPMSolverMultistepScheduler", karras=True),
    _S("HeunDiscreteScheduler", "HeunDiscreteScheduler", karras=True, calls_per_step=2,
       note="second order: two UNet calls per step"),
    _S("KDPM2DiscreteScheduler", "KDPM2DiscreteScheduler", karras=True, calls_per_step=2,
       note="second order: two UNet calls per step"),
    _S("DPMSolverSinglestepScheduler", "DPMSolverSinglestepScheduler", karras=True),
    _S("KDPM2AncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler", karras=True, calls_per_step=2,
       note="second order: two UNet calls per step"),
    _S("UniPCMultistepScheduler", "UniPCMultistepScheduler", karras=True),
    _S("DEISMultistepScheduler", "DEISMultistepScheduler", karras=True),
    _S("LCMScheduler", "LCMScheduler", note="for LCM-distilled models or LCM LoRAs (few steps, low guidance)"),
]}

# ModelsLab names left out, with the reason (each verified by running it in diffusers 0.42).
EXCLUDED_SCHEDULERS: dict[str, str] = {
    "DDIMInverseScheduler": "it runs DDIM backwards (image to noise, for inversion) and has no add_noise, "
                            "so it cannot start from a partly noised image",
    "IPNDMScheduler": "it has no add_noise, so it cannot start img2img or inpaint from a partly noised image",
    "KarrasVeScheduler": "deprecated in diffusers and made for unconditional variance-exploding models; "
                         "its step API does not fit Stable Diffusion pipelines",
    "ScoreSdeVeScheduler": "made for score-SDE variance-exploding models; it fails inside Stable Diffusion "
                           "pipelines",
}

# class name -> info, for "default" (the model's own scheduler)
_BY_CLASS = {s.class_name: s for s in SCHEDULERS.values() if s.class_name}


def scheduler_names() -> list[str]:
    return list(SCHEDULERS)


def scheduler_info(name: str) -> SchedulerInfo:
    try:
        return SCHEDULERS[name]
    except KeyError:
        if name in EXCLUDED_SCHEDULERS:
            raise InputError(f"scheduler {name} cannot run img2img or inpaint: {EXCLUDED_SCHEDULERS[name]}.") from None
        raise InputError(f"scheduler '{name}' is unknown; choose one of: {', '.join(SCHEDULERS)}.") from None


def scheduler_info_for_class(class_name: str) -> SchedulerInfo:
    """The table entry for a diffusers scheduler class (first order, no Karras if unknown)."""
    return _BY_CLASS.get(class_name, SchedulerInfo(class_name, class_name))


def denoising_steps(steps: int, strength: float) -> int:
    """Denoising steps of an img2img/inpaint run: ``int(steps * strength)``, capped at ``steps``."""
    return min(int(steps * strength), steps)


def unet_calls(info: SchedulerInfo, steps: int, strength: float) -> int:
    """UNet evaluations (with CFG batched) of a run, per :class:`SchedulerInfo`'s formula."""
    n = denoising_steps(steps, strength)
    if n < 1:
        return 0
    return info.calls_per_step * n - (info.calls_per_step - 1) + info.extra_calls
