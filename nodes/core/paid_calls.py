"""How :func:`nodes.core.edit.run_edit` uses the journal (:mod:`.journal`) around one paid call.

For a remote call with a fixed seed (a random seed is a new request every time):

- a **done** record with the same digest: the result comes from disk, no request is sent, cost 0;
- a **submitted** record with a job id (after a Cancel, a crash or a restart): the client polls that
  job instead of submitting (``Hooks.resume_job``); a job the service no longer knows is submitted
  again, and ``info`` says so;
- a **submitted** record without a job id (Dezgo is synchronous; a crash before the answer): the call
  is made again with a warning that an identical call's outcome is unknown;
- otherwise the call is made; the record is written before it goes out, when the job id arrives
  (``Hooks.job_submitted``) and when it ends. A Cancel leaves the record as it is.

Identical calls in flight at the same time in this process wait for the first one and read its result;
so do those of other processes sharing the journal folder (another ComfyUI on the same install, another
machine on a shared folder), through the record's claim file (:mod:`.journal_claims`): a live claim is
waited for (Cancel honoured), a stale one taken over like a ``submitted`` record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from typing import Iterator, Optional

import torch

from . import images as img
from .errors import (AuthError, CreditsError, InputError, InvalidRequest, JobUnknown, ProviderError, RateLimited)
from .journal import Journal, Record, request_digest
from .request import Cancelled, EditRequest, EditResult, Hooks, Provider

log = logging.getLogger("comfyui_imgedit")

#: Answers that say the service did not do (or charge) the work: such a call is recorded as failed.
_REFUSALS = (AuthError, CreditsError, InputError, InvalidRequest, RateLimited)


def paid_edit(provider: Provider, journal: Optional[Journal], request: EditRequest, hooks: Hooks,
              digests: set[str]) -> EditResult:
    """``provider.edit`` through the journal when the call is journaled (its digest joins ``digests``)."""
    identity = None if journal is None or request.seed is None else provider.call_identity(request)
    if identity is None:
        return provider.edit(request, hooks)
    pictures = [_picture_bytes(request.image)]
    if request.mask is not None:
        pictures.append(_picture_bytes(request.mask))
    digest = request_digest(provider.name, identity["endpoint"], identity["fields"], pictures)
    digests.add(digest)
    with _one_at_a_time(digest, hooks), journal.claim(digest, hooks.check_cancelled):
        return journaled_edit(provider, journal, digest, identity["endpoint"], request, hooks)


#: One lock per digest in flight in this process: identical calls running at once (a batch of equal
#: pictures with one seed, two equal nodes in a graph) are paid once, the others read the result.
_in_flight: dict[str, threading.Lock] = {}
_in_flight_guard = threading.Lock()


@contextlib.contextmanager
def _one_at_a_time(digest: str, hooks: Hooks) -> Iterator[None]:
    with _in_flight_guard:
        lock = _in_flight.setdefault(digest, threading.Lock())
    while not lock.acquire(timeout=0.2):
        hooks.check_cancelled()
    try:
        yield
    finally:
        lock.release()
        with _in_flight_guard:
            if not lock.locked() and _in_flight.get(digest) is lock:
                del _in_flight[digest]


def _picture_bytes(tensor) -> bytes:
    """The fitted picture's float pixels with their shape: what the client encodes and sends. Hashing
    them directly is 3x faster than hashing the 8-bit pixels (no conversion; bench/bench_journal.py)."""
    array = tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    return f"{array.shape}:".encode("ascii") + array.tobytes()


def journaled_edit(provider: Provider, journal: Journal, digest: str, endpoint: str, request: EditRequest,
                   hooks: Hooks) -> EditResult:
    """``provider.edit(request, hooks)`` through the journal record ``digest``."""
    record = journal.read(digest)
    if record is not None and record.state == "done":
        replayed = _replay(journal, record)
        if replayed is not None:
            return replayed
    notes: list[str] = []
    warnings: list[str] = []
    if record is not None and record.state == "submitted" and record.job_id:
        notes.append(f"resumed job {record.job_id} of an identical call made at {record.started_text} "
                     f"(no new submission)")
    else:
        if record is not None and record.state == "submitted":
            warnings.append(f"an identical call was started at {record.started_text} and its outcome is unknown "
                            f"(it may have been charged); it was made again.")
        record = Record(digest=digest, provider=provider.name, endpoint=endpoint)
    try:
        answer = _edit(provider, journal, journal.write(record), request, hooks)
    except JobUnknown:
        notes.clear()
        warnings.append(f"the service no longer knows job {record.job_id} of the identical call made at "
                        f"{record.started_text}; it was submitted again.")
        record = journal.write(Record(digest=digest, provider=provider.name, endpoint=endpoint))
        answer = _edit(provider, journal, record, request, hooks)
    _save(journal, record, answer)
    if journal.write_error:
        warnings.append(f"the journal folder {journal.folder} cannot be written ({journal.write_error}): this call "
                        f"is not protected against being lost or paid twice.")
    answer.warnings[:0] = [w for w in warnings if w not in answer.warnings]
    answer.notes.extend(notes)
    return answer


def _save(journal: Journal, record: Record, answer: EditResult) -> None:
    # compress_level 1: about as small as the default 4 on photos, faster to write (bench_journal.py)
    pngs = [img.encode_png(picture, compress_level=1) for picture in answer.images]
    journal.save_results(record, pngs, seeds=answer.seeds, job_ids=answer.job_ids, metadata=answer.metadata,
                         warnings=answer.warnings)


def _edit(provider: Provider, journal: Journal, record: Record, request: EditRequest, hooks: Hooks) -> EditResult:
    def submitted(job_id: str) -> None:
        record.job_id = str(job_id)
        journal.write(record)

    try:
        return provider.edit(request, dataclasses.replace(hooks, resume_job=record.job_id, job_submitted=submitted))
    except (Cancelled, JobUnknown):
        raise  # a Cancel keeps the record: the job can be resumed
    except ProviderError as error:
        if getattr(error, "job_failed", False) or (record.job_id is None and isinstance(error, _REFUSALS)):
            record.state = "failed"
            record.error = str(error)
            journal.write(record)
        raise  # anything else may have been charged or may still run: keep "submitted"


def _replay(journal: Journal, record: Record) -> Optional[EditResult]:
    """A done record's result, as the call would have answered it, with cost 0."""
    pngs = journal.result_files(record)
    if pngs is None:
        return None
    try:
        pictures = [img.decode_image(png, name="a journal result") for png in pngs]
    except InputError:
        log.warning("ImgEdit journal: a result picture of %s is corrupt; the call is made as new.",
                    journal.folder / record.digest)
        return None
    stored = record.result
    metadata = dict(stored.get("metadata") or {})
    if "cost_usd" in metadata:
        metadata["cost_usd"] = 0.0
    metadata.pop("balance_usd", None)  # the balance of that time, not of now
    return EditResult(images=pictures, seeds=list(stored.get("seeds") or [None] * len(pictures)),
                      job_ids=list(stored.get("job_ids") or []), metadata=metadata,
                      warnings=list(stored.get("warnings") or []),
                      notes=[f"result of an identical call made at {record.started_text} taken from the journal "
                             f"(no request sent, cost 0)"])


__all__ = ["paid_edit", "journaled_edit"]
