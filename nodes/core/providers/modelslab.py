"""ModelsLab v6 community-model img2img / inpaint (queued jobs).

``POST {IMGEDIT_MODELSLAB_URL}/api/v6/images/img2img`` or ``/api/v6/images/inpaint`` with a JSON
body carrying ``key``; ``status: processing`` answers are polled with
``POST /api/v6/images/fetch/{id}`` (body ``key`` + ``request_id``) after about ``eta`` seconds.
Images go up through the documented ``POST /api/v6/base64_to_url`` (a link valid 24 h) by
default, or inline as ``data:image/png;base64,`` strings (``image_transport="base64"``, unverified).
What SD API v3 shares with it lives in :mod:`.modelslab_base`.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..request import EditRequest
from .base import v_any, v_choice, v_float, v_int, v_text, v_url, v_yesno
from .modelslab_base import IMAGE_TRANSPORTS, ModelsLabFamily, upload_png, yes_no

#: The 18 schedulers of the ModelsLab v6 img2img page (seed 002).
SCHEDULERS = (
    "DDPMScheduler",
    "DDIMScheduler",
    "PNDMScheduler",
    "LMSDiscreteScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "DPMSolverSinglestepScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "UniPCMultistepScheduler",
    "DDIMInverseScheduler",
    "DEISMultistepScheduler",
    "IPNDMScheduler",
    "KarrasVeScheduler",
    "ScoreSdeVeScheduler",
    "LCMScheduler",
)
SAFETY_CHECKER_TYPES = ("sensitive_content_text", "blur", "pixelate", "black")
ALGORITHM_TYPES = ("none", "dpmsolver+++")
IP_ADAPTERS = ("ip-adapter_sdxl", "ip-adapter_sd15", "ip-adapter-plus-face_sd15", "ip-adapter-plus_sdxl_vit-h",
               "ip-adapter-plus-face_sdxl_vit-h")



def v_lora_strength(name: str, value: Any) -> Any:
    """Comma-separated strengths, each 0.1-1 (one per LoRA)."""
    if value is None or value == "":
        return None
    parts = [p.strip() for p in str(value).split(",")]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"{name} must be numbers from 0.1 to 1, comma-separated (one per LoRA).") from None
    if any(not 0.1 <= n <= 1.0 for n in numbers):
        raise InputError(f"{name} is {value!r}; each strength must be from 0.1 to 1.")
    return ",".join(f"{n:g}" for n in numbers)


class ModelsLabClient(ModelsLabFamily):
    """ModelsLab v6 community models: img2img and inpaint (1-4 samples per call)."""

    service = "modelslab"
    IMG2IMG_PATH = "/api/v6/images/img2img"
    INPAINT_PATH = "/api/v6/images/inpaint"
    FETCH_PATH = "/api/v6/images/fetch/{id}"
    PARAMS = {
        "model_id": v_text(200),
        "scheduler": v_choice(*SCHEDULERS),
        "use_karras_sigmas": v_yesno,
        "algorithm_type": v_choice(*ALGORITHM_TYPES),
        "clip_skip": v_int(1, 8),
        "lora_model": v_text(1000),
        "lora_strength": v_lora_strength,
        "vae": v_text(200),
        "tomesd": v_yesno,
        "enhance_prompt": v_yesno,
        "enhance_style": v_text(100),
        "safety_checker": v_yesno,
        "safety_checker_type": v_choice(*SAFETY_CHECKER_TYPES),
        "ip_adapter_id": v_choice(*IP_ADAPTERS),
        "ip_adapter_scale": v_float(0.0, 1.0),
        "ip_adapter_image": v_url,
        "embeddings_model": v_text(200),
        "multi_lingual": v_yesno,
        "base64": v_yesno,
        "temp": v_yesno,
        "webhook": v_url,
        "track_id": v_any,
    }

    def __init__(
        self,
        *,
        model_id: str = "realistic-vision-51",
        scheduler: str = "",
        use_karras_sigmas: bool = True,
        clip_skip: int = 0,
        lora_model: str = "",
        lora_strength: str = "",
        vae: str = "",
        safety_checker_type: str = "sensitive_content_text",
        tomesd: bool = True,
        algorithm_type: str = "none",
        **common: Any,
    ):
        super().__init__(**common)
        self.model_id = str(v_text(200)("model_id", model_id) or "").strip()
        if not self.model_id and "model_id" not in self.extra:
            raise InputError("model_id is empty; ModelsLab needs one, e.g. realistic-vision-51 (see modelslab.com/models).")
        scheduler = "" if scheduler in (None, "", "default") else scheduler
        self.scheduler = v_choice(*SCHEDULERS)("scheduler", scheduler) if scheduler else ""
        self.use_karras_sigmas = bool(use_karras_sigmas)
        clip_skip = int(clip_skip or 0)
        self.clip_skip = 0 if clip_skip == 0 else v_int(1, 8)("clip_skip", clip_skip)
        self.lora_model = ",".join(p.strip() for p in str(lora_model or "").split(",") if p.strip())
        self.lora_strength = v_lora_strength("lora_strength", lora_strength) if self.lora_model else None
        if self.lora_model and self.lora_strength and \
                len(self.lora_strength.split(",")) != len(self.lora_model.split(",")):
            raise InputError("lora_strength needs one value per LoRA in lora_model (comma-separated).")
        self.vae = str(vae or "").strip()
        self.safety_checker_type = v_choice(*SAFETY_CHECKER_TYPES)("safety_checker_type", safety_checker_type)
        self.tomesd = bool(tomesd)
        self.algorithm_type = v_choice(*ALGORITHM_TYPES)("algorithm_type", algorithm_type or "none")

    def public_options(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "scheduler": self.scheduler,
            "use_karras_sigmas": self.use_karras_sigmas,
            "clip_skip": self.clip_skip or None,
            "lora_model": self.lora_model,
            "lora_strength": self.lora_strength,
            "vae": self.vae,
            "enhance_prompt": self.enhance_prompt,
            "safety_checker": self.safety_checker,
            "safety_checker_type": self.safety_checker_type,
            "tomesd": self.tomesd,
            "algorithm_type": self.algorithm_type,
            "image_transport": self.image_transport,
            "fail_on_nsfw": self.fail_on_nsfw,
        }

    def build_payload(self, request: EditRequest) -> tuple[dict[str, Any], list[str]]:
        """The JSON body for ``request`` without the key and the images (PROVIDERS.md §3, §6)."""
        options, warnings = self.merged_options(request)
        steps = int(request.steps)
        body = self.common_body(request, steps, warnings)
        body.update({
            "model_id": self.model_id,
            "safety_checker_type": self.safety_checker_type,
            "use_karras_sigmas": yes_no(self.use_karras_sigmas),
            "tomesd": yes_no(self.tomesd),
        })
        if request.is_inpaint:
            body["steps"] = steps  # the inpaint page's example uses "steps" (PROVIDERS.md §3)
        optional = {"scheduler": self.scheduler, "clip_skip": self.clip_skip, "lora_model": self.lora_model,
                    "lora_strength": self.lora_strength if self.lora_model else None, "vae": self.vae,
                    "algorithm_type": None if self.algorithm_type == "none" else self.algorithm_type}
        body.update({name: value for name, value in optional.items() if value})
        body.update(options)
        if body.get("algorithm_type") == "dpmsolver+++" and body.get("scheduler") != "DPMSolverMultistepScheduler":
            warnings.append("algorithm_type dpmsolver+++ only applies with DPMSolverMultistepScheduler.")
        return body, warnings


__all__ = [
    "ModelsLabClient",
    "ModelsLabFamily",
    "SCHEDULERS",
    "SAFETY_CHECKER_TYPES",
    "ALGORITHM_TYPES",
    "IMAGE_TRANSPORTS",
    "upload_png",
]
