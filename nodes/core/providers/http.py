"""The one HTTP layer every remote provider uses: :class:`ProviderHttp` (per-service settings) and
:class:`HttpCall` (one provider call).

Themes live in their own modules: hosts in :mod:`.urls`, answers -> typed errors in
:mod:`.http_errors`, retries / key-safe redirects / cancellable sending in :mod:`.transport`.

A call has its own session, per-request timeouts and an overall deadline; every wait sleeps in
slices of at most 0.2 s and checks Cancel. Retries: connection refused / connect timeouts always
(nothing was sent); 502/503/504 for idempotent requests (polls, downloads); a request that may be
charged (``idempotent=False``: Dezgo's POST, job submissions) only after 503 and 429 (with their
Retry-After), and after 500/502/504, a read timeout or a dropped connection it is NOT re-sent:
:class:`UncertainOutcome` says it may have been charged and where to check. Every message passes
through :func:`keys.redact`; downloads never carry a key.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, Optional
from urllib.parse import urlsplit

import requests

from .. import keys
from ..errors import DeadlineExceeded, InputError, NetworkError, ProviderError, ProviderFailed, RateLimited
from ..request import Cancelled, Hooks
from ..services import SERVICES
from .http_errors import charged_error, error_from_response, one_line
from .transport import (
    CHARGED_RETRY_STATUSES,
    RETRY_STATUSES,
    WAIT_SLICE_S,
    Aborted,
    CancellableRetry,
    NotReady,
    RedirectRefused,
    TooLarge,
    Transport,
    kind_of,
)
from .urls import base_url, host_of

log = logging.getLogger(__name__)

NOT_READY_STATUSES = frozenset({403, 404})
#: HTTP answers to a charged request after which the work may have been done (and billed).
MAYBE_CHARGED_STATUSES = frozenset({500, 502, 504})


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
        self.label = SERVICES[service].label
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.rate_limit_retries = int(rate_limit_retries)
        self.max_download_bytes = int(max_download_bytes)
        #: how long an output link (or a ModelsLab fetch) answering 403/404 counts as "not ready yet"
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
    """One provider call: a transport, the hooks, the deadline, the secrets to scrub.

    Use as a context manager. Methods raise typed errors (:mod:`nodes.core.errors`) or
    :class:`Cancelled`; no message can contain a secret.
    """

    def __init__(self, http: ProviderHttp, hooks: Hooks, deadline_s: float, secrets: list[str]):
        self.http = http
        self.service = http.service
        self.label = http.label
        self.url_env = SERVICES[http.service].url_env
        self.hooks = hooks
        self.started = time.monotonic()
        self.deadline_s = float(deadline_s)
        self.deadline = self.started + self.deadline_s
        self._secrets = list(secrets)
        self._closed = False
        self._transport = Transport(self._secrets, thread_name=f"imgedit-http-{self.service}")
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
        """End the call: the session closes and requests still in flight lose their sockets."""
        self._closed = True
        self._transport.abort()

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
            total=None, connect=n, read=n if idempotent else False, status=n, other=0, redirect=None,
            allowed_methods=frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"}),
            status_forcelist=RETRY_STATUSES if idempotent else CHARGED_RETRY_STATUSES,
            backoff_factor=self.http.backoff, backoff_max=10.0, backoff_jitter=self.http.backoff / 4,
            raise_on_status=False, respect_retry_after_header=True,
            abort=self._aborting, deadline=self.deadline, on_wait=on_wait,
        )

    def _send(self, method: str, url: str, *, idempotent: bool, read_timeout: Optional[float],
              progress_text: Optional[Callable[[float], str]], max_bytes: Optional[int] = None,
              **kwargs: Any) -> tuple[requests.Response, Optional[bytes]]:
        """Send on a helper thread while this thread waits in 0.2 s slices and can give up.

        Returns the response and, for a streamed download (``max_bytes``), its body.
        """
        if self._closed:
            raise Cancelled("the call was closed") if self.hooks.cancelled() else self.deadline_error()
        self.check()
        remaining = self.remaining()
        read = min(read_timeout or self.http.read_timeout, remaining + 0.5)
        connect = min(self.http.connect_timeout, remaining + 0.5)
        clipped = read < (read_timeout or self.http.read_timeout)
        self.stats["requests"] += 1
        done, outcome = self._transport.start(method, url, retry=self._retry(idempotent), timeout=(connect, read),
                                              max_bytes=max_bytes, **kwargs)
        last_report = time.monotonic()
        while not done.wait(WAIT_SLICE_S):
            if self.hooks.cancelled():
                self.close()
                raise Cancelled("cancelled by the user")
            if self.remaining() <= 0:
                self.close()
                if not idempotent:
                    raise charged_error(self.service, f"did not answer before the {self.deadline_s:.0f} s deadline")
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
        response = outcome.response
        assert response is not None
        self.stats["bytes_received"] += len(outcome.body if outcome.body is not None else response.content or b"")
        body = getattr(response.request, "body", None)
        if body:
            self.stats["bytes_sent"] += len(body)
        return response, outcome.body

    def _map_exception(self, error: BaseException, method: str, url: str, idempotent: bool,
                       clipped: bool, read: float) -> BaseException:
        if isinstance(error, Cancelled) or (isinstance(error, Aborted) and
                                            (error.reason == "cancelled" or self.hooks.cancelled())):
            return Cancelled("cancelled by the user")
        if isinstance(error, Aborted):
            what = f"HTTP {error.status}" if error.status else "a network error"
            return ProviderFailed(
                f"{self.label} answered {what} and asked to wait {error.wait:.0f} s, which is past the "
                f"{self.deadline_s:.0f} s deadline: try again later.", provider=self.service, status=error.status)
        if isinstance(error, RedirectRefused):
            return ProviderFailed(
                f"{self.label} redirected the request to another host ({self.redact(error.host)}); ImgEdit did not "
                f"follow because the request carries your key: check {self.url_env}.", provider=self.service)
        if isinstance(error, TooLarge):
            return ProviderFailed(f"{self.label} sent a file larger than {error.limit // (1024 * 1024)} MiB; refused.",
                                  provider=self.service)
        if isinstance(error, ProviderError):
            return self.scrub(error)
        kind = kind_of(error)
        host = self.redact(host_of(url))
        tries = f" after {self.http.retries + 1} tries" if self.http.retries else ""
        if kind in ("read_timeout", "dropped") and not idempotent:
            why = ("did not answer before the deadline" if clipped and kind == "read_timeout" else
                   f"did not answer within {read:.0f} s" if kind == "read_timeout" else
                   "dropped the connection before answering")
            return charged_error(self.service, why)
        if kind == "read_timeout":
            if clipped:
                return self.deadline_error(f"a {method} request")
            return NetworkError(f"{self.label} ({host}) did not answer within {read:.0f} s{tries}: "
                                f"check your network or try again later.", provider=self.service)
        messages = {
            "dropped": f"{self.label} ({host}) dropped the connection{tries}: try again later.",
            "connect": f"could not connect to {self.label} at {host}{tries}: check your network, or "
                       f"{self.url_env} if you set it.",
            "tls": f"the TLS connection to {self.label} at {host} failed: check the system clock, a proxy, "
                   f"or {self.url_env}.",
        }
        if kind in messages:
            return NetworkError(messages[kind], provider=self.service)
        if kind == "redirects":
            return ProviderFailed(f"{self.label} redirected too many times at {host}.", provider=self.service)
        if kind == "url":
            return ProviderFailed(f"{self.label} gave an unusable link ({self.redact(one_line(str(url)))}).",
                                  provider=self.service)
        return ProviderFailed(f"{self.label} request failed: {self.redact(one_line(type(error).__name__))}.",
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

        ``idempotent=False`` marks a request that may be charged: see the module's retry rules.
        429 (and a ``check`` raising :class:`RateLimited`) waits ``Retry-After`` / ``retry_after``
        and tries again up to ``rate_limit_retries`` times while the deadline allows.
        """
        rate_tries = 0
        while True:
            response, _ = self._send(method, url, idempotent=idempotent, read_timeout=read_timeout,
                                     progress_text=progress_text, **kwargs)
            try:
                status = response.status_code
                if status >= 400:
                    if not idempotent and status in MAYBE_CHARGED_STATUSES:
                        raise charged_error(self.service, f"answered HTTP {status}", status=status)
                    retried = status in (RETRY_STATUSES if idempotent else CHARGED_RETRY_STATUSES)
                    raise error_from_response(self.service, response, tries=1 + (self.http.retries if retried else 0))
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
                f"check {self.url_env} if you set it.", provider=self.service, status=response.status_code,
            ) from None

    def download(self, url: str, *, max_bytes: Optional[int] = None) -> bytes:
        """GET an output link without any key; 403/404 raise :class:`NotReady`."""
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise ProviderFailed(f"{self.label} returned an output link that is not http(s); refused.",
                                 provider=self.service)
        response, body = self._send("GET", url, idempotent=True, read_timeout=None, progress_text=None,
                                    max_bytes=max_bytes or self.http.max_download_bytes,
                                    headers={"Accept": "image/*, */*"})
        status = response.status_code
        if status in NOT_READY_STATUSES:
            raise NotReady(status)
        if status in (401, 410):
            raise ProviderFailed(f"{self.label}'s output link answered HTTP {status} (expired or private): "
                                 f"run the edit again.", provider=self.service, status=status)
        if status >= 400:
            tries = 1 + (self.http.retries if status in RETRY_STATUSES else 0)
            raise self.scrub(error_from_response(self.service, response, tries=tries))
        return body if body is not None else response.content


__all__ = ["NOT_READY_STATUSES", "MAYBE_CHARGED_STATUSES", "NotReady", "ProviderHttp", "HttpCall"]
