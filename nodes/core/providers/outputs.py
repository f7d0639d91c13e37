"""Outputs of the queued-job providers: download (no key; 403/404 = not ready yet), inline base64 and
data: URIs, NSFW flags, and every result decoded to RGB at the size that was sent.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import TYPE_CHECKING, Any, Optional

from ..errors import ContentFiltered, ProviderError, ProviderFailed
from .http import HttpCall, NotReady

if TYPE_CHECKING:
    from .jobs import JobState

_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def looks_like_image(data: bytes) -> bool:
    return data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _b64(text: str) -> Optional[bytes]:
    text = text.strip()
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if ";base64" not in head:
            return None
    text = "".join(text.split())
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
    except (binascii.Error, ValueError):
        return None


def output_bytes(call: HttpCall, item: str) -> bytes:
    """Image bytes from one output entry: a URL (downloaded without key, waiting while it answers
    403/404), a data: URI, or inline base64 (a URL whose body is base64 text also works)."""
    item = item.strip()
    if item.startswith("data:") or "://" not in item[:16]:
        data = _b64(item)
        if data and looks_like_image(data):
            return data
        raise ProviderFailed(f"{call.label} returned an output that is neither a link nor an image.",
                             provider=call.service)
    waited_since: Optional[float] = None
    pause = 0.5
    while True:
        try:
            data = call.download(item)
            break
        except NotReady as not_ready:
            now = time.monotonic()
            waited_since = waited_since or now
            if now - waited_since > call.http.not_ready_s:
                raise ProviderFailed(
                    f"{call.label}'s output link still answers HTTP {not_ready.status} after "
                    f"{call.http.not_ready_s:.0f} s: run the edit again.",
                    provider=call.service, status=not_ready.status) from None
            call.wait(min(pause, max(0.0, call.remaining() - 0.05)),
                      text=f"{call.label}: waiting for the output file, {{elapsed:.0f}} s elapsed",
                      doing="the output download")
            pause = min(2.0, pause * 1.5)
    if looks_like_image(data):
        return data
    decoded = _b64(data[:64 * 1024 * 1024].decode("ascii", "ignore"))
    if decoded and looks_like_image(decoded):
        return decoded
    raise ProviderFailed(f"{call.label}'s output link did not hold an image.", provider=call.service)


def collect_images(
    call: HttpCall,
    job: JobState,
    *,
    samples: int,
    size: tuple[int, int],
    fail_on_nsfw: bool,
) -> tuple[list[Any], list[str]]:
    """Download/decode exactly ``samples`` images of ``size`` (width, height); returns (images, warnings)."""
    warnings: list[str] = []
    outputs = list(job.outputs)
    if len(outputs) < samples:
        raise ProviderFailed(
            f"{call.label} returned {len(outputs)} image(s) where {samples} were asked for: run the edit again.",
            provider=call.service)
    if len(outputs) > samples:
        warnings.append(f"{call.label} returned {len(outputs)} images for {samples} asked; the first {samples} were kept.")
        outputs = outputs[:samples]
    flagged = _nsfw_indices(job.nsfw, len(outputs))
    if flagged:
        which = ", ".join(str(i) for i in flagged)
        if fail_on_nsfw:
            raise ContentFiltered(
                f"{call.label}'s safety checker flagged image(s) {which} as NSFW and replaced them; "
                f"fail_on_nsfw is on, so the edit stopped (turn it off to get the replaced images).",
                provider=call.service)
        warnings.append(f"{call.label}'s safety checker flagged image(s) {which} as NSFW: the provider replaced them "
                        f"(blank, blurred or captioned).")
    pictures = [decode_result(output_bytes(call, item), size, call.label, call.service, warnings, f"image {index}")
                for index, item in enumerate(outputs)]
    return pictures, warnings


def decode_result(data: bytes, size: tuple[int, int], label: str, service: str, warnings: list[str],
                  what: str = "an image") -> Any:
    """A result image's bytes as ``[H,W,3]`` of ``size`` (width, height).

    A provider that answered another size is resized to the size sent, with a warning, so every
    client returns what :class:`~..request.Provider` promises.
    """
    from .. import images as img

    try:
        picture = img.decode_image(data)
    except ProviderError:
        raise
    except Exception:
        raise ProviderFailed(f"{label} sent {what} in a format that could not be decoded.", provider=service) from None
    width, height = size
    if int(picture.shape[0]) != height or int(picture.shape[1]) != width:
        note = f"{label} returned {int(picture.shape[1])}x{int(picture.shape[0])} where {width}x{height} was sent; resized."
        if note not in warnings:
            warnings.append(note)
        picture = img.resize_image(picture, height, width)
    return picture


def _nsfw_indices(flags: list[bool], count: int) -> list[int]:
    if not flags:
        return []
    if len(flags) == 1 and count > 1:
        return list(range(count)) if flags[0] else []
    return [i for i, flag in enumerate(flags[:count]) if flag]


__all__ = ["looks_like_image", "output_bytes", "collect_images", "decode_result"]
