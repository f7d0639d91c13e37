"""Service hosts: each comes only from its ``IMGEDIT_*_URL`` environment variable (a prefix to which
the documented paths are appended) or the documented default, both named in :mod:`..services`.

Plain ``http://`` is accepted only for loopback hosts (the sandbox), so a key never travels in
clear text; credentials, queries and fragments are refused.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

from ..errors import InputError
from ..services import SERVICES


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
    env, default = SERVICES[service].url_env, SERVICES[service].default_url
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InputError(f"{env} is not a valid URL; set it to a prefix like {default}.") from None
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


__all__ = ["base_url", "same_origin", "host_of"]
