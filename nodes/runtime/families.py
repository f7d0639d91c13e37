"""What a ComfyUI MODEL takes for an edit, read from the model itself (not from its file name).

Each answer names the core nodes the family's own ComfyUI workflows use, so the provider can call
those nodes (see :mod:`.conditioning`):

- *concatenated inpaint inputs* (SD/SDXL 9-channel UNets, Flux Fill): ``InpaintModelConditioning``;
- *embedded guidance* (Flux dev, Kontext, Fill): ``FluxGuidance`` and CFG 1;
- *reference path*: ``ReferenceLatent`` (Flux, Kontext, OmniGen2), ``TextEncodeQwenImageEdit``
  (Qwen-Image), ``InstructPixToPixConditioning`` (SD/SDXL InstructPix2Pix, HiDream E1);
  Chroma is a Flux that drops reference latents (``ldm/chroma/model.py``), so it has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

#: reference kinds: the core node that shows the model the picture
REFERENCE_LATENT = "ReferenceLatent"
QWEN_EDIT = "TextEncodeQwenImageEdit"
INSTRUCT_PIX2PIX = "InstructPixToPixConditioning"


@dataclass(frozen=True)
class ModelTraits:
    config: str  # ComfyUI's model config class name (SD15, Flux, FluxInpaint, QwenImage, ...)
    concat_inpaint: bool  # takes the masked picture and mask as concatenated input channels
    guidance_embed: bool  # guidance-distilled: guidance is an embedded value, sampled at CFG 1
    reference: Optional[str]  # one of the reference kinds above, or None

    def as_info(self) -> dict:
        return {"model": self.config, "inpaint_model": self.concat_inpaint,
                "embedded_guidance": self.guidance_embed, "reference_path": self.reference}


def traits(model) -> ModelTraits:
    """The traits of a ComfyUI ModelPatcher (``model.model`` is a ``comfy.model_base.BaseModel``)."""
    base = getattr(model, "model", None)
    config = getattr(base, "model_config", None)
    unet_config = getattr(config, "unet_config", None) or {}
    return ModelTraits(config=type(config).__name__ if config is not None else "unknown",
                       concat_inpaint=_takes_masked_picture(base, unet_config),
                       guidance_embed=bool(unet_config.get("guidance_embed", False)),
                       reference=_reference_kind(base))


def _takes_masked_picture(base, unet_config: dict) -> bool:
    """True when the model's input channels carry the masked picture and the mask.

    Two mechanisms exist in ComfyUI: ``concat_keys`` ("mask", "masked_image": SD/SDXL inpainting,
    ``model_base.py`` set_inpaint), and Flux's ``concat_cond``, which reads the input width of
    ``img_in``: wider than twice the latent channels means picture + mask channels (Flux Fill;
    ``concat_keys`` stays empty there, so the width is what tells).
    """
    keys = getattr(base, "concat_keys", ()) or ()
    if "mask" in keys and "masked_image" in keys:
        return True
    import comfy.model_base

    if not isinstance(base, comfy.model_base.Flux):
        return False
    diffusion = base.diffusion_model
    try:  # as Flux.concat_cond reads it (Flux control LoRAs change img_in's width)
        channels = diffusion.img_in.weight.shape[1] // (diffusion.patch_size * diffusion.patch_size)
    except AttributeError:
        channels = unet_config.get("in_channels", 0)
    return channels > 2 * unet_config.get("out_channels", channels)


def _reference_kind(base) -> Optional[str]:
    import comfy.model_base as mb

    if isinstance(base, mb.Chroma):
        return None  # a Flux subclass whose model ignores ref_latents
    if isinstance(base, (mb.Flux, mb.Omnigen2)):
        return REFERENCE_LATENT
    if isinstance(base, mb.QwenImage):
        return QWEN_EDIT
    if isinstance(base, (mb.IP2P, mb.HiDream)):
        return INSTRUCT_PIX2PIX
    return None
