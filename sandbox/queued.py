"""The queued-job services of the sandbox: ModelsLab v6, Stable Diffusion API v3, ImagePipeline.

A mixin of the request handler (:mod:`.handler`): submit, fetch / status, upload, the answers.
"""

from __future__ import annotations

import base64
import time
from typing import Any, Optional

from .picture import encode
from .records import BadInput, Job, Recorded

SD_V3_STEPS = (21, 31, 41, 51)


class QueuedJobs:
    """Handler methods for the three queued-job services (``self`` is the request handler)."""

    # -- ModelsLab v6 / SD API v3 / ImagePipeline --------------------------------------------

    def _key_ok(self, service: str, record: Recorded) -> bool:
        sb = self.sandbox
        if service == "imagepipeline":
            return self.headers.get("API-Key") == sb.keys["imagepipeline"]
        body = record.json if isinstance(record.json, dict) else {}
        return body.get("key") == sb.keys["modelslab"]

    def _error(self, service: str, status: int, message: Any, **extra: Any) -> None:
        """How each service reports an error: v3 mostly with HTTP 200, ImagePipeline FastAPI-like."""
        if service == "sdapi":
            self._send_json(200, {"status": "error", "message": message, **extra})
        elif service == "imagepipeline":
            if isinstance(message, dict):
                detail = [{"loc": ["body", k], "msg": " ".join(v) if isinstance(v, list) else str(v),
                           "type": "value_error"} for k, v in message.items()]
                self._send_json(422, {"detail": detail})
            else:
                self._send_json(status, {"status": "FAILURE", "error": message, **extra})
        else:
            self._send_json(status, {"status": "error", "message": message, **extra})

    def _upload(self, record: Recorded) -> None:
        sb = self.sandbox
        if not self._key_ok("modelslab", record):
            self._send_json(401, {"status": "error", "message": "Invalid Api Key"})
            return
        body = record.json if isinstance(record.json, dict) else {}
        value = body.get("base64_string", "")
        if not isinstance(value, str) or not value.startswith("data:image/"):
            self._send_json(400, {"status": "error", "message": {"base64_string": ["must be a data:image/...;base64 URI"]}})
            return
        try:
            picture = sb._load_image(value, "base64_string")  # noqa: SLF001
        except BadInput as bad:
            self._send_json(400, {"status": "error", "message": {bad.field: [bad.problem]}})
            return
        data, ctype = encode(picture.convert("RGB"), "png")
        name = sb._store(data, ctype, "upload")  # noqa: SLF001
        self._send_json(200, {"status": "success", "message": "Image uploaded", "output": [f"{sb.url}/uploads/{name}"]})

    def _queued_submit(self, record: Recorded, service: str, inpaint: bool) -> None:
        sb = self.sandbox
        if not self._key_ok(service, record):
            if service == "imagepipeline":
                self._send_json(401, {"detail": "Invalid API-Key"})
            else:
                self._error(service, 401, "Invalid Api Key", tip="Get your key from modelslab.com")
            return
        body = record.json if isinstance(record.json, dict) else None
        if body is None:
            self._error(service, 400, "the body must be JSON")
            return
        try:
            if not str(body.get("prompt") or "").strip():
                raise BadInput("prompt", "The prompt field is required.")
            if service in ("modelslab", "imagepipeline") and not str(body.get("model_id") or "").strip():
                raise BadInput("model_id", "The model id field is required.")
            if service == "modelslab" and str(body["model_id"]).startswith("missing"):
                self._error(service, 400, f"Model not found: {body['model_id']}")
                return
            if service == "modelslab" and sb.size_window:
                self._check_window(body)
            samples = int(float(body.get("samples", 1)))
            if not 1 <= samples <= 4:
                raise BadInput("samples", "samples must be between 1 and 4")
            guidance = float(body.get("guidance_scale", 7.5))
            if not 1 <= guidance <= 20:
                raise BadInput("guidance_scale", "guidance_scale must be between 1 and 20")
            steps = int(float(body.get("num_inference_steps", 31 if service == "sdapi" else 30)))
            if service == "sdapi" and steps not in SD_V3_STEPS:
                raise BadInput("num_inference_steps", "The selected num inference steps is invalid.")
            strength = float(body.get("strength") if body.get("strength") is not None else 0.7)
            if not 0 <= strength <= 1:
                raise BadInput("strength", "strength must be between 0 and 1")
            image = sb._load_image(body.get("init_image"), "init_image")  # noqa: SLF001
            mask = sb._load_image(body.get("mask_image"), "mask_image") if inpaint else None  # noqa: SLF001
            if mask is not None and mask.size != image.size:
                mask = mask.resize(image.size)
        except BadInput as bad:
            if bad.problem == "Unable to fetch image from provided URL":
                self._error(service, 400, bad.problem)
            else:
                self._error(service, 400, {bad.field: [bad.problem]})
            return
        except (TypeError, ValueError):
            self._error(service, 400, "a numeric field is not a number")
            return
        seed_value = body.get("seed")
        seed = int(float(seed_value)) if seed_value not in (None, "", -1, "-1") else sb._new_seed()  # noqa: SLF001
        now = time.monotonic()
        ready_at = float("inf") if sb.processing_forever else now + sb.job_delay
        results = sb._results(image.convert("RGB"), mask, seed, strength, samples)  # noqa: SLF001
        files = []
        for data, ctype in results:
            if sb.base64_output and service != "imagepipeline":
                data, ctype = base64.b64encode(data), "text/plain"
            files.append(sb._store(data, ctype, "out", ready_at))  # noqa: SLF001
        with sb._lock:  # noqa: SLF001
            sb.charges += 1
            job = Job(id=next(sb._ids), service=service, ready_at=ready_at, files=files, seed=seed,  # noqa: SLF001
                       nsfw=sb.nsfw, width=image.width, height=image.height, steps=steps,
                       prompt=str(body.get("prompt")))
            sb._jobs[job.id] = job  # noqa: SLF001
        self._job_answer(job)

    @staticmethod
    def _check_window(body: dict) -> None:
        """ModelsLab's documented validation: width and height 256-1024, multiples of 8."""
        for name in ("width", "height"):
            value = int(float(body.get(name, 512)))
            if not 256 <= value <= 1024:
                raise BadInput(name, f"The {name} must be between 256 and 1024.")
            if value % 8:
                raise BadInput(name, f"The {name} must be divisible by 8.")

    def _seeds_of(self, job: Job, samples: int) -> Any:
        if self.sandbox.seed_list:
            return [self._num((job.seed + k) % 2**32) for k in range(samples)]
        return self._num(job.seed)

    def _queued_fetch(self, record: Recorded, service: str, job_id: Optional[str]) -> None:
        sb = self.sandbox
        if not self._key_ok(service, record):
            if service == "imagepipeline":
                self._send_json(401, {"detail": "Invalid API-Key"})
            else:
                self._error(service, 401, "Invalid Api Key")
            return
        if job_id is None and isinstance(record.json, dict):
            job_id = record.json.get("request_id")
        try:
            job = sb._jobs.get(int(str(job_id)))  # noqa: SLF001
        except (TypeError, ValueError):
            job = None
        if job is None or job.service != service:
            self._error(service, 404, "Request not found")
            return
        self._job_answer(job)

    def _job_answer(self, job: Job) -> None:
        sb = self.sandbox
        links = [f"{sb.url}/files/{name}" for name in job.files]
        left = job.ready_at - time.monotonic()
        if job.service == "imagepipeline":
            if left > 0:
                self._send_json(200, {"status": "PENDING", "id": str(job.id)})
            else:
                self._send_json(200, {"status": "SUCCESS", "id": str(job.id), "download_urls": links,
                                      "nsfw_content_detected": job.nsfw, "seed": job.seed})
            return
        if left > 0:
            eta = sb.eta if sb.eta is not None else (round(left, 3) if left != float("inf") else 5.0)
            api = "v3" if job.service == "sdapi" else "v6/images"
            answer = {
                "status": "processing",
                "tip": "Your request is queued; use the fetch API.",
                "eta": self._num(eta),
                "webhook_status": "",
                "fetch_result": f"{sb.url}/{job.service}/api/{api}/fetch/{job.id}",
                "id": self._num(job.id),
                "output": "" if sb.output_empty_string else [],
                "future_links": links,
                "meta": {},
            }
            answer["messege" if sb.use_messege else "message"] = "Try to fetch request after seconds estimated"
            self._send_json(200, answer)
            return
        self._send_json(200, {
            "status": "success",
            "generationTime": 0.42,
            "id": self._num(job.id),
            "output": links,
            "proxy_links": "",
            "nsfw_content_detected": job.nsfw,
            "webhook_status": "",
            "meta": {"seed": self._seeds_of(job, len(links)), "W": job.width, "H": job.height, "steps": job.steps,
                     "prompt": job.prompt, "n_samples": len(links)},
        })


__all__ = ["QueuedJobs", "SD_V3_STEPS"]
