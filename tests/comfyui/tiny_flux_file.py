"""The smallest Flux dev file ComfyUI's UNETLoader detects: full width, 1 double block, 0 single blocks.

    COMFYUI_DIR=/path/to/ComfyUI $COMFYUI_PYTHON tests/comfyui/tiny_flux_file.py OUTDIR

writes ``OUTDIR/tiny-flux-dev-1block.safetensors`` (404M parameters in bf16, about 770 MiB; skipped when
present). Detection (``comfy/model_detection.py``) fixes the hidden size (3072, 24 heads), the text width
(4096) and reads the rest from the keys: ``guidance_in`` makes it a guidance-distilled Flux dev,
``vector_in`` sets the pooled width (768). Shapes come from ComfyUI's own Flux class built on the meta
device; weights are seeded random values (norms 1, biases 0, others N(0, 1/fan_in)). Built into a temp
folder by the tests, never committed.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

NAME = "tiny-flux-dev-1block.safetensors"
PARAMS = dict(in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096, hidden_size=3072, mlp_ratio=4.0,
              num_heads=24, depth=1, depth_single_blocks=0, axes_dim=[16, 56, 56], theta=10000, patch_size=2,
              qkv_bias=True, guidance_embed=True)


def build(out_dir: Path) -> Path:
    import comfy.ops
    import torch
    from comfy.ldm.flux.model import Flux
    from safetensors.torch import save_file

    path = Path(out_dir) / NAME
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Flux(operations=comfy.ops.disable_weight_init, **PARAMS).state_dict().items()}
    generator = torch.Generator().manual_seed(2024)
    state = {}
    for name, shape in shapes.items():
        if "norm" in name or name.endswith(".scale"):
            value = torch.ones(shape)
        elif name.endswith("bias") or len(shape) < 2:
            value = torch.zeros(shape)
        else:
            value = torch.randn(shape, generator=generator) / math.sqrt(math.prod(shape[1:]))
        state[name] = value.to(torch.bfloat16)
    partial = path.with_suffix(".partial")
    save_file(state, str(partial))
    os.replace(partial, path)
    return path


def main(argv: list[str]) -> int:
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if comfy_dir and comfy_dir not in sys.path:
        sys.path.insert(0, comfy_dir)
    if len(argv) != 1:
        print("usage: tiny_flux_file.py OUTDIR (COMFYUI_DIR set, run with ComfyUI's python)", file=sys.stderr)
        return 2
    from comfy.cli_args import args

    args.cpu = True  # read before comfy.model_management is first imported
    print(build(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
