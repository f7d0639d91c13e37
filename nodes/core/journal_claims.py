"""Cross-process claims on journal records (ComfyUI-free): two ComfyUI instances on one install, or
machines sharing the journal folder, never pay for the same call twice.

Whoever makes a journaled call first creates ``<digest>/claim.json`` with ``O_CREAT | O_EXCL`` (atomic on
local disks, SMB and NFSv3+; no ``fcntl`` locks, which network folders often ignore). It holds the owner
(host, pid, a random token) and a beat counter that a thread rewrites every ``heartbeat_s`` while the
call runs; the file goes when the call ends, whatever the outcome (a Cancel too: its record stays
``submitted`` and whoever comes next resumes the job).

Another process that finds the claim waits: as soon as the record is ``done`` it takes the result from
disk; when the claim goes it claims the record itself (and finds it done, failed, or submitted to be
resumed). A claim is stale when its owner is a process of this host that no longer exists, or when its
content has not changed for ``STALE_BEATS`` heartbeats (the owner's or the waiter's, the longer) by the
waiter's own clock (so clocks of machines sharing the folder never need to agree). A stale claim is taken over through a second create-exclusive
file named after the stale content, so of several waiters exactly one takes it; the record is then
handled as today's ``submitted`` one (job resumed, or the call made again with the warning).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from .files import atomic_write

log = logging.getLogger("comfyui_imgedit")

CLAIM_FILE = "claim.json"
TAKEOVER_PREFIX = "claim.takeover-"
DEFAULT_HEARTBEAT_S = 5.0
#: a claim whose content did not change for this many heartbeats is stale
STALE_BEATS = 6
_HOST = socket.gethostname()


def heartbeat_from_env() -> float:
    """``IMGEDIT_JOURNAL_HEARTBEAT_S`` (tests use short beats), else :data:`DEFAULT_HEARTBEAT_S`."""
    raw = os.environ.get("IMGEDIT_JOURNAL_HEARTBEAT_S", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_HEARTBEAT_S
    except ValueError:
        value = DEFAULT_HEARTBEAT_S
    return value if value > 0 else DEFAULT_HEARTBEAT_S


class Claim:
    """A claim this process holds on one record; beats until :meth:`release`."""

    def __init__(self, folder: Path, heartbeat_s: float, took_over: bool = False):
        self.folder = folder
        self.path = folder / CLAIM_FILE
        self.token = secrets.token_hex(8)
        self.took_over = took_over
        self.heartbeat_s = heartbeat_s
        self.beats = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def content(self) -> bytes:
        return json.dumps({"host": _HOST, "pid": os.getpid(), "token": self.token, "beats": self.beats,
                           "heartbeat_s": self.heartbeat_s, "since": time.time()}, sort_keys=True).encode("utf-8")

    def start_beating(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="imgedit-journal-claim", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            owner = read_owner(self.path)
            if owner is None or owner.get("token") != self.token:
                log.warning("ImgEdit journal: another process took over the call of %s (this one stopped beating "
                            "for too long); its outcome is still recorded.", self.folder.name)
                return
            self.beats += 1
            try:
                atomic_write(self.path, self.content(), durable=False)
            except OSError:
                pass  # a full or read-only folder: the journal already warns about writes

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        owner = read_owner(self.path)
        if owner is not None and owner.get("token") == self.token:
            _unlink(self.path)
        for item in _takeover_files(self.folder):
            _unlink(item)


def read_owner(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _takeover_files(folder: Path) -> list[Path]:
    try:
        return [item for item in folder.iterdir() if item.name.startswith(TAKEOVER_PREFIX)]
    except OSError:
        return []


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` only if it does not exist; False when it does."""
    try:
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno == errno.EEXIST:
            return False
        raise
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)  # no fsync: after a power loss no process holds a claim anyway
    return True


def _owner_beat(owner: Optional[dict]) -> float:
    """The owner's own heartbeat interval (processes may be set differently), capped at 10 minutes."""
    try:
        return min(600.0, max(0.0, float((owner or {}).get("heartbeat_s") or 0.0)))
    except (TypeError, ValueError):
        return 0.0


def _owner_is_gone(owner: Optional[dict]) -> bool:
    """True when the owner is a process of this host that does not exist any more (a crash, a kill)."""
    if not owner or owner.get("host") != _HOST or sys.platform == "win32":  # os.kill(pid, 0) kills on Windows
        return False
    try:
        pid = int(owner.get("pid"))
    except (TypeError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


@contextlib.contextmanager
def claimed(folder: Path, *, heartbeat_s: float, is_done: Callable[[], bool],
            check_cancelled: Callable[[], None], poll_s: float = 0.1) -> Iterator[Optional[Claim]]:
    """Hold the claim on the record in ``folder`` while the block runs; yields the :class:`Claim`, or
    None when another process finished the call meanwhile (the record is done: read it, call nothing)
    or when the folder cannot be written (the journal warns; the call goes on unprotected).

    Waits while another live process holds it, calling ``check_cancelled`` (which raises to cancel)."""
    try:
        claim = _acquire(folder, heartbeat_s, is_done, check_cancelled, poll_s)
    except OSError as error:
        log.warning("ImgEdit journal: cannot claim %s (%s); the call is not protected against another process "
                    "making it too.", folder, type(error).__name__)
        claim = None
    try:
        yield claim
    finally:
        if claim is not None:
            claim.release()


def _acquire(folder: Path, heartbeat_s: float, is_done: Callable[[], bool], check_cancelled: Callable[[], None],
             poll_s: float) -> Optional[Claim]:
    folder.mkdir(parents=True, exist_ok=True)
    seen: Optional[bytes] = None
    seen_since = time.monotonic()
    while True:
        claim = Claim(folder, heartbeat_s)
        if _create_exclusive(claim.path, claim.content()):
            claim.start_beating()
            return claim
        if is_done():
            return None
        try:
            current = claim.path.read_bytes()
        except FileNotFoundError:
            continue  # released just now: try again at once
        except OSError:
            current = b""
        now = time.monotonic()
        if current != seen:
            seen, seen_since = current, now
        owner = read_owner(claim.path)
        if _owner_is_gone(owner) or now - seen_since >= STALE_BEATS * max(heartbeat_s, _owner_beat(owner)):
            taken = _take_over(claim, current)
            if taken is not None:
                return taken
            seen, seen_since = None, time.monotonic()
        check_cancelled()
        time.sleep(poll_s)


def _take_over(claim: Claim, stale: bytes) -> Optional[Claim]:
    """Replace the stale claim whose content is ``stale``; of several processes trying, one wins."""
    marker = claim.folder / (TAKEOVER_PREFIX + hashlib.sha256(stale).hexdigest()[:16])
    if not _create_exclusive(marker, claim.content()):
        return None
    try:
        current = claim.path.read_bytes()
    except OSError:
        current = None  # released meanwhile: the caller creates a fresh claim
    if current != stale:
        _unlink(marker)  # the owner beat or released meanwhile: not stale after all
        return None
    claim.took_over = True
    atomic_write(claim.path, claim.content(), durable=False)
    log.warning("ImgEdit journal: the process that was making the call of %s stopped; this one takes it over.",
                claim.folder.name)
    claim.start_beating()
    return claim


__all__ = ["Claim", "claimed", "heartbeat_from_env", "read_owner", "CLAIM_FILE", "DEFAULT_HEARTBEAT_S", "STALE_BEATS"]
