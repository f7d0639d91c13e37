"""Provider answers -> typed errors, each one sentence a user can act on.

Bodies drift between services and versions: ``message`` / ``messege`` / ``error`` / ``detail``,
a ``message`` that is an object of field errors, FastAPI's ``detail`` list, plain text. The
sentences name the key and host variables from the service's row in :mod:`..services`.
"""

from __future__ import annotations

import json
from typing import Any, Optional
from urllib.parse import urlsplit

import requests
from urllib3.util.retry import Retry

from ..errors import (
    AuthError,
    ContentFiltered,
    CreditsError,
    InvalidRequest,
    ProviderError,
    ProviderFailed,
    RateLimited,
    UncertainOutcome,
)
from ..services import SERVICES

_MAX_MESSAGE = 300


def body_message(data: Any) -> tuple[str, dict[str, str]]:
    """One line and the field errors from a provider's JSON error body (or text).

    Accepts ``message`` / ``messege`` / ``error`` / ``detail`` / ``msg``; a ``message`` that is an
    object of field errors (``{"prompt": ["The prompt field is required."]}``) and FastAPI's
    ``detail`` list both become ``fields``.
    """
    fields: dict[str, str] = {}
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8", "replace")
    if isinstance(data, str):
        text = data.strip()
        if text.startswith("{") or text.startswith("["):
            try:
                data = json.loads(text)
            except ValueError:
                return one_line(text), fields
        else:
            return one_line(text), fields
    if isinstance(data, list):
        data = {"detail": data}
    if not isinstance(data, dict):
        return one_line(str(data)), fields
    value: Any = None
    for name in ("message", "messege", "error", "detail", "msg", "errors"):
        if data.get(name) not in (None, "", [], {}):
            value = data[name]
            break
    text = ""
    if isinstance(value, dict):
        if "message" in value and isinstance(value["message"], str) and len(value) <= 3:
            text = value["message"]
        else:
            for field, problem in value.items():
                if isinstance(problem, (list, tuple)):
                    problem = " ".join(str(p) for p in problem)
                fields[str(field)] = str(problem)
    elif isinstance(value, list):
        for entry in value:
            if isinstance(entry, dict) and "msg" in entry:
                loc = entry.get("loc") or []
                loc = [str(p) for p in loc if p not in ("body", "query")]
                fields[".".join(loc) or "request"] = str(entry["msg"])
            else:
                text = (text + "; " if text else "") + str(entry)
    elif value is not None:
        text = str(value)
    if fields and not text:
        text = "; ".join(f"{k}: {v}" for k, v in fields.items())
    return one_line(text), fields


def one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def retry_after_from(headers: Any, data: Any) -> Optional[float]:
    value = None
    if headers is not None:
        value = headers.get("Retry-After")
    if value in (None, "") and isinstance(data, dict):
        value = data.get("retry_after", data.get("retryAfter"))
    if value in (None, ""):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        try:
            seconds = Retry().parse_retry_after(str(value))
        except Exception:
            return None
    return max(0.0, seconds)


def error_for(
    service: str,
    message: str,
    *,
    status: Optional[int] = None,
    fields: Optional[dict] = None,
    retry_after: Optional[float] = None,
    state: str = "error",
    job_id: Optional[str] = None,
    path: str = "",
    tries: int = 1,
) -> ProviderError:
    """Map an HTTP status and/or a provider message to a typed error with one actionable sentence."""
    row = SERVICES.get(service)
    label = row.label if row else service
    key_env = row.key_env if row else "the API key variable"
    url_env = row.url_env if row else "the service URL variable"
    msg = one_line(message or "")
    low = msg.lower()
    code = f"HTTP {status}" if status else ""
    said = f" ({code}{': ' if code and msg else ''}{msg})" if (code or msg) else ""
    kw: dict[str, Any] = {"provider": service, "status": status}

    if status == 429 or "rate limit" in low or "too many requests" in low or "queued requests" in low:
        wait = f"; it asked to wait {retry_after:.0f} s" if retry_after else ""
        return RateLimited(
            f"{label} is rate limiting this account{said}{wait}: wait a little, or lower max_concurrency on the provider node.",
            retry_after=retry_after,
            **kw,
        )
    if status == 401 or (
        "key" in low and any(w in low for w in ("invalid", "wrong", "missing", "incorrect", "not valid", "expired"))
    ) or "unauthorized" in low or "unauthenticated" in low:
        return AuthError(
            f"{label} rejected the API key{said}: check {key_env} or the key in ComfyUI Settings -> ImgEdit.", **kw
        )
    if status == 402 or any(w in low for w in ("credit", "insufficient", "balance", "payment required", "out of funds")):
        return CreditsError(f"{label} says the account has no credits left{said}: top up your balance, then run again.", **kw)
    if status == 403:
        return AuthError(
            f"{label} refused the request{said}: your key or plan may not allow this endpoint or model.", **kw
        )
    if fields:
        listed = "; ".join(f"{k}: {one_line(v)}" for k, v in fields.items())
        return InvalidRequest(f"{label} rejected these fields: {one_line(listed)}; fix them and run again.", fields=fields, **kw)
    if "not found" in low and "model" in low:
        return InvalidRequest(f"{label} does not know the model{said}: check the model id on the provider node.",
                              fields={"model": msg}, **kw)
    if status == 404:
        return InvalidRequest(
            f"{label} answered 'not found' for {path or 'the endpoint'}{said}: check the model id, or {url_env} if you set it.",
            **kw,
        )
    if status in (400, 413, 422):
        return InvalidRequest(f"{label} rejected the request{said}: check the inputs of the edit and provider nodes.", **kw)
    if status is not None and status >= 500:
        return ProviderFailed(
            f"{label} had a server error{said}{f' after {tries} tries' if tries > 1 else ''}: try again later.", **kw
        )
    if state == "failed":
        job = f" job {job_id}" if job_id else ""
        return ProviderFailed(f"{label}{job} failed{said}: run it again (another seed may help).", **kw)
    if "nsfw" in low:
        return ContentFiltered(f"{label} blocked the result as NSFW{said}.", **kw)
    return ProviderFailed(f"{label} reported an error{said}.", **kw)


def error_from_response(service: str, response: requests.Response, *, tries: int = 1) -> ProviderError:
    """Typed error for a non-2xx response (reads a JSON or text body)."""
    data: Any = None
    try:
        data = response.json()
    except ValueError:
        ctype = response.headers.get("Content-Type", "")
        if ctype.startswith("text/") or "json" in ctype or not ctype:
            data = response.text[:2000]
    message, fields = body_message(data) if data is not None else ("", {})
    retry_after = retry_after_from(response.headers, data if isinstance(data, dict) else None)
    return error_for(
        service,
        message,
        status=response.status_code,
        fields=fields,
        retry_after=retry_after,
        path=urlsplit(response.url or "").path,
        tries=tries,
    )


def charged_error(service: str, what: str, *, status: Optional[int] = None) -> UncertainOutcome:
    """A charged request got no usable answer (``what`` happened): it is not re-sent, and says so."""
    row = SERVICES.get(service)
    label = row.label if row else service
    where = row.account if row else f"your {label} account history"
    return UncertainOutcome(
        f"{label} {what}; the request was not sent again because it may already have been charged: "
        f"check {where} before running it again.",
        provider=service, status=status,
    )


__all__ = ["body_message", "one_line", "retry_after_from", "error_for", "error_from_response", "charged_error"]
