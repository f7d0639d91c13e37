"""Typed errors. Each message is one sentence a user can act on, and never contains a key.

``InputError`` is for bad input to the pack (it names the input and how to fix it).
``ProviderError`` and its subclasses are for what a provider (remote or local) answered.
"""

from __future__ import annotations

from typing import Optional


class ImgEditError(Exception):
    """Base of every error the pack raises on purpose."""


class InputError(ImgEditError, ValueError):
    """A bad input: the message names the input and says how to fix it."""


class MissingDependency(ImgEditError, ImportError):
    """An optional package (diffusers, transformers) is not installed."""


class ProviderError(ImgEditError):
    """A provider could not do the job."""

    def __init__(self, message: str, *, provider: str = "", status: Optional[int] = None):
        super().__init__(message)
        self.provider = provider
        self.status = status


class AuthError(ProviderError):
    """The key is missing, wrong or not allowed to use this endpoint."""


class CreditsError(ProviderError):
    """The account has no credits left."""


class RateLimited(ProviderError):
    """Too many requests; ``retry_after`` is seconds to wait when the provider said so."""

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class InvalidRequest(ProviderError):
    """The provider rejected the request's fields; ``fields`` maps field -> problem."""

    def __init__(self, message: str, *, fields: Optional[dict] = None, **kw):
        super().__init__(message, **kw)
        self.fields = dict(fields or {})


class ProviderFailed(ProviderError):
    """The provider accepted the job but it failed (or answered something unusable)."""


class ContentFiltered(ProviderError):
    """The provider replaced the result because its NSFW filter fired (raised only on request)."""


class NetworkError(ProviderError):
    """The provider could not be reached (DNS, refused, reset)."""


class DeadlineExceeded(ProviderError):
    """The overall deadline passed; the job may still be running on the provider."""


class UncertainOutcome(ProviderError):
    """A charged request got no usable answer (a read timeout, a dropped connection, HTTP 500/502/504);
    it was not re-sent because the work may have been done and billed."""


class JobUnknown(ProviderError):
    """A job being resumed (from the journal) is no longer known to the service."""
