"""The resume path of the queued-job clients (ModelsLab v6, SD API v3, ImagePipeline), for the journal
of paid calls (:mod:`..paid_calls`): poll a job submitted earlier instead of paying for a new one."""

from __future__ import annotations

from typing import Callable

from ..errors import JobUnknown, ProviderError
from .http import HttpCall
from .jobs import JobState


def submit_or_resume(call: HttpCall, send: Callable[[], JobState],
                     fetch: Callable[[JobState], JobState]) -> JobState:
    """The job's first state: a fetch of ``call.hooks.resume_job`` (nothing submitted, nothing
    uploaded) when the journal resumes a job, else ``send()``'s, whose job id is reported through
    ``call.hooks.job_submitted``. A resumed job the service does not know raises :class:`JobUnknown`."""
    resume = call.hooks.resume_job
    if resume:
        call.job_id = resume
        gone = JobUnknown(f"{call.label} no longer knows job {resume}.", provider=call.service)
        try:
            first = fetch(JobState(state="processing", job_id=resume))
        except ProviderError as error:
            if error.status == 404 or "not found" in str(error).lower():
                raise gone from None
            raise
        # A fetch may read 404 as "just queued, not known yet"; a job queued in an earlier run is gone.
        if first.not_found_since is not None:
            raise gone
        return first
    job = send()
    if job.job_id:
        call.hooks.job_submitted(job.job_id)
    return job


__all__ = ["submit_or_resume"]
