"""Atomic file writes for the pack's own files (the key file, the journal of paid calls)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional


def atomic_write(path: Path, data: bytes, mode: Optional[int] = None, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so a crash or power loss leaves the old file or the new one, never
    half of it: a temporary file in the same folder, fsync, rename. ``mode`` is set on the temporary
    file before anything is written (0o600: never readable by others, not even for a moment).
    ``durable=False`` skips the fsync, for files worthless after a power loss (a journal claim's
    heartbeat): readers still never see half of it."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=str(path.parent))
    try:
        if mode is not None:
            try:
                os.fchmod(fd, mode)
            except (AttributeError, OSError):  # pragma: no cover - Windows
                pass
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


__all__ = ["atomic_write"]
