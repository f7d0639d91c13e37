"""Dezgo (api.dezgo.com): synchronous img2img and inpainting.

``POST {IMGEDIT_DEZGO_URL}/image2image`` or ``/inpainting``, header ``X-Dezgo-Key``, a
multipart/form-data body whose images are binary file parts (no base64 inflation); the answer is
the image bytes, with the seed used in ``x-input-seed`` and the charge / balance in
``x-dezgo-job-amount-usd`` / ``x-dezgo-balance-total-usd``. One sample per call. The POST blocks
for the whole generation and may be charged, so it is never re-sent after a read timeout
(:class:`UncertainOutcome`), and the caller can still Cancel within 0.2 s.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..request import EditRequest, EditResult, Hooks
from .base import RemoteProvider, clamp_to_range, mask_png, png_bytes, v_choice, v_float, v_text
from .http_errors import body_message, error_for
from .jobs import to_float, to_int
from .outputs import decode_result, looks_like_image

#: Samplers seen in Dezgo clients ([O] in PROVIDERS.md); "" = Dezgo's default. Others pass via extra.
SAMPLERS = ("ddim", "dpm", "dpm_single", "dpmpp_2m_karras", "euler", "euler_a", "k_lms", "pndm")
FORMATS = ("png", "jpg", "webp")
IMG2IMG_PATH = "/image2image"
INPAINT_PATH = "/inpainting"


#: Ranges from Dezgo's API page as quoted by two clients ([O] in PROVIDERS.md §1).
STEPS_RANGE = (10, 150)
GUIDANCE_RANGE = (-20.0, 20.0)


def v_upscale(name: str, value: Any) -> Any:
    """Only 1: Dezgo bills ``upscale=2`` extra and the edit node brings every result back to the
    input size, so the doubled pixels would be paid for and thrown away."""
    if value in (1, "1"):
        return 1
    raise InputError(f"{name} is {value!r}; Dezgo's upscale=2 is billed extra and its result would be scaled "
                     f"back to the input size, so it is refused: leave it out and put an upscale node (e.g. "
                     f"'Upscale Image (using Model)') after the edit.")


class DezgoClient(RemoteProvider):
    """Dezgo image2image / inpainting (one sample per call)."""

    service = "dezgo"
    PARAMS = {
        "model": v_text(200),
        "sampler": v_text(100),
        "format": v_choice(*FORMATS),
        "upscale": v_upscale,
    }

    def __init__(self, *, model: str = "", sampler: str = "", format: str = "png",
                 request_timeout_s: float = 300.0, **common: Any):
        super().__init__(**common)
        #: how long to wait for Dezgo's answer (clipped to the deadline); after that the POST is
        #: reported as UncertainOutcome, never re-sent
        self.request_timeout_s = float(v_float(1, 24 * 3600)("request_timeout_s", request_timeout_s))
        self.model = str(v_text(200)("model", model) or "").strip()
        sampler = str(sampler or "").strip()
        if sampler in ("default", "auto"):
            sampler = ""
        self.sampler = sampler
        if format not in FORMATS:
            raise InputError(f"format is {format!r}; use one of {', '.join(FORMATS)}.")
        self.format = format

    def public_options(self) -> dict[str, Any]:
        return {"model": self.model, "sampler": self.sampler, "format": self.format}

    def form_fields(self, request: EditRequest) -> tuple[dict[str, str], list[str]]:
        """The non-file form fields for ``request`` (strings, as multipart sends them)."""
        options, warnings = self.merged_options(request)
        steps = clamp_to_range(int(request.steps), *STEPS_RANGE, "steps", self.label, warnings)
        guidance = clamp_to_range(float(request.guidance), *GUIDANCE_RANGE, "guidance", self.label, warnings)
        fields: dict[str, Any] = {
            "prompt": request.prompt,
            "strength": f"{float(request.strength):g}",
            "steps": str(int(steps)),
            "guidance": f"{guidance:g}",
            "format": self.format,
        }
        if request.negative_prompt:
            fields["negative_prompt"] = request.negative_prompt
        if request.seed is not None:
            fields["seed"] = str(int(request.seed))
        if self.model:
            fields["model"] = self.model
        if self.sampler:
            fields["sampler"] = self.sampler
        for name, value in options.items():
            if value is None:
                fields.pop(name, None)
            elif isinstance(value, (dict, list)):
                raise InputError(f"extra.{name}: Dezgo's form fields take single values, not lists or objects.")
            elif isinstance(value, bool):
                fields[name] = "true" if value else "false"
            else:
                fields[name] = str(value)
        if request.samples != 1:
            raise InputError("Dezgo makes one image per call; the edit node splits samples into calls.")
        return fields, warnings

    def call_identity(self, request: EditRequest) -> dict[str, Any]:
        path = INPAINT_PATH if request.is_inpaint else IMG2IMG_PATH
        return {"endpoint": self.http.url(path), "fields": self.form_fields(request)[0]}

    def edit(self, request: EditRequest, hooks: Hooks) -> EditResult:
        fields, warnings = self.form_fields(request)
        key = self.resolve_key()
        files = {"init_image": ("init_image.png", png_bytes(request.image), "image/png")}
        if request.mask is not None:
            files["mask_image"] = ("mask_image.png", mask_png(request.mask), "image/png")
        path = INPAINT_PATH if request.is_inpaint else IMG2IMG_PATH
        with self.http.open(hooks, self.deadline_s, [key]) as call:
            response = call.request(
                "POST",
                self.http.url(path),
                idempotent=False,
                headers={"X-Dezgo-Key": key, "Accept": "image/*, application/json"},
                data=fields,
                files=files,
                read_timeout=min(self.request_timeout_s, self.deadline_s),
                progress_text=lambda elapsed: f"Dezgo: generating, {elapsed:.0f} s elapsed",
            )
            data = response.content or b""
            if not looks_like_image(data):  # an error body (JSON or text) can come with 200
                message, found = body_message(data[:4000]) if data else ("empty answer", {})
                raise call.scrub(error_for("dezgo", message, fields=found))
            picture = decode_result(data, request.size, "Dezgo", "dezgo", warnings)
            headers = response.headers
            seed = to_int(headers.get("x-input-seed"))
            job_id = headers.get("x-dezgo-job-id")
            metadata: dict[str, Any] = {}
            cost = to_float(headers.get("x-dezgo-job-amount-usd"))
            balance = to_float(headers.get("x-dezgo-balance-total-usd"))
            if cost is not None:
                metadata["cost_usd"] = cost
            if balance is not None:
                metadata["balance_usd"] = balance
            if headers.get("x-dezgo-balance-index") is not None:
                metadata["balance_index"] = call.redact(headers.get("x-dezgo-balance-index"))
            call.progress("Dezgo: done", done=True)
            return EditResult(
                images=[picture],
                seeds=[seed if seed is not None else request.seed],
                job_ids=[call.redact(job_id)] if job_id else [],
                metadata=metadata,
                warnings=warnings,
            )


__all__ = ["DezgoClient", "SAMPLERS", "FORMATS"]
