"""One prompt per picture: the ``prompt`` and ``negative_prompt`` texts may hold one prompt per
picture of the batch, separated by lines that are exactly ``---`` (spaces around it allowed).

One prompt serves every picture; ``B`` prompts give picture ``i`` prompt ``i`` (with
``ImgEditCropToMask`` ``regions: separately`` the crops come picture 0's first, each picture's
regions in reading order); any other count is refused, naming both counts.
"""

from __future__ import annotations

import re

from .errors import InputError

SEPARATOR = "---"
_SEPARATOR_LINE = re.compile(r"^[ \t]*---[ \t]*\r?$", re.MULTILINE)


def split_prompts(text: str) -> list[str]:
    """The prompts in ``text``: its parts between ``---`` lines, each stripped of surrounding blank space."""
    return [part.strip() for part in _SEPARATOR_LINE.split(text or "")]


def prompts_per_picture(text: str, pictures: int, name: str = "prompt") -> list[str]:
    """``pictures`` prompts: the one prompt in ``text`` repeated, or its ``pictures`` prompts in order."""
    prompts = split_prompts(text)
    if len(prompts) == 1:
        # No separator: the text as it was given (today's behaviour, surrounding spaces kept).
        return [text or ""] * pictures
    if len(prompts) != pictures:
        counted = f"{pictures} picture" + ("" if pictures == 1 else "s")
        raise InputError(f"{name} holds {len(prompts)} prompts (separated by {SEPARATOR} lines) for {counted}; "
                         f"give one prompt for all pictures, or exactly {pictures}, one per picture.")
    return prompts
