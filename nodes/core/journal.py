"""A journal of paid remote calls: a folder with one record per call, so paid work is never lost
or paid twice (ComfyUI-free).

A record is a sub-folder named by the request's digest (provider, endpoint, every body field except
the key, the bytes of every picture and mask sent) holding ``record.json`` and, once done, the
result pictures as ``0.png``, ``1.png``... ``record.json`` says the state:

- ``submitted``: written before the request goes out; ``job`` holds the job id once the service
  answered with one (what :mod:`.paid_calls` needs to resume polling it);
- ``done``: the results are on disk (with their seeds, job ids, metadata and warnings);
- ``failed``: the service refused the call or the job failed (a new call is made next time).

While a process makes the call, ``claim.json`` beside it names that process (:mod:`.journal_claims`):
other processes sharing the folder wait for it instead of paying for the same call.

Every write is atomic (a temporary file in the same folder, fsync, rename), so a power loss leaves
the previous state or the new one; a record that still cannot be read is skipped with a warning.
A record never holds a key or a key-bearing URL: clients put keys in headers or bodies, and the
body fields recorded are the ones a client builds *without* the key.

Bounds: total size and age (defaults 2 GB and 30 days), oldest records deleted first. Settings:
``IMGEDIT_JOURNAL=0`` (or off/false/no) turns it off, as does ``{"journal": false}`` in
``<user dir>/imgedit/settings.json`` (the ImgEdit settings panel); ``IMGEDIT_JOURNAL_DIR`` moves it;
``IMGEDIT_JOURNAL_MAX_GB`` / ``IMGEDIT_JOURNAL_MAX_DAYS`` change the caps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from .files import atomic_write
from .journal_claims import CLAIM_FILE, Claim, claimed, heartbeat_from_env

log = logging.getLogger("comfyui_imgedit")

FORMAT = 1
RECORD_FILE = "record.json"
DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_AGE_S = 30 * 24 * 3600.0
SETTINGS_FILE = "settings.json"
STATES = ("submitted", "done", "failed")
_OFF_WORDS = ("0", "off", "false", "no")

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------------------------
# Where it lives and whether it is on


def cache_folder() -> Path:
    """The platform's user cache folder for the CLI's journal (XDG on Linux)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "comfyui-imgedit" / "journal"


def journal_folder(user_dir: Optional[PathLike] = None) -> Path:
    """``IMGEDIT_JOURNAL_DIR``, else ``<user_dir>/imgedit/journal`` (ComfyUI), else :func:`cache_folder`."""
    override = os.environ.get("IMGEDIT_JOURNAL_DIR", "").strip()
    if override:
        return Path(override)
    if user_dir is not None:
        return Path(user_dir) / "imgedit" / "journal"
    return cache_folder()


def settings_file(user_dir: PathLike) -> Path:
    return Path(user_dir) / "imgedit" / SETTINGS_FILE


def env_disabled() -> bool:
    return os.environ.get("IMGEDIT_JOURNAL", "").strip().lower() in _OFF_WORDS


def panel_enabled(user_dir: Optional[PathLike]) -> bool:
    """The settings panel's switch (``settings.json``); on when absent or unreadable."""
    if user_dir is None:
        return True
    try:
        data = json.loads(settings_file(user_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return not (isinstance(data, dict) and data.get("journal") is False)


def set_panel_enabled(user_dir: PathLike, enabled: bool) -> None:
    """Store the settings panel's switch in ``<user_dir>/imgedit/settings.json`` (atomic)."""
    path = settings_file(user_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data["journal"] = bool(enabled)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _env_number(name: str, default: float, scale: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        log.warning("ImgEdit: %s=%r is not a number of 0 or more; the journal keeps its default cap.", name, raw)
        return default
    return value * scale


def open_journal(user_dir: Optional[PathLike] = None) -> Optional["Journal"]:
    """The journal the host should use, or None when it is turned off (environment or panel)."""
    if env_disabled() or not panel_enabled(user_dir):
        return None
    return Journal(journal_folder(user_dir),
                   max_bytes=int(_env_number("IMGEDIT_JOURNAL_MAX_GB", DEFAULT_MAX_BYTES, 1024**3)),
                   max_age_s=_env_number("IMGEDIT_JOURNAL_MAX_DAYS", DEFAULT_MAX_AGE_S, 24 * 3600.0))


# --------------------------------------------------------------------------------------------
# Digest and records


def request_digest(provider: str, endpoint: str, fields: dict[str, Any], pictures: Iterable[bytes]) -> str:
    """SHA-256 over the provider, the endpoint, the body fields (canonical JSON, key excluded by the
    caller) and every picture's bytes, each length-prefixed so no two requests can collide by concatenation."""
    digest = hashlib.sha256()
    head = json.dumps({"provider": provider, "endpoint": endpoint, "fields": fields}, sort_keys=True,
                      separators=(",", ":"), default=str, ensure_ascii=True).encode("utf-8")
    for part in (head, *pictures):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@dataclass
class Record:
    """One paid call as ``record.json`` holds it."""

    digest: str
    provider: str
    endpoint: str
    state: str = "submitted"
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    job_id: Optional[str] = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def started_text(self) -> str:
        """When the call was first made, as the user reads it in ``info``."""
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.created))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "digest": self.digest, "provider": self.provider, "endpoint": self.endpoint,
                "state": self.state, "created": self.created, "updated": self.updated, "job_id": self.job_id,
                "result": self.result, "error": self.error}

    @classmethod
    def from_json(cls, data: Any) -> "Record":
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("state") not in STATES:
            raise ValueError("not a journal record")
        job_id = data.get("job_id")
        return cls(digest=str(data["digest"]), provider=str(data["provider"]), endpoint=str(data["endpoint"]),
                   state=data["state"], created=float(data["created"]), updated=float(data["updated"]),
                   job_id=None if job_id in (None, "") else str(job_id),
                   result=data.get("result") if isinstance(data.get("result"), dict) else {},
                   error=str(data.get("error") or ""))


#: When each folder's caps were last applied (:meth:`Journal.enforce_caps_now_and_then`).
_caps_applied: dict[str, float] = {}


class Journal:
    """The folder of records. Thread-safe for different digests (each write is one atomic rename).

    ``caps_every_s``: after a run, the caps are applied at most this often per folder (a scan of
    3000 records takes ~0.1 s on the CI machine; a run should not pay it every time).
    ``heartbeat_s``: how often a process making a call refreshes its claim (:mod:`.journal_claims`;
    default ``IMGEDIT_JOURNAL_HEARTBEAT_S`` or 5 s; a claim silent for 6 beats is taken over).
    """

    def __init__(self, folder: PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_age_s: float = DEFAULT_MAX_AGE_S, caps_every_s: float = 60.0,
                 heartbeat_s: Optional[float] = None):
        self.folder = Path(folder)
        self.heartbeat_s = float(heartbeat_s) if heartbeat_s else heartbeat_from_env()
        self.max_bytes = int(max_bytes)
        self.max_age_s = float(max_age_s)
        self.caps_every_s = float(caps_every_s)
        #: why the last write failed (a full disk, a read-only folder); a paid call never fails over it
        self.write_error: Optional[str] = None

    def __repr__(self) -> str:
        return f"Journal({str(self.folder)!r})"

    def _dir(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("a journal digest is 64 hex digits")
        return self.folder / digest

    def read(self, digest: str) -> Optional[Record]:
        """The record of ``digest``; None when there is none or it cannot be read (warned)."""
        path = self._dir(digest) / RECORD_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning("ImgEdit journal: cannot read %s (%s); the call is made as new.", path, type(error).__name__)
            return None
        try:
            record = Record.from_json(json.loads(raw.decode("utf-8")))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            log.warning("ImgEdit journal: %s is corrupt or half-written; it is skipped and the call is made as new.",
                        path)
            return None
        return record if record.digest == digest else None

    def claim(self, digest: str, check_cancelled) -> "contextlib.AbstractContextManager[Optional[Claim]]":
        """Claim the call ``digest`` against other processes (:func:`.journal_claims.claimed`): waits
        while a live one makes it; yields None when it got done meanwhile."""
        return claimed(self._dir(digest), heartbeat_s=self.heartbeat_s, is_done=lambda: self._is_done(digest),
                       check_cancelled=check_cancelled)

    def _is_done(self, digest: str) -> bool:
        """Whether the record says done (read quietly: it is asked ten times a second while waiting)."""
        try:
            return json.loads((self._dir(digest) / RECORD_FILE).read_bytes()).get("state") == "done"
        except (OSError, ValueError, AttributeError):
            return False

    def write(self, record: Record) -> Record:
        """Store ``record`` (atomically), stamping its update time; a failure is logged and kept in
        :attr:`write_error`, never raised (the paid call goes on)."""
        record.updated = time.time()
        folder = self._dir(record.digest)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / RECORD_FILE, json.dumps(record.to_json(), indent=1, default=str).encode("utf-8"))
        except OSError as error:
            self._write_failed(error)
        return record

    def save_results(self, record: Record, pngs: list[bytes], **result: Any) -> Record:
        """Write the result pictures, then mark ``record`` done (so a done record's files all exist)."""
        folder = self._dir(record.digest)
        names = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for index, png in enumerate(pngs):
                name = f"{index}.png"
                atomic_write(folder / name, png)
                names.append(name)
        except OSError as error:
            self._write_failed(error)
            return record
        record.state = "done"
        record.error = ""
        record.result = {"files": names, **result}
        return self.write(record)

    def _write_failed(self, error: OSError) -> None:
        self.write_error = f"{type(error).__name__}: {error.strerror or error}"
        log.warning("ImgEdit journal: cannot write in %s (%s); paid calls are not protected against being "
                    "paid twice until it can.", self.folder, self.write_error)

    def result_files(self, record: Record) -> Optional[list[bytes]]:
        """The PNG bytes of a done record, or None (warned) when one is missing."""
        folder = self._dir(record.digest)
        try:
            return [(folder / str(name)).read_bytes() for name in record.result.get("files", [])]
        except OSError:
            log.warning("ImgEdit journal: a result picture of %s is missing; the call is made as new.", folder)
            return None

    # -- bounds and summary ------------------------------------------------------------------

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(last update, bytes, folder) of every record folder, oldest first."""
        entries = []
        try:
            children = list(self.folder.iterdir())
        except OSError:
            return []
        for child in children:
            if not child.is_dir():
                continue
            size, newest = 0, 0.0
            try:
                for item in child.iterdir():
                    stat = item.stat()
                    size += stat.st_size
                    newest = max(newest, stat.st_mtime)
            except OSError:
                continue
            entries.append((newest, size, child))
        entries.sort(key=lambda entry: entry[0])
        return entries

    def summary(self) -> tuple[int, int]:
        """(records, bytes) on disk."""
        entries = self._entries()
        return len(entries), sum(size for _, size, _ in entries)

    def enforce_caps(self, keep: Iterable[str] = ()) -> int:
        """Delete records older than ``max_age_s``, then the oldest until the total fits ``max_bytes``;
        the digests in ``keep`` (the calls of the running edit) are never deleted. Returns how many went."""
        keep = set(keep)
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        cutoff = time.time() - self.max_age_s
        removed = 0
        for updated, size, folder in entries:
            if folder.name in keep or (folder / CLAIM_FILE).exists():  # a call running here or elsewhere
                continue
            if updated >= cutoff and total <= self.max_bytes:
                break
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
            removed += 1
        return removed

    def enforce_caps_now_and_then(self, keep: Iterable[str] = ()) -> int:
        """:meth:`enforce_caps`, unless this folder's caps were applied less than ``caps_every_s`` ago."""
        now = time.monotonic()
        last = _caps_applied.get(str(self.folder))
        if last is not None and now - last < self.caps_every_s:
            return 0
        _caps_applied[str(self.folder)] = now
        return self.enforce_caps(keep)

    def summary_line(self) -> str:
        records, size = self.summary()
        return (f"ImgEdit journal of paid calls: {records} record(s), {size / 1e6:.1f} MB in {self.folder} "
                f"(caps {self.max_bytes / 1024**3:g} GB, {self.max_age_s / 86400:g} days; IMGEDIT_JOURNAL=0 turns it off)")


__all__ = ["Journal", "Record", "request_digest", "open_journal", "journal_folder", "cache_folder",
           "panel_enabled", "set_panel_enabled", "env_disabled", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_AGE_S"]
