"""Stable Diffusion API v3 (stablediffusionapi.com, ModelsLab's older brand): img2img and inpaint.

``POST {IMGEDIT_SDAPI_URL}/api/v3/img2img`` or ``/api/v3/inpaint``, JSON with ``key`` (the
ModelsLab key: same vendor), ``processing`` answers polled with ``POST /api/v3/fetch/{id}``.
Steps are snapped to the documented 21 / 31 / 41 / 51 (said in the warnings). The v3 pages want
public image links, so pictures go up through ModelsLab's documented ``base64_to_url``
(``IMGEDIT_MODELSLAB_URL``, same key) unless ``image_transport="base64"`` (unverified).
"""

from __future__ import annotations

from typing import Any

from ..request import EditRequest
from .base import v_any, v_url, v_yesno
from .modelslab_base import ModelsLabFamily

STEP_VALUES = (21, 31, 41, 51)


def snap_steps(steps: int) -> int:
    """The documented step count nearest to ``steps`` (ties go up)."""
    return min(STEP_VALUES, key=lambda v: (abs(v - int(steps)), -v))


class SDAPIClient(ModelsLabFamily):
    """Stable Diffusion API v3 img2img / inpaint (1-4 samples per call)."""

    service = "sdapi"
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
        steps = snap_steps(int(request.steps))
        if steps != int(request.steps):
            warnings.append(f"Stable Diffusion API v3 takes 21, 31, 41 or 51 steps; {int(request.steps)} was sent as {steps}.")
        body = self.common_body(request, steps, warnings)
        body.update(options)
        return body, warnings


__all__ = ["SDAPIClient", "STEP_VALUES", "snap_steps"]
