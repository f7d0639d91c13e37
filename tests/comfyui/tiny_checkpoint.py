"""Tiny SD1.5-family single-file checkpoints with random weights, built with ComfyUI's own classes.

Run with ComfyUI's python and its checkout on ``sys.path`` (the tests do it as a subprocess)::

    COMFYUI_DIR=/path/to/ComfyUI $COMFYUI_PYTHON tests/comfyui/tiny_checkpoint.py OUTDIR

writes ``OUTDIR/tiny-sd15.safetensors`` (4-channel UNet) and ``OUTDIR/tiny-sd15-inpaint.safetensors``
(9-channel inpainting UNet) in the original (LDM) layout that CheckpointLoaderSimple reads.
ComfyUI recognises SD1.5 from the UNet's ``model_channels`` 320 and ``context_dim`` 768, so those stay;
the UNet has two levels of one block each, one attention block and no middle block, so a 64x96 step
is a few milliseconds on a CPU. CLIP-L and the VAE have their real shapes (ComfyUI builds them from
fixed configs). Weights are random with a fixed seed, stored in fp16; nothing is downloaded.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

NAMES = {"plain": "tiny-sd15.safetensors", "inpaint": "tiny-sd15-inpaint.safetensors"}
SEED = 815
UNET_CONFIG = dict(
    image_size=32, out_channels=4, model_channels=320, num_res_blocks=[1, 1], channel_mult=[1, 1],
    transformer_depth=[1, 0], transformer_depth_output=[1, 1, 0, 0], transformer_depth_middle=-2,
    num_heads=8, num_head_channels=-1, use_spatial_transformer=True,
    context_dim=768, use_linear_in_transformer=False, legacy=False, adm_in_channels=None,
)
VAE_CONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
              "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def _random_state(module, generator, prefix: str, embedding_std: float = 0.02) -> dict:
    """The module's state dict filled with seeded random values of sensible scale.

    ComfyUI's layers skip weight init (they expect a checkpoint), so every tensor is set here:
    norms 1/0, biases 0, embeddings N(0, embedding_std), other weights N(0, 1/fan_in).
    """
    import torch

    out = {}
    for name, tensor in module.state_dict().items():
        shape = tuple(tensor.shape)
        if name.endswith("position_ids"):
            value = torch.arange(shape[-1]).expand(shape).clone()
        elif "norm" in name or name.endswith(("ln_1.weight", "ln_2.weight")):
            value = torch.ones(shape) if name.endswith("weight") else torch.zeros(shape)
        elif name.endswith("bias") or len(shape) < 2:
            value = torch.zeros(shape)
        elif "embedding" in name:
            value = torch.randn(shape, generator=generator) * embedding_std
        else:
            fan_in = math.prod(shape[1:])
            value = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
        out[prefix + name] = value.to(torch.float16 if value.is_floating_point() else value.dtype)
    return out


def _shared_parts(generator) -> dict:
    """CLIP-L and the SD VAE, as CheckpointLoaderSimple expects them in an SD1.5 file."""
    import comfy.ldm.models.autoencoder as autoencoder
    import comfy.sd1_clip
    import torch

    with torch.device("cpu"):
        clip = comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32)
        vae = autoencoder.AutoencoderKL(ddconfig=VAE_CONFIG, embed_dim=4)
    parts = _random_state(clip, generator, "cond_stage_model.")
    for dropped in ("cond_stage_model.transformer.text_projection.weight", "cond_stage_model.logit_scale"):
        parts.pop(dropped, None)
    parts.update(_random_state(vae, generator, "first_stage_model."))
    return parts


def _unet(generator, in_channels: int) -> dict:
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet = UNetModel(in_channels=in_channels, operations=comfy.ops.disable_weight_init, device="cpu", **UNET_CONFIG)
    return _random_state(unet, generator, "model.diffusion_model.")


def build(out_dir: Path) -> dict[str, Path]:
    """Write both checkpoints into ``out_dir`` (skipped when present); return {kind: path}."""
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / name for kind, name in NAMES.items()}
    if all(path.is_file() for path in paths.values()):
        return paths
    generator = torch.Generator().manual_seed(SEED)
    shared = _shared_parts(generator)
    for kind, in_channels in (("plain", 4), ("inpaint", 9)):
        state = {**shared, **_unet(generator, in_channels)}
        partial = paths[kind].with_suffix(".partial")
        save_file({k: v.contiguous() for k, v in state.items()}, str(partial))
        os.replace(partial, paths[kind])
    return paths


def main(argv: list[str]) -> int:
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if comfy_dir and comfy_dir not in sys.path:
        sys.path.insert(0, comfy_dir)
    if len(argv) != 1:
        print("usage: tiny_checkpoint.py OUTDIR (COMFYUI_DIR set, run with ComfyUI's python)", file=sys.stderr)
        return 2
    from comfy.cli_args import args

    args.cpu = True  # building needs no GPU; read before comfy.model_management is first imported
    for path in build(Path(argv[0])).values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
