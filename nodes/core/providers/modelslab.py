"""ModelsLab v6 community-model img2img / inpaint (queued jobs), and what SD API v3 shares with it.

``POST {IMGEDIT_MODELSLAB_URL}/api/v6/images/img2img`` or ``/api/v6/images/inpaint`` with a JSON
body carrying ``key``; ``status: processing`` answers are polled with
``POST /api/v6/images/fetch/{id}`` (body ``key`` + ``request_id``) after about ``eta`` seconds.
Images go up through the documented ``POST /api/v6/base64_to_url`` (a link valid 24 h) by
default, or inline as ``data:image/png;base64,`` strings (``image_transport="base64"``, unverified).
The fetch URL is built from the configured host and the job id; a ``fetch_result`` link from the
answer is used only when it is on that same host (so the key never goes anywhere else).
"""

from __future__ import annotations

from typing import Any, Optional
from urllib.parse import quote

from ..errors import InputError, ProviderFailed
from ..request import EditRequest, EditResult, Hooks
from .base import (
    clamp_to_range,
    RemoteProvider,
    data_uri,
    mask_png,
    png_bytes,
    v_any,
    v_choice,
    v_float,
    v_int,
    v_text,
    v_url,
    v_yesno,
)
from .http import HttpCall, ProviderHttp, body_message, error_for, same_origin
from .jobs import JobState, collect_images, job_check, poll, submit, submit_or_resume, to_int, to_list

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
IMAGE_TRANSPORTS = ("upload", "base64")
IP_ADAPTERS = ("ip-adapter_sdxl", "ip-adapter_sd15", "ip-adapter-plus-face_sd15", "ip-adapter-plus_sdxl_vit-h",
               "ip-adapter-plus-face_sdxl_vit-h")

IMG2IMG_PATH = "/api/v6/images/img2img"
INPAINT_PATH = "/api/v6/images/inpaint"
FETCH_PATH = "/api/v6/images/fetch/{id}"
UPLOAD_PATH = "/api/v6/base64_to_url"
UPLOAD_MAX_BYTES = 5 * 1024 * 1024


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


def upload_png(call: HttpCall, key: str, png: bytes) -> str:
    """``POST /api/v6/base64_to_url``: a PNG in, a temporary public link out (ModelsLab, 24 h)."""
    if len(png) > UPLOAD_MAX_BYTES:
        raise InputError(f"the picture is {len(png) / 1e6:.1f} MB as PNG; ModelsLab's upload takes at most 5 MB "
                         f"(use image_transport 'base64' or a smaller picture).")
    box: dict = {}

    def check(response: Any) -> None:
        data = call.json_of(response)
        status = str(data.get("status", "")).lower() if isinstance(data, dict) else ""
        if status in ("error", "failed") or not isinstance(data, dict):
            message, fields = body_message(data)
            raise error_for(call.service, message or "upload refused", fields=fields, state=status or "error")
        links = []
        for name in ("output", "link", "url", "data", "image_url"):
            links = [u for u in to_list(data.get(name)) if u.lower().startswith(("http://", "https://"))]
            if links:
                break
        if not links:
            raise ProviderFailed(f"{call.label}'s base64_to_url answered without a link.", provider=call.service)
        box["url"] = links[0]

    call.request("POST", call.http.url(UPLOAD_PATH), json={"key": key, "base64_string": data_uri(png)},
                 idempotent=True, check=check)
    return box["url"]


class ModelsLabFamily(RemoteProvider):
    """ModelsLab v6 and SD API v3 share a protocol: JSON + key, processing -> fetch."""

    max_samples_per_call = 4
    MAX_CONCURRENCY = 15
    IMG2IMG_PATH = IMG2IMG_PATH
    INPAINT_PATH = INPAINT_PATH
    FETCH_PATH = FETCH_PATH

    def __init__(self, *, image_transport: str = "upload", **common: Any):
        super().__init__(**common)
        if image_transport not in IMAGE_TRANSPORTS:
            raise InputError(f"image_transport is {image_transport!r}; use one of {', '.join(IMAGE_TRANSPORTS)}.")
        self.image_transport = image_transport

    def call_identity(self, request: EditRequest) -> dict[str, Any]:
        path = self.INPAINT_PATH if request.is_inpaint else self.IMG2IMG_PATH
        return {"endpoint": self.http.url(path), "fields": self.build_payload(request)[0]}

    # Subclasses: the request body without key and images.
    def build_payload(self, request: EditRequest) -> tuple[dict[str, Any], list[str]]:  # pragma: no cover
        raise NotImplementedError

    def upload_http(self) -> ProviderHttp:
        return self.http if self.http.service == "modelslab" else self.http.for_service("modelslab")

    def _send_images(self, call: HttpCall, key: str, request: EditRequest, hooks: Hooks) -> tuple[str, Optional[str]]:
        init = png_bytes(request.image)
        mask = None if request.mask is None else mask_png(request.mask, rgb=True)
        if self.image_transport == "base64":
            return data_uri(init), (None if mask is None else data_uri(mask))
        http = self.upload_http()
        if http is self.http:
            return upload_png(call, key, init), (None if mask is None else upload_png(call, key, mask))
        with http.open(hooks, max(1.0, call.remaining()), [key]) as upload_call:
            return (upload_png(upload_call, key, init),
                    None if mask is None else upload_png(upload_call, key, mask))

    def fetch_url(self, job: JobState) -> str:
        if job.job_id:
            return self.http.url(self.FETCH_PATH.format(id=quote(job.job_id, safe="")))
        if job.fetch_url and same_origin(job.fetch_url, self.http.base_url):
            return job.fetch_url
        raise ProviderFailed(f"{self.label} queued the job without an id to fetch it by.", provider=self.service)

    def fetch(self, call: HttpCall, key: str, job: JobState) -> JobState:
        box: dict = {}
        body: dict[str, Any] = {"key": key}
        if job.job_id:
            body["request_id"] = job.job_id
        call.request("POST", self.fetch_url(job), json=body, idempotent=True, check=job_check(call, box))
        return box["job"]

    def edit(self, request: EditRequest, hooks: Hooks) -> EditResult:
        payload, warnings = self.build_payload(request)
        key = self.resolve_key()
        path = self.INPAINT_PATH if request.is_inpaint else self.IMG2IMG_PATH
        with self.http.open(hooks, self.deadline_s, [key]) as call:
            def send() -> JobState:
                call.progress(f"{self.label}: sending")
                init, mask = self._send_images(call, key, request, hooks)
                body = {"key": key, **payload, "init_image": init}
                if mask is not None:
                    body["mask_image"] = mask
                return submit(call, self.http.url(path), body,
                              progress_text=lambda elapsed: f"{self.label}: submitting, {elapsed:.0f} s elapsed")

            fetch = lambda current: self.fetch(call, key, current)  # noqa: E731
            job = poll(call, submit_or_resume(call, send, fetch), fetch)
            pictures, notes = collect_images(call, job, samples=request.samples, size=request.size,
                                             fail_on_nsfw=self.fail_on_nsfw)
            warnings.extend(n for n in notes if n not in warnings)
            ran = to_int(job.meta.get("steps")) if job.meta else None
            asked = to_int(payload.get("num_inference_steps"))
            if ran is not None and asked is not None and ran != asked:
                warnings.append(f"{self.label} ran {ran} steps where {asked} were asked.")
            metadata: dict[str, Any] = {}
            if job.generation_time is not None:
                metadata["generation_time_s"] = round(job.generation_time, 3)
            call.progress(f"{self.label}: done", done=True)
            return EditResult(
                images=pictures,
                seeds=[job.seed if job.seed is not None else request.seed] * len(pictures),
                job_ids=[job.job_id] if job.job_id else [],
                metadata=metadata,
                warnings=[call.redact(w) for w in warnings],
            )


class ModelsLabClient(ModelsLabFamily):
    """ModelsLab v6 community models: img2img and inpaint (1-4 samples per call)."""

    name = "modelslab"
    service = "modelslab"
    key_service = "modelslab"
    label = "ModelsLab"
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
        enhance_prompt: bool = False,
        safety_checker: bool = True,
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
        self.enhance_prompt = bool(enhance_prompt)
        self.safety_checker = bool(safety_checker)
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
        width, height = request.size
        guidance = clamp_to_range(float(request.guidance), 1.0, 20.0, "guidance", "ModelsLab", warnings)
        steps = int(request.steps)
        body: dict[str, Any] = {
            "model_id": self.model_id,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "width": width,
            "height": height,
            "samples": int(request.samples),
            "num_inference_steps": steps,
            "guidance_scale": guidance,
            "strength": float(request.strength),
            "seed": None if request.seed is None else int(request.seed),
            "enhance_prompt": "yes" if self.enhance_prompt else "no",
            "safety_checker": "yes" if self.safety_checker else "no",
            "safety_checker_type": self.safety_checker_type,
            "use_karras_sigmas": "yes" if self.use_karras_sigmas else "no",
            "tomesd": "yes" if self.tomesd else "no",
            "base64": "no",
        }
        if request.is_inpaint:
            body["steps"] = steps  # the inpaint page's example uses "steps" (PROVIDERS.md §3)
        if self.scheduler:
            body["scheduler"] = self.scheduler
        if self.clip_skip:
            body["clip_skip"] = self.clip_skip
        if self.lora_model:
            body["lora_model"] = self.lora_model
            if self.lora_strength:
                body["lora_strength"] = self.lora_strength
        if self.vae:
            body["vae"] = self.vae
        if self.algorithm_type != "none":
            body["algorithm_type"] = self.algorithm_type
        body.update(options)
        if body.get("algorithm_type") == "dpmsolver+++" and body.get("scheduler") != "DPMSolverMultistepScheduler":
            warnings.append("algorithm_type dpmsolver+++ only applies with DPMSolverMultistepScheduler.")
        if not 1 <= int(request.samples) <= 4:
            raise InputError(f"samples per ModelsLab call is {request.samples}; use 1 to 4.")
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
