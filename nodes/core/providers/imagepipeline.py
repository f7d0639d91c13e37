"""ImagePipeline legacy API (api.imagepipeline.io, as in seed 003): SDXL / SD1.5 img2img and inpainting.

``POST {IMGEDIT_IMAGEPIPELINE_URL}/sdxl/image2image/v1`` (``/sdxl/inpainting/v1``, ``/sd/...``),
header ``API-Key``, JSON body; ``PENDING`` answers are polled with
``GET <same path>/status/{id}`` until ``SUCCESS`` (``download_urls``) or ``FAILURE``. Status
words are compared case-insensitively and unknown ones are treated as "still running" until the
deadline. The documents want public image links: pass ``init_image_url`` / ``mask_image_url``
when you have them; otherwise the pictures are sent inline as ``data:image/png;base64,`` URIs,
which is **unverified against the live service**.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ..errors import InputError, ProviderFailed
from ..request import EditRequest, EditResult, Hooks
from .base import RemoteProvider, clamp_to_range, data_uri, mask_png, png_bytes, v_bool, v_text, v_url
from .http import HttpCall
from .jobs import JobState, job_check, poll, sample_seeds, submit
from .outputs import collect_images
from .resume import submit_or_resume

FAMILIES = ("sdxl", "sd")
DEFAULT_MODEL = {"sdxl": "sdxl", "sd": "sd1.5"}
PATHS = {
    ("sdxl", False): "/sdxl/image2image/v1",
    ("sdxl", True): "/sdxl/inpainting/v1",
    ("sd", False): "/sd/image2image/v1",
    ("sd", True): "/sd/inpainting/v1",
}


class ImagePipelineClient(RemoteProvider):
    """ImagePipeline legacy img2img / inpainting (1-4 samples per call)."""

    service = "imagepipeline"
    PARAMS = {
        "model_id": v_text(200),
        "refiner": v_bool,
        "safety_checker": v_bool,
        "scheduler": v_text(100),
        "server_id": v_text(200),
    }

    def __init__(
        self,
        *,
        family: str = "sdxl",
        model_id: str = "",
        scheduler: str = "",
        refiner: bool = False,
        safety_checker: bool = True,
        init_image_url: str = "",
        mask_image_url: str = "",
        **common: Any,
    ):
        super().__init__(**common)
        if family not in FAMILIES:
            raise InputError(f"family is {family!r}; use one of {', '.join(FAMILIES)}.")
        self.family = family
        self.model_id = str(model_id or "").strip() or DEFAULT_MODEL[family]
        self.scheduler = str(scheduler or "").strip()
        self.refiner = bool(refiner)
        self.safety_checker = bool(safety_checker)
        self.init_image_url = v_url("init_image_url", init_image_url)
        self.mask_image_url = v_url("mask_image_url", mask_image_url)

    def public_options(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "model_id": self.model_id,
            "scheduler": self.scheduler,
            "refiner": self.refiner,
            "safety_checker": self.safety_checker,
            "init_image_url": self.init_image_url,
            "mask_image_url": self.mask_image_url,
            "fail_on_nsfw": self.fail_on_nsfw,
        }

    def path(self, request: EditRequest) -> str:
        return PATHS[(self.family, request.is_inpaint)]

    def build_payload(self, request: EditRequest) -> tuple[dict[str, Any], list[str]]:
        """The JSON body for ``request`` with the images (links or data: URIs), no key."""
        options, warnings = self.merged_options(request)
        width, height = request.size
        steps = int(clamp_to_range(int(request.steps), 1, 100, "steps", "ImagePipeline", warnings))
        guidance = clamp_to_range(float(request.guidance), 1.0, 20.0, "guidance", "ImagePipeline", warnings)
        if not 1 <= int(request.samples) <= 4:
            raise InputError(f"samples per ImagePipeline call is {request.samples}; use 1 to 4.")
        body: dict[str, Any] = {
            "model_id": self.model_id,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "num_inference_steps": steps,
            "strength": float(request.strength),
            "samples": int(request.samples),
            "guidance_scale": guidance,
            "width": width,
            "height": height,
            "safety_checker": self.safety_checker,
            "refiner": self.refiner,
        }
        if request.seed is not None:
            body["seed"] = int(request.seed)
        if self.scheduler:
            body["scheduler"] = self.scheduler
        if self.init_image_url:
            body["init_image"] = self.init_image_url
        else:
            body["init_image"] = data_uri(png_bytes(request.image))
        if request.is_inpaint:
            if self.mask_image_url:
                body["mask_image"] = self.mask_image_url
            else:
                body["mask_image"] = data_uri(mask_png(request.mask, rgb=True))
        elif self.mask_image_url:
            warnings.append("mask_image_url is ignored for img2img (no mask).")
        body.update(options)
        return body, warnings

    def call_identity(self, request: EditRequest) -> dict[str, Any]:
        body = self.build_payload(request)[0]
        for name in ("init_image", "mask_image"):  # data: URIs of the pictures, which the journal hashes itself
            if str(body.get(name, "")).startswith("data:"):
                del body[name]
        return {"endpoint": self.http.url(self.path(request)), "fields": body}

    def status_url(self, request: EditRequest, job: JobState) -> str:
        if not job.job_id:
            raise ProviderFailed("ImagePipeline queued the job without an id to ask its status by.",
                                 provider=self.service)
        return self.http.url(f"{self.path(request)}/status/{quote(job.job_id, safe='')}")

    def fetch(self, call: HttpCall, key: str, request: EditRequest, job: JobState) -> JobState:
        box: dict = {}
        call.request("GET", self.status_url(request, job), headers={"API-Key": key}, idempotent=True,
                     check=job_check(call, box))
        return box["job"]

    def edit(self, request: EditRequest, hooks: Hooks) -> EditResult:
        body, warnings = self.build_payload(request)
        key = self.resolve_key()
        with self.http.open(hooks, self.deadline_s, [key]) as call:
            def send() -> JobState:
                return submit(call, self.http.url(self.path(request)), body, headers={"API-Key": key},
                              progress_text=lambda elapsed: f"ImagePipeline: submitting, {elapsed:.0f} s elapsed")

            fetch = lambda current: self.fetch(call, key, request, current)  # noqa: E731
            job = poll(call, submit_or_resume(call, send, fetch), fetch)
            pictures, notes = collect_images(call, job, samples=request.samples, size=request.size,
                                             fail_on_nsfw=self.fail_on_nsfw)
            warnings.extend(n for n in notes if n not in warnings)
            call.progress("ImagePipeline: done", done=True)
            return EditResult(
                images=pictures,
                seeds=sample_seeds(job, request.seed, len(pictures)),
                job_ids=[job.job_id] if job.job_id else [],
                metadata={},
                warnings=[call.redact(w) for w in warnings],
            )


__all__ = ["ImagePipelineClient", "FAMILIES", "PATHS"]
