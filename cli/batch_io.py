"""Files, report and progress bar of the command line's folder mode (:mod:`.batch`)."""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TextIO

from ..nodes.core.errors import InputError
from ..nodes.core.files import atomic_write

PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
REPORT = "report.jsonl"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@dataclass
class Picture:
    """One picture to edit: its files, output name, prompt and seed (``error``: a line that cannot run)."""

    index: int
    image: Path
    name: str
    mask: Optional[Path]
    prompt: str
    negative_prompt: str
    seed: int
    error: str = ""


def is_picture_file(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in PICTURE_SUFFIXES


def count_lines(path: Path) -> int:
    """Non-empty lines, read in chunks (a 10 000-line manifest is never held whole)."""
    with path.open(encoding="utf-8") as lines:
        return sum(1 for text in lines if text.strip())


def load_picture(path: Path, flag: str):
    from ..nodes.core import images as img

    return img.decode_image(_read(path, flag), name=f"{flag} {path.name!r}")


def load_mask(path: Path, flag: str):
    from ..nodes.core import images as img

    return img.decode_mask(_read(path, flag), name=f"{flag} {path.name!r}")


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{flag} {str(path)!r} does not exist.") from None
    except OSError as error:
        raise InputError(f"{flag} {str(path)!r} cannot be read ({type(error).__name__}).") from None


def output_paths(out: Path, name: str, count: int) -> list[Path]:
    """The input's own name; several samples: ``stem_0.ext``, ``stem_1.ext``…"""
    if count == 1:
        return [out / name]
    stem, suffix = Path(name).stem, Path(name).suffix or ".png"
    return [out / f"{stem}_{i}{suffix}" for i in range(count)]


def write_outputs(images, out: Path, name: str) -> list[Path]:
    """Save each result in the input's format (by its extension), atomically: a killed run never leaves
    half a picture that a re-run would take as done."""
    from PIL import Image

    from ..nodes.core import images as img

    paths = output_paths(out, name, images.shape[0])
    for picture, path in zip(images, paths):
        kind = Image.registered_extensions().get(path.suffix.lower(), "PNG")
        options = {"quality": 95} if kind in ("JPEG", "WEBP") else {}
        encoded = io.BytesIO()
        img.tensor_to_pil(picture).save(encoded, format=kind, **options)
        # an ordinary file (not the private mode of a temp file); no fsync: the journal keeps the result
        atomic_write(path, encoded.getvalue(), mode=0o666 & ~_UMASK, durable=False)
    return paths


# --------------------------------------------------------------------------------------------
# The report


class OldReport:
    """The done lines of an earlier run's report, by input (read line by line)."""

    def __init__(self, lines: dict[str, dict[str, Any]]):
        self.lines = lines

    @classmethod
    def read(cls, path: Path) -> "OldReport":
        lines: dict[str, dict[str, Any]] = {}
        try:
            with path.open(encoding="utf-8") as handle:
                for text in handle:
                    try:
                        line = json.loads(text)
                    except ValueError:
                        continue  # a line cut by a crash: that picture is simply done again (journal)
                    if isinstance(line, dict) and line.get("status") == "done" and isinstance(line.get("input"), str):
                        lines[line["input"]] = line
        except OSError:
            pass
        return cls(lines)

    def done_line(self, image: str, key: str) -> Optional[dict[str, Any]]:
        """The earlier line of ``image`` when it was done for the same request and its outputs still exist."""
        line = self.lines.get(image)
        if line is None or line.get("request") != key or not line.get("outputs"):
            return None
        if not all(Path(p).is_file() for p in line["outputs"]):
            return None
        return line


class ReportWriter:
    """Writes ``report.jsonl`` as pictures finish, into a side file renamed over the old report at the
    end; earlier done lines of pictures this run did not reach (a Ctrl-C) are carried over, so the
    report keeps one line per picture known done."""

    def __init__(self, path: Path, old: OldReport):
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.old = old
        self.seen: set[str] = set()
        self.cost_usd = 0.0
        self.fatal = ""
        self.fatal_auth = False
        self._handle: TextIO = self.partial.open("w", encoding="utf-8")

    def add(self, line: dict[str, Any]) -> None:
        kind = line.pop("fatal", None)
        if kind and not self.fatal:
            self.fatal, self.fatal_auth = line["error"], kind == "auth"
        self.seen.add(line["input"])
        if isinstance(line.get("cost_usd"), (int, float)):
            self.cost_usd = round(self.cost_usd + line["cost_usd"], 6)
        self._handle.write(json.dumps(line, default=str) + "\n")
        self._handle.flush()

    def close(self) -> None:
        for image, line in self.old.lines.items():
            if image not in self.seen:
                self._handle.write(json.dumps(line, default=str) + "\n")
        self._handle.close()
        os.replace(self.partial, self.path)


# --------------------------------------------------------------------------------------------
# The progress bar


class BatchProgress:
    """``[#####.....] 120/500 done 118, failed 2, 3.1/s, 2:03 left`` on stderr: redrawn in place on a
    terminal (at most 10 times a second), a plain line every 2 s otherwise (logs, CI)."""

    WIDTH = 24

    def __init__(self, total: int, stream: TextIO):
        self.total = total
        self.stream = stream
        self.counts = {"done": 0, "failed": 0, "skipped": 0}
        self.started = time.monotonic()
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._drawn = 0.0

    def add(self, status: str) -> None:
        self.counts[status] += 1
        self.refresh()

    def refresh(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._drawn < (0.1 if self.tty else 2.0):
            return
        self._drawn = now
        text = self.line(now)
        self.stream.write(("\r" + text + "\033[K" + ("\n" if final else "")) if self.tty else text + "\n")
        self.stream.flush()

    def line(self, now: float) -> str:
        finished = sum(self.counts.values())
        worked = self.counts["done"] + self.counts["failed"]
        elapsed = max(now - self.started, 1e-6)
        rate = worked / elapsed
        left = self.total - finished
        eta = _clock(left / rate) if rate > 0 else "?"
        filled = int(self.WIDTH * finished / max(self.total, 1))
        skipped = f", skipped {self.counts['skipped']}" if self.counts["skipped"] else ""
        return (f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {finished}/{self.total} done {self.counts['done']}, "
                f"failed {self.counts['failed']}{skipped}, {rate:.1f}/s, {eta} left")

    def close(self) -> None:
        self.refresh(final=True)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


__all__ = ["Picture", "PICTURE_SUFFIXES", "REPORT", "BatchProgress", "OldReport", "ReportWriter", "count_lines",
           "is_picture_file", "load_picture", "load_mask", "output_paths", "write_outputs"]
