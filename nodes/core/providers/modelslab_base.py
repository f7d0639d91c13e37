"""What ModelsLab v6 and Stable Diffusion API v3 (the same vendor) share: JSON with ``key``, image
upload through ``base64_to_url``, ``processing`` answers polled with a fetch endpoint, and the
request body's common keys (:meth:`ModelsLabFamily.common_body`).

The fetch URL is built from the configured host and the job id; a ``fetch_result`` link from the
answer is used only when it is on that same host (so the key never goes anywhere else).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional
from urllib.parse import quote

from ..errors import InputError, ProviderError, ProviderFailed
from ..request import EditRequest, EditResult, Hooks
from .base import RemoteProvider, clamp_to_range, data_uri, mask_png, png_bytes
from .http import HttpCall, ProviderHttp
from .http_errors import body_message, error_for
from .jobs import JobState, job_check, poll, sample_seeds, submit, to_int, to_list
from .outputs import collect_images
from .resume import submit_or_resume
from .urls import same_origin

IMAGE_TRANSPORTS = ("upload", "base64")
UPLOAD_PATH = "/api/v6/base64_to_url"
UPLOAD_MAX_BYTES = 5 * 1024 * 1024


def yes_no(flag: bool) -> str:
    """The vendor's flags are "yes" / "no" strings in every example."""
    return "yes" if flag else "no"


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
    """ModelsLab v6 and SD API v3: JSON + key, processing -> fetch. Subclasses set the paths and
    add their own body keys in :meth:`build_payload`."""

    IMG2IMG_PATH = ""
    INPAINT_PATH = ""
    FETCH_PATH = ""

    def __init__(self, *, image_transport: str = "upload", enhance_prompt: bool = False,
                 safety_checker: bool = True, **common: Any):
        super().__init__(**common)
        if image_transport not in IMAGE_TRANSPORTS:
            raise InputError(f"image_transport is {image_transport!r}; use one of {', '.join(IMAGE_TRANSPORTS)}.")
        self.image_transport = image_transport
        self.enhance_prompt = bool(enhance_prompt)
        self.safety_checker = bool(safety_checker)

    def common_body(self, request: EditRequest, steps: int, warnings: list[str]) -> dict[str, Any]:
        """The body keys both services document (PROVIDERS.md §2, §3), without key and images."""
        width, height = request.size
        if not 1 <= int(request.samples) <= self.max_samples_per_call:
            raise InputError(f"samples per {self.label} call is {request.samples}; "
                             f"use 1 to {self.max_samples_per_call}.")
        return {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "width": width,
            "height": height,
            "samples": int(request.samples),
            "num_inference_steps": int(steps),
            "guidance_scale": clamp_to_range(float(request.guidance), 1.0, 20.0, "guidance", self.label, warnings),
            "strength": float(request.strength),
            "seed": None if request.seed is None else int(request.seed),
            "enhance_prompt": yes_no(self.enhance_prompt),
            "safety_checker": yes_no(self.safety_checker),
            "base64": "no",
        }

    def call_identity(self, request: EditRequest) -> dict[str, Any]:
        path = self.INPAINT_PATH if request.is_inpaint else self.IMG2IMG_PATH
        return {"endpoint": self.http.url(path), "fields": self.build_payload(request)[0]}

    def build_payload(self, request: EditRequest) -> tuple[dict[str, Any], list[str]]:  # pragma: no cover
        """The request body without key and images, and the warnings about it."""
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
        try:
            call.request("POST", self.fetch_url(job), json=body, idempotent=True, check=job_check(call, box))
        except ProviderError as error:
            if error.status != 404:
                raise
            return self._not_found_yet(call, job)
        return box["job"]

    def _not_found_yet(self, call: HttpCall, job: JobState) -> JobState:
        """ModelsLab's OpenAPI lists 404 for fetch: a job just queued may not be known there yet, so
        404 means "not ready" for ``not_ready_s`` (60 s), then the job is given up."""
        now = time.monotonic()
        since = job.not_found_since or now
        if now - since > call.http.not_ready_s:
            raise ProviderFailed(
                f"{self.label}'s fetch still answers 404 (not found) for job {job.job_id} after "
                f"{call.http.not_ready_s:.0f} s: the job may have expired, run the edit again.",
                provider=self.service, status=404)
        return dataclasses.replace(job, state="processing", raw_status="not found yet", eta=None,
                                   not_found_since=since)

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
                seeds=sample_seeds(job, request.seed, len(pictures)),
                job_ids=[job.job_id] if job.job_id else [],
                metadata=metadata,
                warnings=[call.redact(w) for w in warnings],
            )


__all__ = ["ModelsLabFamily", "IMAGE_TRANSPORTS", "upload_png", "yes_no"]
