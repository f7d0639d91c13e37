"""Put the pack's sample pictures into ComfyUI's input folder, so the example workflows open ready to run.

The example workflows' LoadImage nodes name ``imgedit_sample.png`` and ``imgedit_sample_mask.png``.
:func:`install_sample_inputs` copies ``assets/sample.png`` and ``assets/sample_mask.png`` there under
those names when they are missing (never overwriting a user's file). It is cheap (two stats, at most
two small copies) and never raises.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional, Union

log = logging.getLogger("comfyui_imgedit")

ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: file in ``assets/`` -> name in ComfyUI's input folder (prefixed so it cannot clash with a user's file).
SAMPLE_INPUTS = {
    "sample.png": "imgedit_sample.png",
    "sample_mask.png": "imgedit_sample_mask.png",
}


def install_sample_inputs(input_dir: Optional[Union[str, Path]] = None) -> list[Path]:
    """Copy missing sample inputs into ``input_dir`` (default: ComfyUI's input folder); return the copies."""
    copied: list[Path] = []
    try:
        if input_dir is None:
            import folder_paths  # ComfyUI's module

            input_dir = folder_paths.get_input_directory()
        target_dir = Path(input_dir)
        for source_name, target_name in SAMPLE_INPUTS.items():
            source = ASSETS / source_name
            target = target_dir / target_name
            if target.exists() or not source.is_file():
                continue
            target_dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target_name}.tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(target)
            copied.append(target)
    except Exception as exc:  # a missing sample must never break ComfyUI's start
        log.warning("ImgEdit: could not copy the sample pictures into the input folder (%s).", type(exc).__name__)
    return copied


__all__ = ["SAMPLE_INPUTS", "install_sample_inputs"]
