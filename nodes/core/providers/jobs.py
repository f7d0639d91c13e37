"""Shared parsing and polling for the queued-job providers (ModelsLab v6, SD API v3, ImagePipeline).

Their answers drift: ``message`` / ``messege``, ``output`` as ``""`` or a list, numbers as strings,
``message`` as an object of field errors, ``status`` in any case (``success``, ``SUCCESS``,
``processing``, ``PENDING``, ``failed``, ``FAILURE``...). :func:`parse_job` turns any of them into one
:class:`JobState`; the body's ``status`` decides success, never only the HTTP code.

:func:`poll` waits about ``eta`` (bounded 0.2-10 s, growing when no eta is given or the eta keeps
being wrong) and fetches until the job is terminal or the deadline passes. The outputs are
collected by :mod:`.outputs`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import requests

from ..errors import ProviderError
from .http import HttpCall
from .http_errors import body_message, error_for, retry_after_from

log = logging.getLogger(__name__)

SUCCESS = frozenset({"success", "succeeded", "completed", "complete", "done", "ok"})
PROCESSING = frozenset({"processing", "pending", "queued", "started", "running", "in_progress", "in progress",
                        "starting", "waiting"})
FAILED = frozenset({"failed", "failure", "cancelled", "canceled", "rejected", "timeout"})
ERROR = frozenset({"error"})

MIN_WAIT_S = 0.2
MAX_WAIT_S = 10.0


# --------------------------------------------------------------------------------------------
# Tolerant value readers


def to_float(value: Any) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return out if out == out and out not in (float("inf"), float("-inf")) else None


def to_int(value: Any) -> Optional[int]:
    number = to_float(value)
    return None if number is None else int(number)


def to_bool(value: Any) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "yes", "1", "y"):
            return True
        if low in ("false", "no", "0", "n", "", "none", "null"):
            return False
    return None


def to_list(value: Any) -> list[str]:
    """``""``/None -> [], a string -> [it], a list -> its non-empty strings."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v not in (None, "")]
    return []


def _flags(value: Any) -> list[bool]:
    if isinstance(value, (list, tuple)):
        return [bool(to_bool(v)) for v in value]
    flag = to_bool(value)
    return [] if flag is None else [flag]


# --------------------------------------------------------------------------------------------
# Job answers


@dataclass
class JobState:
    """A provider's job answer, normalised."""

    state: str  # "success" | "processing" | "error" | "failed"
    job_id: Optional[str] = None
    eta: Optional[float] = None
    outputs: list[str] = field(default_factory=list)
    future_links: list[str] = field(default_factory=list)
    fetch_url: Optional[str] = None
    message: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    nsfw: list[bool] = field(default_factory=list)
    seed: Optional[int] = None
    #: every sample's seed, when the answer lists them (``meta.seed`` / ``meta.seeds`` as a list)
    seeds: list[Optional[int]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    retry_after: Optional[float] = None
    raw_status: str = ""
    generation_time: Optional[float] = None
    #: when a fetch first answered 404 (ModelsLab: "not ready yet" for a bounded time)
    not_found_since: Optional[float] = None

    @property
    def terminal(self) -> bool:
        return self.state != "processing"


_OUTPUT_KEYS = ("output", "download_urls", "output_urls", "images", "result_url", "image_url", "image")


def parse_job(body: Any) -> JobState:
    """Normalise a ModelsLab / SD API v3 / ImagePipeline job answer."""
    if not isinstance(body, dict):
        message, fields = body_message(body)
        return JobState(state="error", message=message or "unexpected answer", fields=fields)
    raw_status = str(body.get("status") or body.get("state") or "").strip()
    low = raw_status.lower()
    outputs: list[str] = []
    for name in _OUTPUT_KEYS:
        outputs = to_list(body.get(name))
        if outputs:
            break
    job_id = body.get("id", body.get("request_id", body.get("job_id")))
    job_id = None if job_id in (None, "") else str(job_id)
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    message, fields = body_message(body)
    if low in SUCCESS:
        state = "success"
    elif low in PROCESSING:
        state = "processing"
    elif low in FAILED:
        state = "failed"
    elif low in ERROR:
        state = "error"
    elif not low and outputs:
        state = "success"
    elif job_id is not None and not fields:
        # Unknown but non-error status with a job id: keep polling (bounded by the deadline).
        state = "processing"
    else:
        state = "error"
    eta = to_float(body.get("eta", body.get("estimated_time_seconds")))
    seeds = _seed_list(meta, body)
    return JobState(
        state=state,
        job_id=job_id,
        eta=eta,
        outputs=outputs,
        future_links=to_list(body.get("future_links")) or to_list(body.get("queued_image_urls")),
        fetch_url=body.get("fetch_result") if isinstance(body.get("fetch_result"), str) else None,
        message=message,
        fields=fields,
        nsfw=_flags(body.get("nsfw_content_detected", body.get("nsfw"))),
        seed=seeds[0] if seeds else None,
        seeds=seeds if len(seeds) > 1 else [],
        meta=meta,
        retry_after=retry_after_from(None, body),
        raw_status=raw_status,
        generation_time=to_float(body.get("generationTime", body.get("generation_time"))),
    )


def _seed_list(meta: dict, body: dict) -> list[Optional[int]]:
    """The seeds an answer gives: one (``meta.seed`` / ``seed``) or a list (``seeds`` or a list ``seed``)."""
    for source in (meta, body):
        for name in ("seeds", "seed"):
            value = source.get(name)
            if isinstance(value, (list, tuple)) and value:
                return [to_int(v) for v in value]
            if to_int(value) is not None:
                return [to_int(value)]
    return []


def sample_seeds(job: JobState, sent: Optional[int], samples: int) -> list[Optional[int]]:
    """Each sample's seed as the service reported it. Where it names only the first (or none: then
    the seed that was sent), the others are None: these services make all samples of a call from
    one seed and do not document how, so "sample k uses seed + k" cannot be promised."""
    if len(job.seeds) >= samples:
        return list(job.seeds[:samples])
    first = job.seed if job.seed is not None else sent
    return [first] + [None] * (samples - 1)


def job_error(service: str, job: JobState, status: Optional[int] = None) -> ProviderError:
    """``job_failed``: the service's own verdict (the journal records the call failed, not running)."""
    error = error_for(service, job.message or job.raw_status or "no message", status=status, fields=job.fields,
                      retry_after=job.retry_after, state=job.state, job_id=job.job_id)
    error.job_failed = True
    return error


def job_check(call: HttpCall, box: dict) -> Callable[[requests.Response], None]:
    """A ``check`` for :meth:`HttpCall.request`: parse the body, raise on error/failed, keep the state."""

    def check(response: requests.Response) -> None:
        job = parse_job(call.json_of(response))
        if job.state in ("error", "failed"):
            raise job_error(call.service, job, status=response.status_code if response.status_code != 200 else None)
        box["job"] = job

    return check


def submit(call: HttpCall, url: str, payload: dict, **kwargs: Any) -> JobState:
    """POST a job (charged: never re-sent after a read timeout) and return its first state."""
    box: dict = {}
    call.request("POST", url, json=payload, idempotent=False, check=job_check(call, box), **kwargs)
    job = box["job"]
    call.job_id = job.job_id or call.job_id
    return job


# --------------------------------------------------------------------------------------------
# Polling


def next_wait(job: JobState, polls: int, *, min_wait: float = MIN_WAIT_S, max_wait: float = MAX_WAIT_S,
              interval: float = 1.0) -> float:
    """How long to wait before poll ``polls + 1``: about ``eta`` when given, else a growing
    interval (``interval`` x 1, 1.5, 2.25 ...); never less than a floor that grows while polls keep
    answering "processing" (0.2, 0.4, 0.8 ... 2 s), always within ``min_wait``..``max_wait``."""
    floor = min(2.0, min_wait * (2 ** polls))
    wanted = job.eta if job.eta is not None and job.eta > 0 else min(max_wait, interval * (1.5 ** polls))
    return max(min_wait, min(max_wait, max(wanted, floor)))


def poll(
    call: HttpCall,
    first: JobState,
    fetch: Callable[[JobState], JobState],
    *,
    min_wait: float = MIN_WAIT_S,
    max_wait: float = MAX_WAIT_S,
) -> JobState:
    """Wait and fetch until ``first``'s job is terminal; return the final (success) state.

    Raises the job's typed error on error/failed, :class:`DeadlineExceeded` at the deadline and
    :class:`Cancelled` within 0.2 s of a Cancel.
    """
    job = first
    polls = 0
    while job.state == "processing":
        if job.job_id:
            call.job_id = job.job_id
        wait = next_wait(job, polls, min_wait=min_wait, max_wait=max_wait, interval=call.http.poll_interval)
        left = call.remaining()
        if left <= 0.05:
            call.close()
            raise call.deadline_error()
        # One last poll just before the deadline rather than giving up blind.
        wait = min(wait, max(0.0, left - 0.05))
        eta = ", ~{left:.0f} s left" if job.eta is not None and job.eta >= 1 else ""
        status = re.sub(r"[^\w \-]", "", job.raw_status.lower())[:30] or "processing"
        call.wait(wait, text=f"{call.label}: {status}, {{elapsed:.0f}} s elapsed{eta}")
        previous = job
        job = fetch(job)
        polls += 1
        call.stats["polls"] = polls
        # The id we poll by never changes (answers have been seen to carry other ids).
        job.job_id = previous.job_id or job.job_id
        if not job.future_links:
            job.future_links = previous.future_links
    if job.state in ("error", "failed"):
        raise job_error(call.service, job)
    return job


__all__ = [
    "JobState",
    "parse_job",
    "job_error",
    "job_check",
    "submit",
    "sample_seeds",
    "next_wait",
    "poll",
    "to_float",
    "to_int",
    "to_bool",
    "to_list",
]
