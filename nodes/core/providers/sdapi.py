"""Stable Diffusion API v3 (stablediffusionapi.com, ModelsLab's older brand): img2img and inpaint.

``POST {IMGEDIT_SDAPI_URL}/api/v3/img2img`` or ``/api/v3/inpaint``, JSON with ``key`` (the
ModelsLab key: same vendor), ``processing`` answers polled with ``POST /api/v3/fetch/{id}``.
Steps are snapped to the documented 21 / 31 / 41 / 51 (said in the warnings). The v3 pages want
public image links, so pictures go up through ModelsLab's documented ``base64_to_url``
(``IMGEDIT_MODELSLAB_URL``, same key) unless ``image_transport="base64"`` (unverified).
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..request import EditRequest
from .base import clamp_to_range, v_any, v_url, v_yesno
from .modelslab import ModelsLabFamily

STEP_VALUES = (21, 31, 41, 51)


def snap_steps(steps: int) -> int:
    """The documented step count nearest to ``steps`` (ties go up)."""
    return min(STEP_VALUES, key=lambda v: (abs(v - int(steps)), -v))


class SDAPIClient(ModelsLabFamily):
    """Stable Diffusion API v3 img2img / inpaint (1-4 samples per call)."""

    name = "sdapi"
    service = "sdapi"
    key_service = "sdapi"
    label = "Stable Diffusion API"
    IMG2IMG_PATH = "/api/v3/img2img"
    INPAINT_PATH = "/api/v3/inpaint"
    FETCH_PATH = "/api/v3/fetch/{id}"
    PARAMS = {
        "safety_checker": v_yesno,
        "enhance_prompt": v_yesno,
        "base64": v_yesno,
        "webhook": v_url,
        "track_id": v_any,
    }

    def __init__(self, *, enhance_prompt: bool = False, safety_checker: bool = True, **common: Any):
        super().__init__(**common)
        self.enhance_prompt = bool(enhance_prompt)
        self.safety_checker = bool(safety_checker)

    def public_options(self) -> dict[str, Any]:
        return {
            "enhance_prompt": self.enhance_prompt,
            "safety_checker": self.safety_checker,
            "image_transport": self.image_transport,
            "fail_on_nsfw": self.fail_on_nsfw,
        }

    def build_payload(self, request: EditRequest) -> tuple[dict[str, Any], list[str]]:
        """The JSON body for ``request`` without the key and the images (PROVIDERS.md §2, §6)."""
        options, warnings = self.merged_options(request)
        width, height = request.size
        steps = snap_steps(int(request.steps))
        if steps != int(request.steps):
            warnings.append(f"Stable Diffusion API v3 takes 21, 31, 41 or 51 steps; {int(request.steps)} was sent as {steps}.")
        guidance = clamp_to_range(float(request.guidance), 1.0, 20.0, "guidance", "Stable Diffusion API", warnings)
        if not 1 <= int(request.samples) <= 4:
            raise InputError(f"samples per Stable Diffusion API call is {request.samples}; use 1 to 4.")
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "width": width,
            "height": height,
            "samples": int(request.samples),
            "num_inference_steps": steps,
            "safety_checker": "yes" if self.safety_checker else "no",
            "enhance_prompt": "yes" if self.enhance_prompt else "no",
            "guidance_scale": guidance,
            "strength": float(request.strength),
            "seed": None if request.seed is None else int(request.seed),
            "base64": "no",
        }
        body.update(options)
        return body, warnings


__all__ = ["SDAPIClient", "STEP_VALUES", "snap_steps"]
