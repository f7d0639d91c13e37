"""The one HTTP layer every remote provider uses.

- Hosts come only from the environment (``IMGEDIT_DEZGO_URL``, ``IMGEDIT_SDAPI_URL``,
  ``IMGEDIT_MODELSLAB_URL``, ``IMGEDIT_IMAGEPIPELINE_URL``; defaults: the documented hosts). Each is
  a prefix to which the documented paths are appended. Plain ``http://`` is accepted only for
  loopback hosts (the sandbox), so a key never travels in clear text.
- :class:`HttpCall` is one provider call: its own ``requests`` session with a urllib3 ``Retry``
  chosen per request (connect errors always retried; 502/503/504 retried with backoff and
  ``Retry-After``; read errors retried only for idempotent requests, so a charged POST that timed
  out is never sent twice and is reported as :class:`UncertainOutcome`), 429 retried a bounded
  number of times after ``Retry-After`` / a body's ``retry_after``, per-request timeouts and an
  overall deadline. Every wait sleeps in slices of at most 0.2 s and checks Cancel; every request
  runs on a helper thread so the caller can give up on a blocking request within 0.2 s.
- Keys: key headers are dropped when a redirect leaves the host (requests drops only
  ``Authorization``); a redirect to another host that would re-send a body carrying the key is
  refused; downloads never carry a key. Every message passes through :func:`keys.redact`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

from .. import keys
from ..errors import (
    AuthError,
    CreditsError,
    DeadlineExceeded,
    InputError,
    InvalidRequest,
    NetworkError,
    ProviderError,
    ProviderFailed,
    RateLimited,
    UncertainOutcome,
)
from ..request import Cancelled, Hooks

log = logging.getLogger(__name__)

WAIT_SLICE_S = 0.2

#: service -> (label, URL env var, default base URL)
SERVICES: dict[str, tuple[str, str, str]] = {
    "dezgo": ("Dezgo", "IMGEDIT_DEZGO_URL", "https://api.dezgo.com"),
    "sdapi": ("Stable Diffusion API", "IMGEDIT_SDAPI_URL", "https://stablediffusionapi.com"),
    "modelslab": ("ModelsLab", "IMGEDIT_MODELSLAB_URL", "https://modelslab.com"),
    "imagepipeline": ("ImagePipeline", "IMGEDIT_IMAGEPIPELINE_URL", "https://api.imagepipeline.io"),
}
URL_ENV = {name: env for name, (_, env, _) in SERVICES.items()}
DEFAULT_URLS = {name: url for name, (_, _, url) in SERVICES.items()}

#: Headers that may carry a key; dropped whenever a redirect leaves the original host.
KEY_HEADERS = frozenset(
    h.lower() for h in ("X-Dezgo-Key", "API-Key", "X-API-Key", "Authorization", "Proxy-Authorization", "Cookie")
)

RETRY_STATUSES = frozenset({502, 503, 504})
NOT_READY_STATUSES = frozenset({403, 404})
_MAX_MESSAGE = 300


# --------------------------------------------------------------------------------------------
# Base URLs


def _is_loopback(host: str) -> bool:
    host = (host or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url(service: str) -> str:
    """The base URL of ``service``: its ``IMGEDIT_*_URL`` env var or the documented host.

    Raises :class:`InputError` for a URL that is not http(s), has credentials, a query or a
    fragment, or uses plain http for a host that is not loopback.
    """
    if service not in SERVICES:
        raise InputError(f"unknown service {service!r}; use one of {', '.join(SERVICES)}.")
    _, env, default = SERVICES[service]
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        parts = urlsplit(raw)
        port = parts.port  # validates the port
    except ValueError:
        raise InputError(f"{env} is not a valid URL; set it to a prefix like {default}.") from None
    del port
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{env} must be an http(s) URL like {default}; unset it to use the documented host.")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InputError(f"{env} must be a plain prefix like {default} (no credentials, query or fragment).")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise InputError(
            f"{env} uses plain http:// for a host that is not this machine; use https:// so your key is not sent in clear text."
        )
    return raw.rstrip("/")


def same_origin(a: str, b: str) -> bool:
    """True when two URLs share scheme, host and port."""
    pa, pb = urlsplit(a), urlsplit(b)
    default = {"http": 80, "https": 443}
    return (
        pa.scheme == pb.scheme
        and (pa.hostname or "").lower() == (pb.hostname or "").lower()
        and (pa.port or default.get(pa.scheme)) == (pb.port or default.get(pb.scheme))
    )


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1] or "?"


# --------------------------------------------------------------------------------------------
# Messages and error mapping


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
                return _one_line(text), fields
        else:
            return _one_line(text), fields
    if isinstance(data, list):
        data = {"detail": data}
    if not isinstance(data, dict):
        return _one_line(str(data)), fields
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
    return _one_line(text), fields


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _retry_after_from(headers: Any, data: Any) -> Optional[float]:
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
    label = SERVICES.get(service, (service, "", ""))[0]
    key_env = keys.KEY_ENV.get(keys.KEY_ALIASES.get(service, service), "the API key variable")
    url_env = URL_ENV.get(service, "the service URL variable")
    msg = _one_line(message or "")
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
        listed = "; ".join(f"{k}: {_one_line(v)}" for k, v in fields.items())
        return InvalidRequest(f"{label} rejected these fields: {_one_line(listed)}; fix them and run again.", fields=fields, **kw)
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
        err = ProviderFailed(
            f"{label} had a server error{said}{f' after {tries} tries' if tries > 1 else ''}: try again later.", **kw
        )
        err.retryable = True
        return err
    if state == "failed":
        job = f" job {job_id}" if job_id else ""
        return ProviderFailed(f"{label}{job} failed{said}: run it again (another seed may help).", **kw)
    if "nsfw" in low:
        from ..errors import ContentFiltered

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
    retry_after = _retry_after_from(response.headers, data if isinstance(data, dict) else None)
    return error_for(
        service,
        message,
        status=response.status_code,
        fields=fields,
        retry_after=retry_after,
        path=urlsplit(response.url or "").path,
        tries=tries,
    )


# --------------------------------------------------------------------------------------------
# Sessions and retries


class _Aborted(Exception):
    """Raised inside a worker when its call was cancelled or a retry wait would pass the deadline."""

    def __init__(self, reason: str, wait: float = 0.0, status: Optional[int] = None):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.status = status


class _RedirectRefused(Exception):
    def __init__(self, host: str):
        super().__init__(host)
        self.host = host


class CancellableRetry(Retry):
    """urllib3 Retry whose waits (backoff, ``Retry-After``) sleep in 0.2 s slices, stop on
    Cancel, and never run past the call's deadline."""

    def __init__(self, *args: Any, abort: Optional[Callable[[], bool]] = None, deadline: Optional[float] = None,
                 on_wait: Optional[Callable[[float, Optional[int]], None]] = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.abort = abort
        self.deadline = deadline
        self.on_wait = on_wait

    def new(self, **kw: Any) -> "CancellableRetry":
        fresh = super().new(**kw)
        fresh.abort, fresh.deadline, fresh.on_wait = self.abort, self.deadline, self.on_wait
        return fresh

    def sleep(self, response: Any = None) -> None:
        wait = None
        if self.respect_retry_after_header and response is not None:
            wait = self.get_retry_after(response)
        if not wait:
            wait = self.get_backoff_time()
        status = getattr(response, "status", None)
        if wait <= 0:
            return
        if self.deadline is not None and time.monotonic() + wait > self.deadline:
            raise _Aborted("deadline", wait, status)
        if self.on_wait is not None:
            self.on_wait(wait, status)
        end = time.monotonic() + wait
        while True:
            if self.abort is not None and self.abort():
                raise _Aborted("cancelled", wait, status)
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(WAIT_SLICE_S, left))


class KeySafeSession(requests.Session):
    """A Session that drops every key header on a redirect to another host, and refuses such a
    redirect when the re-sent body (307/308) would carry a secret."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self._imgedit_secrets = tuple(s.encode() for s in secrets if s)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url, prepared_request.url):
            for name in list(prepared_request.headers):
                if name.lower() in KEY_HEADERS:
                    del prepared_request.headers[name]
            body = prepared_request.body
            if body and self._imgedit_secrets:
                raw = body if isinstance(body, bytes) else str(body).encode("utf-8", "replace")
                if any(secret in raw for secret in self._imgedit_secrets):
                    raise _RedirectRefused(host_of(prepared_request.url or ""))

    def __repr__(self) -> str:
        return "<KeySafeSession>"


class _Adapter(HTTPAdapter):
    """HTTPAdapter whose Retry is set per request (sessions are per call, requests sequential)."""


def _exc_chain(error: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    todo = [error]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen or len(seen) > 12:
            continue
        seen.add(id(e))
        yield e
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        todo.extend([e.__cause__, e.__context__])


def _kind_of(error: BaseException) -> str:
    chain = list(_exc_chain(error))
    if any(isinstance(e, (ReadTimeoutError, requests.exceptions.ReadTimeout)) for e in chain):
        return "read_timeout"
    if any(isinstance(e, (NewConnectionError, ConnectTimeoutError, requests.exceptions.ConnectTimeout)) for e in chain):
        return "connect"
    if any(isinstance(e, requests.exceptions.SSLError) for e in chain):
        return "tls"
    if any(isinstance(e, (ProtocolError, requests.exceptions.ChunkedEncodingError)) for e in chain):
        return "dropped"
    if any(isinstance(e, requests.exceptions.TooManyRedirects) for e in chain):
        return "redirects"
    if any(isinstance(e, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                          requests.exceptions.InvalidSchema)) for e in chain):
        return "url"
    if any(isinstance(e, (requests.exceptions.ConnectionError, MaxRetryError)) for e in chain):
        return "connect"
    return "other"


class NotReady(Exception):
    """An output link answered 403/404: the file is not there yet."""

    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


@dataclass
class _Outcome:
    response: Optional[requests.Response] = None
    error: Optional[BaseException] = None


class ProviderHttp:
    """Per-service HTTP settings (no secrets). :meth:`open` starts one :class:`HttpCall`."""

    def __init__(
        self,
        service: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        rate_limit_retries: int = 3,
        max_download_bytes: int = 64 * 1024 * 1024,
        not_ready_s: float = 60.0,
        poll_interval: float = 1.0,
    ):
        if service not in SERVICES:
            raise InputError(f"unknown service {service!r}; use one of {', '.join(SERVICES)}.")
        self.service = service
        self.label = SERVICES[service][0]
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.rate_limit_retries = int(rate_limit_retries)
        self.max_download_bytes = int(max_download_bytes)
        self.not_ready_s = float(not_ready_s)
        #: first wait between polls when the provider gives no eta (then x1.5 per poll, at most 10 s)
        self.poll_interval = float(poll_interval)

    @property
    def base_url(self) -> str:
        return base_url(self.service)

    def for_service(self, service: str) -> "ProviderHttp":
        """The same settings for another service (SD API v3 uploads through ModelsLab)."""
        return ProviderHttp(service, connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                            retries=self.retries, backoff=self.backoff, rate_limit_retries=self.rate_limit_retries,
                            max_download_bytes=self.max_download_bytes, not_ready_s=self.not_ready_s,
                            poll_interval=self.poll_interval)

    def url(self, path: str) -> str:
        """The base URL (read from the environment now) with a documented path appended."""
        return self.base_url + "/" + path.lstrip("/")

    def open(self, hooks: Optional[Hooks], deadline_s: float, secrets: Iterable[Optional[str]] = ()) -> "HttpCall":
        return HttpCall(self, hooks or Hooks(), deadline_s, [s for s in secrets if s])

    def __repr__(self) -> str:
        return f"ProviderHttp({self.service!r})"


class HttpCall:
    """One provider call: a session, the hooks, the deadline, the secrets to scrub.

    Use as a context manager. Methods raise typed errors (:mod:`nodes.core.errors`) or
    :class:`Cancelled`; no message can contain a secret.
    """

    def __init__(self, http: ProviderHttp, hooks: Hooks, deadline_s: float, secrets: list[str]):
        self.http = http
        self.service = http.service
        self.label = http.label
        self.hooks = hooks
        self.started = time.monotonic()
        self.deadline_s = float(deadline_s)
        self.deadline = self.started + self.deadline_s
        self._secrets = list(secrets)
        self._closed = False
        self._session = KeySafeSession(self._secrets)
        self._adapter = _Adapter(pool_connections=2, pool_maxsize=2)
        self._session.mount("http://", self._adapter)
        self._session.mount("https://", self._adapter)
        self._status = ""
        self.job_id: Optional[str] = None
        self.stats = {"requests": 0, "polls": 0, "retry_waits": 0, "rate_limit_waits": 0, "bytes_sent": 0,
                      "bytes_received": 0}

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "HttpCall":
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        self.close()
        if exc is not None:
            # Whatever escapes a call (typed error or bug) leaves without a secret in its text.
            try:
                exc.args = tuple(self.redact(a) if isinstance(a, str) else a for a in exc.args)
            except Exception:  # pragma: no cover - exotic exception types
                pass

    def close(self) -> None:
        self._closed = True
        try:
            self._session.close()
        except Exception:  # pragma: no cover
            pass

    def __repr__(self) -> str:
        return f"<HttpCall {self.service}>"

    def redact(self, text: object) -> str:
        return keys.redact(text, *self._secrets)

    # -- time --------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def _aborting(self) -> bool:
        return self._closed or bool(self.hooks.cancelled())

    def deadline_error(self, doing: str = "") -> DeadlineExceeded:
        job = f" (job {self.job_id})" if self.job_id else ""
        what = doing or "the job"
        return DeadlineExceeded(
            f"{self.label}{job}: {what} did not finish within the {self.deadline_s:.0f} s deadline; it may still be "
            f"running on the provider, raise deadline_s on the provider node to wait longer.",
            provider=self.service,
        )

    def check(self) -> None:
        """Raise :class:`Cancelled` or :class:`DeadlineExceeded` when it is time to stop."""
        if self.hooks.cancelled():
            self.close()
            raise Cancelled("cancelled by the user")
        if self.remaining() <= 0:
            self.close()
            raise self.deadline_error()

    def progress(self, text: str, done: bool = False) -> None:
        """Status line for the node (``done`` marks the call finished)."""
        try:
            self.hooks.progress(1 if done else 0, 1, self.redact(text))
        except Exception:  # a broken progress hook must not fail the call
            log.debug("progress hook failed", exc_info=True)

    def wait(self, seconds: float, text: str = "", doing: str = "") -> None:
        """Sleep ``seconds`` in 0.2 s slices, checking Cancel; past the deadline -> DeadlineExceeded."""
        end = time.monotonic() + max(0.0, float(seconds))
        last_report = 0.0
        while True:
            self.check()
            now = time.monotonic()
            if now >= end:
                return
            if now >= self.deadline:
                self.close()
                raise self.deadline_error(doing)
            if text and now - last_report >= 1.0:
                self.progress(text.format(elapsed=self.elapsed(), left=max(0.0, end - now)))
                last_report = now
            time.sleep(min(WAIT_SLICE_S, end - now, max(0.0, self.deadline - now) + 0.001))

    # -- requests ----------------------------------------------------------------------------

    def _retry(self, idempotent: bool) -> CancellableRetry:
        n = max(0, self.http.retries)

        def on_wait(seconds: float, status: Optional[int]) -> None:
            self.stats["retry_waits"] += 1
            what = f"HTTP {status}" if status else "network error"
            self._status = f"{self.label}: {what}, retrying in {seconds:.1f} s"

        return CancellableRetry(
            total=None,
            connect=n,
            read=n if idempotent else False,
            status=n,
            other=0,
            redirect=None,
            allowed_methods=frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"}),
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self.http.backoff,
            backoff_max=10.0,
            backoff_jitter=self.http.backoff / 4,
            raise_on_status=False,
            respect_retry_after_header=True,
            abort=self._aborting,
            deadline=self.deadline,
            on_wait=on_wait,
        )

    def _send(self, method: str, url: str, *, idempotent: bool, read_timeout: Optional[float],
              progress_text: Optional[Callable[[float], str]], stream: bool = False,
              max_bytes: Optional[int] = None, **kwargs: Any) -> requests.Response:
        """Send on a helper thread; the caller waits in 0.2 s slices and can give up."""
        if self._closed:
            raise Cancelled("the call was closed") if self.hooks.cancelled() else self.deadline_error()
        self.check()
        remaining = self.remaining()
        read = min(read_timeout or self.http.read_timeout, remaining + 0.5)
        connect = min(self.http.connect_timeout, remaining + 0.5)
        clipped = read < (read_timeout or self.http.read_timeout)
        self._adapter.max_retries = self._retry(idempotent)
        outcome = _Outcome()
        done = threading.Event()
        session = self._session

        def work() -> None:
            try:
                resp = session.request(method, url, timeout=(connect, read), allow_redirects=True,
                                       stream=stream, **kwargs)
                if stream:
                    limit = max_bytes or self.http.max_download_bytes
                    chunks, size = [], 0
                    for chunk in resp.iter_content(64 * 1024):
                        size += len(chunk)
                        if size > limit:
                            resp.close()
                            raise _TooLarge(limit)
                        chunks.append(chunk)
                    resp._content = b"".join(chunks)  # noqa: SLF001 - requests' own cache slot
                    resp._content_consumed = True  # noqa: SLF001
                outcome.response = resp
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                outcome.error = exc
            finally:
                done.set()

        worker = threading.Thread(target=work, name=f"imgedit-http-{self.service}", daemon=True)
        self.stats["requests"] += 1
        worker.start()
        last_report = time.monotonic()
        while not done.wait(WAIT_SLICE_S):
            if self.hooks.cancelled():
                self.close()
                raise Cancelled("cancelled by the user")
            if self.remaining() <= 0:
                self.close()
                if not idempotent:
                    raise self._uncertain(f"the {self.deadline_s:.0f} s deadline passed before it answered")
                raise self.deadline_error(f"a {method} request")
            now = time.monotonic()
            if now - last_report >= 1.0:
                last_report = now
                text = self._status or (progress_text(self.elapsed()) if progress_text else "")
                if text:
                    self.progress(text)
        self._status = ""
        if outcome.error is not None:
            raise self._map_exception(outcome.error, method, url, idempotent, clipped, read)
        resp = outcome.response
        assert resp is not None
        self.stats["bytes_received"] += len(resp.content or b"")
        body = getattr(resp.request, "body", None)
        if body:
            self.stats["bytes_sent"] += len(body)
        return resp

    def _uncertain(self, why: str) -> UncertainOutcome:
        return UncertainOutcome(
            f"{self.label} did not answer ({why}); the request was not sent again because it may already "
            f"be charged: check your {self.label} account history before running it again.",
            provider=self.service,
        )

    def _map_exception(self, error: BaseException, method: str, url: str, idempotent: bool,
                       clipped: bool, read: float) -> BaseException:
        if isinstance(error, Cancelled):
            return error
        if isinstance(error, _Aborted):
            if error.reason == "cancelled" or self.hooks.cancelled():
                return Cancelled("cancelled by the user")
            what = f"HTTP {error.status}" if error.status else "a network error"
            return ProviderFailed(
                f"{self.label} answered {what} and asked to wait {error.wait:.0f} s, which is past the "
                f"{self.deadline_s:.0f} s deadline: try again later.",
                provider=self.service,
                status=error.status,
            )
        if isinstance(error, _RedirectRefused):
            return ProviderFailed(
                f"{self.label} redirected the request to another host ({self.redact(error.host)}); ImgEdit did not "
                f"follow because the request carries your key: check {URL_ENV[self.service]}.",
                provider=self.service,
            )
        if isinstance(error, _TooLarge):
            return ProviderFailed(f"{self.label} sent a file larger than {error.limit // (1024 * 1024)} MiB; refused.",
                                  provider=self.service)
        if isinstance(error, ProviderError):
            error.args = (self.redact(error.args[0]),) + error.args[1:] if error.args else error.args
            return error
        kind = _kind_of(error)
        host = self.redact(host_of(url))
        tries = f" after {self.http.retries + 1} tries" if self.http.retries else ""
        if kind == "read_timeout":
            if not idempotent:
                return self._uncertain(
                    "the deadline passed first" if clipped else f"no answer within {read:.0f} s"
                )
            if clipped:
                return self.deadline_error(f"a {method} request")
            return NetworkError(f"{self.label} ({host}) did not answer within {read:.0f} s{tries}: "
                                f"check your network or try again later.", provider=self.service)
        if kind == "dropped":
            if not idempotent:
                return self._uncertain("the connection dropped before the answer")
            return NetworkError(f"{self.label} ({host}) dropped the connection{tries}: try again later.",
                                provider=self.service)
        if kind == "connect":
            return NetworkError(
                f"could not connect to {self.label} at {host}{tries}: check your network, or "
                f"{URL_ENV[self.service]} if you set it.",
                provider=self.service,
            )
        if kind == "tls":
            return NetworkError(f"the TLS connection to {self.label} at {host} failed: check the system clock, "
                                f"a proxy, or {URL_ENV[self.service]}.", provider=self.service)
        if kind == "redirects":
            return ProviderFailed(f"{self.label} redirected too many times at {host}.", provider=self.service)
        if kind == "url":
            return ProviderFailed(f"{self.label} gave an unusable link ({self.redact(_one_line(str(url)))}).",
                                  provider=self.service)
        return ProviderFailed(f"{self.label} request failed: {self.redact(_one_line(type(error).__name__))}.",
                              provider=self.service)

    def request(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        check: Optional[Callable[[requests.Response], None]] = None,
        read_timeout: Optional[float] = None,
        progress_text: Optional[Callable[[float], str]] = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send a request to the provider and return a 2xx response (``check`` may raise more).

        ``idempotent=False`` marks a request that may be charged: it is retried only when the
        server cannot have received it (connect errors) or said so (429, 502/503/504); a read
        timeout or dropped connection raises :class:`UncertainOutcome`. 429 (and a ``check``
        raising :class:`RateLimited`) waits ``Retry-After`` / ``retry_after`` and tries again up
        to ``rate_limit_retries`` times while the deadline allows.
        """
        rate_tries = 0
        while True:
            response = self._send(method, url, idempotent=idempotent, read_timeout=read_timeout,
                                  progress_text=progress_text, **kwargs)
            try:
                if response.status_code >= 400:
                    tries = 1 + (self.http.retries if response.status_code in RETRY_STATUSES else 0)
                    raise error_from_response(self.service, response, tries=tries)
                if check is not None:
                    check(response)
                return response
            except RateLimited as limited:
                rate_tries += 1
                wait = limited.retry_after if limited.retry_after is not None else min(30.0, 2.0 ** rate_tries)
                if rate_tries > self.http.rate_limit_retries or wait > self.remaining():
                    raise self.scrub(limited) from None
                self.stats["rate_limit_waits"] += 1
                log.info("%s rate limited; waiting %.1f s before retry %d", self.label, wait, rate_tries)
                self.wait(wait, text=f"{self.label}: rate limited, retrying in {{left:.0f}} s")
            except ProviderError as error:
                raise self.scrub(error) from None

    def scrub(self, error: ProviderError) -> ProviderError:
        """``error`` with this call's secrets removed from its message (provider bodies can echo keys)."""
        if error.args:
            error.args = (self.redact(error.args[0]),) + tuple(error.args[1:])
        return error

    def json_of(self, response: requests.Response) -> Any:
        """The response's JSON body, or ProviderFailed naming what came instead."""
        try:
            return response.json()
        except ValueError:
            ctype = response.headers.get("Content-Type", "?")
            raise ProviderFailed(
                f"{self.label} answered {ctype} where JSON was expected (HTTP {response.status_code}); "
                f"check {URL_ENV[self.service]} if you set it.",
                provider=self.service,
                status=response.status_code,
            ) from None

    def download(self, url: str, *, max_bytes: Optional[int] = None) -> bytes:
        """GET an output link without any key; 403/404 raise :class:`NotReady`."""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise ProviderFailed(f"{self.label} returned an output link that is not http(s); refused.",
                                 provider=self.service)
        response = self._send("GET", url, idempotent=True, read_timeout=None, progress_text=None,
                              stream=True, max_bytes=max_bytes, headers={"Accept": "image/*, */*"})
        if response.status_code in NOT_READY_STATUSES:
            raise NotReady(response.status_code)
        if response.status_code >= 400:
            tries = 1 + (self.http.retries if response.status_code in RETRY_STATUSES else 0)
            if response.status_code in (401, 410):
                raise ProviderFailed(
                    f"{self.label}'s output link answered HTTP {response.status_code} (expired or private): run the edit again.",
                    provider=self.service, status=response.status_code)
            raise self.scrub(error_from_response(self.service, response, tries=tries))
        return response.content


class _TooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(limit)
        self.limit = limit


__all__ = [
    "SERVICES",
    "URL_ENV",
    "DEFAULT_URLS",
    "KEY_HEADERS",
    "base_url",
    "same_origin",
    "body_message",
    "error_for",
    "error_from_response",
    "CancellableRetry",
    "KeySafeSession",
    "NotReady",
    "ProviderHttp",
    "HttpCall",
]
