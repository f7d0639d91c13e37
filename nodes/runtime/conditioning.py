"""Conditioning for one edit, as the model family's core ComfyUI workflow builds it, with the core nodes' code.

- prompts: ``CLIPTextEncode`` (Qwen-Image with ``reference``: ``TextEncodeQwenImageEdit``, or
  ``TextEncodeQwenImageEditPlus`` with extra pictures, for the prompt and the negative prompt, as
  ``image_qwen_image_edit.json`` does);
- masks: ``InpaintModelConditioning`` for models with concatenated inpaint inputs (SD/SDXL 9-channel,
  Flux Fill), else ``SetLatentNoiseMask`` (+ ``DifferentialDiffusion`` for soft masks);
- ``reference``: the picture (and each extra one) through ``ReferenceLatent`` (Flux, Kontext,
  OmniGen2) or ``InstructPixToPixConditioning`` (InstructPix2Pix, HiDream E1);
- embedded guidance (Flux dev, Kontext, Fill): ``FluxGuidance`` with the edit node's guidance, CFG 1.

The latent to sample from is always the encoded picture, so ``strength`` keeps its meaning: 1.0 is
the core template (full denoise, where a flow model starts from pure noise), lower keeps more of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.errors import InputError
from ..core.request import EditRequest
from .families import INSTRUCT_PIX2PIX, QWEN_EDIT, REFERENCE_LATENT, ModelTraits

#: TextEncodeQwenImageEditPlus takes three pictures: the edited one and two more.
QWEN_PLUS_PICTURES = 3


@dataclass
class Conditioned:
    """What the sampler gets, and what ``info`` says about it."""

    model: Any
    positive: Any
    negative: Any
    latent: dict
    cfg: float
    path: list[str] = field(default_factory=list)
    references: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_info(self, traits: ModelTraits) -> dict:
        out = {"conditioning": " -> ".join(self.path), "references": self.references, "cfg": self.cfg}
        if traits.guidance_embed:
            out["guidance"] = self.positive[0][1].get("guidance")
        return out


def has_soft_values(mask) -> bool:
    return bool(((mask > 0) & (mask < 1)).any())


def check_reference_inputs(traits: ModelTraits, reference: bool, references) -> None:
    """One clear sentence for a reference edit the model cannot do (before anything runs)."""
    count = 0 if references is None else int(references.shape[0])
    if count and not reference:
        raise InputError("the references input is connected but reference is off: turn reference on to show the "
                         "model those pictures, or disconnect references.")
    if not reference:
        return
    if traits.reference is None:
        raise InputError(f"reference is on, but this model ({traits.config}) has no reference path: ComfyUI gives "
                         f"it no way to see a reference picture (reference edits need Flux Kontext, Qwen-Image-Edit, "
                         f"OmniGen2 or an InstructPix2Pix model); turn reference off for a plain img2img.")
    if traits.reference == QWEN_EDIT and count + 1 > QWEN_PLUS_PICTURES:
        raise InputError(f"references holds {count} pictures; Qwen-Image-Edit takes the picture and at most "
                         f"{QWEN_PLUS_PICTURES - 1} more (TextEncodeQwenImageEditPlus). Give fewer references.")
    if traits.reference == INSTRUCT_PIX2PIX and count:
        raise InputError(f"references holds {count} pictures; an InstructPix2Pix model sees only the edited "
                         f"picture. Disconnect references.")


class Conditioner:
    """Builds :class:`Conditioned` per request; keeps the last text encode (and the extra references'
    latents) so run_edit's one call per picture and sample encodes once, as ComfyUI's cache would."""

    def __init__(self, model, clip, vae, traits: ModelTraits, reference: bool = False, references=None):
        self.model, self.clip, self.vae, self.traits = model, clip, vae, traits
        self.reference = bool(reference)
        self.references = references  # IMAGE [B, H, W, C] or None
        self._last_encode = None  # (key, (positive, negative), path): one entry, nothing grows
        self._reference_latents = None

    def condition(self, request: EditRequest) -> Conditioned:
        import nodes

        traits = self.traits
        pixels = request.image[None, :, :, :3]
        positive, negative, path = self._prompts(request, pixels)
        model = self.model
        if request.mask is None:
            latent = {"samples": self.vae.encode(pixels)}
        elif traits.concat_inpaint:
            mask = request.mask[None]
            positive, negative, latent = nodes.InpaintModelConditioning().encode(
                positive, negative, pixels, self.vae, mask, noise_mask=True)
            path.append("InpaintModelConditioning (concatenated inpaint inputs)")
        else:
            mask = request.mask[None]
            latent = nodes.SetLatentNoiseMask().set_mask({"samples": self.vae.encode(pixels)}, mask)[0]
            path.append("SetLatentNoiseMask")
            if has_soft_values(mask):
                from comfy_extras.nodes_differential_diffusion import DifferentialDiffusion

                model = DifferentialDiffusion.execute(self.model).result[0]
                path.append("DifferentialDiffusion (soft mask)")

        references = 0
        if self.reference and traits.reference == REFERENCE_LATENT:
            positive, negative, references = self._reference_latent_chain(positive, negative, latent["samples"])
            path.append(f"ReferenceLatent x{references}")
        elif self.reference and traits.reference == INSTRUCT_PIX2PIX:
            from comfy_extras.nodes_ip2p import InstructPixToPixConditioning

            positive, negative, _ = InstructPixToPixConditioning.execute(positive, negative, pixels, self.vae).result
            path.append("InstructPixToPixConditioning")
            references = 1
        elif self.reference and traits.reference == QWEN_EDIT:
            references = 1 + self._extra_count()

        warnings = []
        if traits.guidance_embed:
            from comfy_extras.nodes_flux import FluxGuidance

            positive = FluxGuidance.execute(positive, float(request.guidance)).result[0]
            path.append(f"FluxGuidance {float(request.guidance):g} (CFG 1)")
            cfg = 1.0
            if request.negative_prompt.strip():
                warnings.append(f"the negative prompt is ignored: {traits.config} has embedded guidance and samples "
                                f"at CFG 1, which reads no negative prompt")
        else:
            cfg = float(request.guidance)
        return Conditioned(model=model, positive=positive, negative=negative, latent=latent, cfg=cfg, path=path,
                           references=references, warnings=warnings)

    def _extra_count(self) -> int:
        return 0 if self.references is None else int(self.references.shape[0])

    def _extras(self) -> list:
        return [self.references[i:i + 1, :, :, :3] for i in range(self._extra_count())]

    def _prompts(self, request: EditRequest, pixels) -> tuple[Any, Any, list[str]]:
        """(positive, negative, path): the text encodes, kept while clip, texts (and Qwen's picture) are the same.

        Reusing them is what ComfyUI's cache does with an encode node's output: nothing downstream
        changes a conditioning in place (node_helpers.conditioning_set_values copies).
        """
        qwen = self.reference and self.traits.reference == QWEN_EDIT
        skip_negative = self.traits.guidance_embed  # CFG 1 never reads it; core templates zero it out
        key = (self.clip, request.prompt, request.negative_prompt, request.image if qwen else None)
        last = self._last_encode
        if last is not None and last[0][0] is key[0] and last[0][1:3] == key[1:3] and last[0][3] is key[3]:
            return (*last[1], list(last[2]))
        if qwen:
            encoded, node = self._qwen_encode(request, pixels)
            path = [f"{node} (prompt and negative prompt, {1 + self._extra_count()} pictures)"]
        else:
            import nodes

            encoder = nodes.CLIPTextEncode()
            positive = encoder.encode(self.clip, request.prompt)[0]
            if skip_negative:
                negative = nodes.ConditioningZeroOut().zero_out(positive)[0]
                path = ["CLIPTextEncode (negative: ConditioningZeroOut)"]
            else:
                negative = encoder.encode(self.clip, request.negative_prompt)[0]
                path = ["CLIPTextEncode"]
            encoded = (positive, negative)
        self._last_encode = (key, encoded, path)
        return (*encoded, list(path))

    def _qwen_encode(self, request: EditRequest, pixels):
        from comfy_extras import nodes_qwen

        extras = self._extras()
        if not extras:
            node = nodes_qwen.TextEncodeQwenImageEdit
            encode = lambda text: node.execute(self.clip, text, self.vae, pixels).result[0]  # noqa: E731
        else:
            node = nodes_qwen.TextEncodeQwenImageEditPlus
            pictures = dict(zip(("image1", "image2", "image3"), [pixels, *extras]))
            encode = lambda text: node.execute(self.clip, text, self.vae, **pictures).result[0]  # noqa: E731
        return (encode(request.prompt), encode(request.negative_prompt)), node.__name__

    def _reference_latent_chain(self, positive, negative, picture_latent):
        """ReferenceLatent once per picture (the edited one first), as core chains them; the negative
        gets them too unless CFG 1 skips it (Kontext's template zeroes it out instead)."""
        from comfy_extras.nodes_edit_model import ReferenceLatent

        if self._reference_latents is None:  # the extra pictures are the same for every request
            self._reference_latents = [self.vae.encode(picture) for picture in self._extras()]
        latents = [picture_latent, *self._reference_latents]
        for samples in latents:
            positive = ReferenceLatent.execute(positive, {"samples": samples}).result[0]
            if not self.traits.guidance_embed:
                negative = ReferenceLatent.execute(negative, {"samples": samples}).result[0]
        return positive, negative, len(latents)
