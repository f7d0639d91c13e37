"""Server-side API keys: resolved from the environment or a key file, never from a node input.

Order: the environment variable of the service's row in :mod:`.services`, then
``<user_dir>/imgedit/keys.json`` (ComfyUI's user directory; written atomically, mode 0600). A key is never returned to
a browser, printed, logged or put in an error: :func:`redact` scrubs any text that might carry one.

Stable Diffusion API v3 is ModelsLab's older brand and uses the ModelsLab key (same vendor; its
row's ``key_owner``), so ``resolve_key("sdapi")`` reads ``MODELSLAB_API_KEY``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Optional, Union
from urllib.parse import quote, quote_plus

from .errors import AuthError, InputError
from .files import atomic_write
from .services import KEY_ALIASES, KEY_ENV, SERVICES

#: Human names for messages.
SERVICE_LABELS = {name: row.label for name, row in SERVICES.items()}

KEY_FILE_NAME = "keys.json"
KEY_DIR_NAME = "imgedit"
_MAX_KEY_LEN = 512
_REDACTED = "[redacted]"
_file_lock = threading.Lock()

PathLike = Union[str, "os.PathLike[str]"]


def _service(service: str) -> str:
    """The key-owning service for ``service`` (aliases resolved); unknown -> InputError."""
    name = str(service or "").strip().lower()
    name = KEY_ALIASES.get(name, name)
    if name not in KEY_ENV:
        allowed = ", ".join(sorted(KEY_ENV) + sorted(KEY_ALIASES))
        raise InputError(f"unknown service {service!r}; use one of {allowed}.")
    return name


def key_file(user_dir: PathLike) -> Path:
    """``<user_dir>/imgedit/keys.json``."""
    return Path(user_dir) / KEY_DIR_NAME / KEY_FILE_NAME


def _read_file(user_dir: Optional[PathLike]) -> dict[str, str]:
    if user_dir is None:
        return {}
    path = key_file(user_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        # Never echo the file's content: it holds keys.
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str) and v.strip()}


def _write_file(user_dir: PathLike, data: dict[str, str]) -> None:
    """Write the key file atomically (temp file in the same folder, fsync, rename), mode 0600."""
    path = key_file(user_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(path.parent, 0o700)
    except OSError:
        pass
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"), mode=0o600)


def _clean_key(key: str) -> str:
    if not isinstance(key, str):
        raise InputError("the key must be text; paste the API key as shown by the provider.")
    key = key.strip()
    if not key:
        raise InputError("the key is empty; paste the API key as shown by the provider.")
    if len(key) > _MAX_KEY_LEN or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InputError("the key has line breaks, control characters or is too long; paste only the key itself.")
    return key


def resolve_key(service: str, user_dir: Optional[PathLike] = None) -> str:
    """The key for ``service``: environment first, then the key file in ``user_dir``.

    Raises :class:`AuthError` with one sentence saying how to set it when there is none.
    """
    name = _service(service)
    env_name = KEY_ENV[name]
    value = os.environ.get(env_name, "").strip()
    if value:
        return value
    stored = _read_file(user_dir).get(name, "").strip()
    if stored:
        return stored
    label = SERVICE_LABELS.get(str(service).strip().lower(), SERVICE_LABELS[name])
    raise AuthError(
        f"No {label} API key found: set the {env_name} environment variable before starting "
        f"ComfyUI, or enter the key in ComfyUI Settings -> ImgEdit.",
        provider=name,
    )


def save_key(service: str, key: str, user_dir: PathLike) -> None:
    """Store ``key`` for ``service`` in the key file (atomic write, 0600)."""
    name = _service(service)
    key = _clean_key(key)
    with _file_lock:
        data = _read_file(user_dir)
        data[name] = key
        _write_file(user_dir, data)


def clear_key(service: str, user_dir: PathLike) -> None:
    """Remove the stored key of ``service`` (the environment variable, if any, stays)."""
    name = _service(service)
    with _file_lock:
        data = _read_file(user_dir)
        if name in data:
            del data[name]
            _write_file(user_dir, data)


def services_with_keys(user_dir: Optional[PathLike]) -> dict[str, bool]:
    """``{service: True/False}`` for every key-owning service (env or file); never the keys."""
    stored = _read_file(user_dir)
    return {
        name: bool(os.environ.get(env, "").strip()) or bool(stored.get(name, "").strip())
        for name, env in KEY_ENV.items()
    }


def redact(text: object, *secrets: Optional[str]) -> str:
    """``str(text)`` with every secret (raw, URL-encoded, JSON-escaped) replaced by ``[redacted]``."""
    out = str(text)
    forms: set[str] = set()
    for secret in secrets:
        if not secret or not isinstance(secret, str):
            continue
        forms.update({secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]})
    # Longest first so a secret inside another form is still caught.
    for form in sorted((f for f in forms if f), key=len, reverse=True):
        out = out.replace(form, _REDACTED)
    return out


__all__ = [
    "KEY_ENV",
    "KEY_ALIASES",
    "SERVICE_LABELS",
    "key_file",
    "resolve_key",
    "save_key",
    "clear_key",
    "services_with_keys",
    "redact",
]
