"""Test-only ComfyUI nodes: tiny Flux / Flux Fill / Qwen-Image models, a stand-in CLIP and small VAEs.

Linked into the test ComfyUI's custom_nodes by ``comfyui_session.py``; never part of the pack's node
list. The models are ComfyUI's own classes (``model_config_from_unet_config`` -> ``get_model`` ->
``ModelPatcher``, as ``comfy/sd.py`` builds a diffusion model) with small hidden sizes and seeded random
weights, so a run takes milliseconds on a CPU. Text encoders have fixed large configs, so the CLIP is a
stand-in with the two methods the core encode nodes call (``tokenize`` and ``encode_from_tokens_scheduled``)
whose output depends on the text (and, for Qwen, on the pictures given to the VL encoder). The Flux VAE is
a random 16-channel TAESD loaded by ``comfy.sd.VAE``; Qwen's real VAE (Wan 2.1) is far too heavy at the
1 MP TextEncodeQwenImageEdit scales to, so it is a stand-in with 5-D latents (8x8 average pooling and a
fixed random projection).
"""

from __future__ import annotations

import hashlib
import math

import torch

SEED = 1414
#: Flux with hidden size 64 (4 heads of 16 = axes 4+6+6), text width 32, pooled width 8.
FLUX = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=8, context_in_dim=32, hidden_size=64,
            mlp_ratio=4.0, num_heads=4, depth=1, depth_single_blocks=1, axes_dim=[4, 6, 6], theta=10000,
            patch_size=2, qkv_bias=True, guidance_embed=True)
QWEN = dict(image_model="qwen_image", in_channels=64, out_channels=16, num_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=[4, 6, 6])
FAMILIES = {
    "flux_dev": FLUX,
    "flux_fill": {**FLUX, "in_channels": 96},
    "flux_schnell": {**FLUX, "guidance_embed": False},
    "qwen_image": QWEN,
}
#: (text width, pooled width) of the stand-in CLIP per family kind
CLIP_WIDTHS = {"flux": (32, 8), "flux_full": (4096, 768), "qwen": (32, None)}
_MODELS: dict = {}


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Seeded random weights of sensible scale (ComfyUI's layers skip init: they expect a checkpoint)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point():
                continue
            if "norm" in name or name.endswith(".scale"):
                tensor.fill_(1.0 if not name.endswith("bias") else 0.0)
            elif name.endswith("bias") or tensor.ndim < 2:
                tensor.zero_()
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / math.sqrt(math.prod(tensor.shape[1:])))


def tiny_model(family: str):
    """A ModelPatcher of ``family``, built once per ComfyUI process (a MODEL output is shared as loaders share)."""
    if family not in _MODELS:
        import comfy.model_detection
        import comfy.model_management as mm
        import comfy.model_patcher

        config = comfy.model_detection.model_config_from_unet_config(dict(FAMILIES[family]))
        config.set_inference_dtype(torch.float32, None)
        model = config.get_model({}, "")
        randomise(model.diffusion_model, SEED + len(family))
        _MODELS[family] = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                                           offload_device=mm.unet_offload_device())
    return _MODELS[family]


def _digest_vector(text: str, width: int, rows: int) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return torch.randn((1, rows, width), generator=torch.Generator().manual_seed(seed))


class StandInClip:
    """What CLIPTextEncode / TextEncodeQwenImageEdit(Plus) call on a CLIP, with text-dependent output."""

    def __init__(self, kind: str):
        self.kind = kind
        self.width, self.pooled = CLIP_WIDTHS[kind]

    def tokenize(self, text, images=None, **kwargs):
        return {"text": text, "images": list(images or []), "template": kwargs.get("llama_template")}

    def encode_from_tokens_scheduled(self, tokens, unprojected=False, add_dict=None, show_pbar=True):
        cond = _digest_vector(f"{tokens['text']}|{tokens['template']}", self.width, 6)
        for image in tokens["images"]:  # the VL encoder "sees" each picture: its mean colour shifts the tokens
            colour = image[..., :3].float().mean(dim=(0, 1, 2))
            cond = cond + colour.repeat(self.width // 3 + 1)[: self.width]
        extra = {} if self.pooled is None else {"pooled_output": _digest_vector(tokens["text"], self.pooled, 1)[0]}
        return [[cond, {**extra, **(add_dict or {})}]]


class StandInQwenVae:
    """Encode: 8x8 average pooling + a fixed 3->16 projection, as [B, 16, 1, h, w]; decode: the way back."""

    def __init__(self):
        generator = torch.Generator().manual_seed(SEED)
        self.project = torch.randn((16, 3), generator=generator) * 0.5
        self.back = torch.linalg.pinv(self.project)

    def spacial_compression_encode(self):
        return 8

    def encode(self, pixels):
        pixels = pixels[..., :3].movedim(-1, 1).float()
        h, w = pixels.shape[-2] // 8 * 8, pixels.shape[-1] // 8 * 8
        pooled = torch.nn.functional.avg_pool2d(pixels[..., :h, :w] * 2 - 1, 8)
        return torch.einsum("oc,bchw->bohw", self.project, pooled)[:, :, None]

    def decode(self, latent):
        latent = latent[:, :, 0].float()
        rgb = torch.einsum("co,bohw->bchw", self.back, latent)
        rgb = torch.nn.functional.interpolate(rgb, scale_factor=8, mode="nearest")
        return ((rgb + 1) / 2).clamp(0, 1).movedim(1, -1)[:, None]


def tiny_vae(kind: str):
    if kind == "qwen":
        return StandInQwenVae()
    import comfy.sd
    from comfy.taesd.taesd import TAESD

    taesd = TAESD(latent_channels=16)  # ComfyUI's layers skip init here too
    randomise(taesd, SEED)
    state = {k: v.clone() for k, v in taesd.state_dict().items()}
    state["vae_scale"], state["vae_shift"] = torch.tensor(1.0), torch.tensor(0.0)
    return comfy.sd.VAE(sd=state)


class TestTinyFamilyModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"family": (sorted(FAMILIES),)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "build"
    CATEGORY = "_test/imgedit (test only)"

    def build(self, family):
        return (tiny_model(family),)


class TestStandInClip:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"kind": (sorted(CLIP_WIDTHS),)}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "build"
    CATEGORY = "_test/imgedit (test only)"

    def build(self, kind):
        return (StandInClip(kind),)


class TestTinyVae:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"kind": (["flux", "qwen"],)}}

    RETURN_TYPES = ("VAE",)
    FUNCTION = "build"
    CATEGORY = "_test/imgedit (test only)"

    def build(self, kind):
        return (tiny_vae(kind),)


NODE_CLASS_MAPPINGS = {"TestTinyFamilyModel": TestTinyFamilyModel, "TestStandInClip": TestStandInClip,
                       "TestTinyVae": TestTinyVae}
