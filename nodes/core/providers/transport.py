"""The transport under :class:`.http.HttpCall`: retries, key-safe redirects, Cancel that really stops.

- :class:`CancellableRetry`: urllib3's Retry whose waits sleep in 0.2 s slices, stop on Cancel and
  never run past the call's deadline.
- :class:`KeySafeSession`: drops key headers when a redirect leaves the host (requests itself drops
  only ``Authorization``) and refuses a redirect that would re-send a body carrying the key.
- :class:`Transport`: one session per call; each request runs on a helper thread so the caller can
  give up within 0.2 s, and :meth:`Transport.abort` shuts the sockets of requests in flight, so
  after a Cancel no thread or connection outlives it by more than a moment (instead of living
  until its read timeout).
"""

from __future__ import annotations

import socket
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    InvalidHeader,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

from .urls import host_of

WAIT_SLICE_S = 0.2

#: Headers that may carry a key; dropped whenever a redirect leaves the original host.
KEY_HEADERS = frozenset(
    h.lower() for h in ("X-Dezgo-Key", "API-Key", "X-API-Key", "Authorization", "Proxy-Authorization", "Cookie")
)
#: Answers after which an idempotent request (a poll, a download) is sent again.
RETRY_STATUSES = frozenset({502, 503, 504})
#: Answers that say a charged request was not done, so it may be sent again (429 is retried by
#: :meth:`.http.HttpCall.request` itself, after its Retry-After). 500/502/504 can hide a job that
#: ran and was billed: never re-sent.
CHARGED_RETRY_STATUSES = frozenset({503})


class Aborted(Exception):
    """Raised inside a worker when its call was cancelled or a retry wait would pass the deadline."""

    def __init__(self, reason: str, wait: float = 0.0, status: Optional[int] = None):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.status = status


class RedirectRefused(Exception):
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

    def parse_retry_after(self, retry_after: str) -> float:
        # urllib3 takes whole seconds or an HTTP date and raises on anything else ("0.5"); a
        # Retry-After it cannot read must not fail the call: fractions are read, the rest -> backoff.
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
        try:
            return super().parse_retry_after(retry_after)
        except InvalidHeader:
            return 0.0

    def increment(self, *args: Any, **kwargs: Any) -> "CancellableRetry":
        # A Cancel closes the call's sockets; the failed read must not start a fresh attempt.
        if self.abort is not None and self.abort():
            raise Aborted("cancelled")
        return super().increment(*args, **kwargs)

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
            raise Aborted("deadline", wait, status)
        if self.on_wait is not None:
            self.on_wait(wait, status)
        end = time.monotonic() + wait
        while True:
            if self.abort is not None and self.abort():
                raise Aborted("cancelled", wait, status)
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
                    raise RedirectRefused(host_of(prepared_request.url or ""))

    def __repr__(self) -> str:
        return "<KeySafeSession>"


class _Connections:
    """The connections a call opened, so a Cancel can shut their sockets from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: "weakref.WeakSet[Any]" = weakref.WeakSet()

    def add(self, connection: Any) -> None:
        with self._lock:
            self._connections.add(connection)

    def shut(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            sock = getattr(connection, "sock", None)
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a recv() blocked in the helper thread
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass


def _tracking_pools(track: Callable[[Any], None]) -> dict[str, type]:
    class TrackedHTTPPool(HTTPConnectionPool):
        def _new_conn(self) -> Any:
            connection = super()._new_conn()
            track(connection)
            return connection

    class TrackedHTTPSPool(HTTPSConnectionPool):
        def _new_conn(self) -> Any:
            connection = super()._new_conn()
            track(connection)
            return connection

    return {"http": TrackedHTTPPool, "https": TrackedHTTPSPool}


class _TrackingAdapter(HTTPAdapter):
    """HTTPAdapter whose pools record every connection they open (and whose Retry is set per request)."""

    def __init__(self, connections: _Connections, **kwargs: Any):
        self._imgedit_connections = connections
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _tracking_pools(self._imgedit_connections.add)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):
            manager.pool_classes_by_scheme = _tracking_pools(self._imgedit_connections.add)
        return manager


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


def kind_of(error: BaseException) -> str:
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


class TooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(limit)
        self.limit = limit


@dataclass
class Outcome:
    """What a helper thread brings back: the response (and, for a streamed download, its body)."""

    response: Optional[requests.Response] = None
    body: Optional[bytes] = None
    error: Optional[BaseException] = None


class Transport:
    """One call's session; runs each request on a helper thread that :meth:`abort` can stop."""

    def __init__(self, secrets: Iterable[str], thread_name: str):
        self._connections = _Connections()
        self.session = KeySafeSession(secrets)
        self.adapter = _TrackingAdapter(self._connections, pool_connections=2, pool_maxsize=2)
        self.session.mount("http://", self.adapter)
        self.session.mount("https://", self.adapter)
        self._thread_name = thread_name

    def start(self, method: str, url: str, *, retry: Retry, timeout: tuple[float, float],
              max_bytes: Optional[int] = None, **kwargs: Any) -> tuple[threading.Event, Outcome]:
        """Send on a helper thread; the event is set when ``Outcome`` is filled.

        ``max_bytes`` streams a download and refuses one larger than that (a 2xx body only; an
        error body is read whole, it is small).
        """
        self.adapter.max_retries = retry
        outcome = Outcome()
        done = threading.Event()
        session = self.session

        def work() -> None:
            try:
                response = session.request(method, url, timeout=timeout, allow_redirects=True,
                                           stream=max_bytes is not None, **kwargs)
                if max_bytes is not None and response.status_code < 400:
                    outcome.body = _read_limited(response, max_bytes)
                outcome.response = response
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                outcome.error = exc
            finally:
                done.set()

        threading.Thread(target=work, name=self._thread_name, daemon=True).start()
        return done, outcome

    def abort(self) -> None:
        """Close the session and shut the sockets of requests still in flight."""
        try:
            self.session.close()
        except Exception:  # pragma: no cover
            pass
        self._connections.shut()


def _read_limited(response: requests.Response, limit: int) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > limit:
            response.close()
            raise TooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


__all__ = ["WAIT_SLICE_S", "KEY_HEADERS", "RETRY_STATUSES", "CHARGED_RETRY_STATUSES", "Aborted", "RedirectRefused",
           "CancellableRetry", "KeySafeSession", "Transport", "Outcome", "TooLarge", "NotReady", "kind_of"]
