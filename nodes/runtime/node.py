"""ImgEditComfyModel: the provider node for ImgEdit Img2Img / Inpaint on ComfyUI's own MODEL, CLIP and VAE."""

from __future__ import annotations

from comfy_api.latest import io

from ..comfy_types import PROVIDER
from .provider import ComfyModelProvider

STEPS_MEANING = ("A schedule of `steps` steps of which the last int(steps x strength) run (as KSamplerAdvanced "
                 "with start_at_step = steps - int(steps x strength)); sample k uses seed + k.")
GUIDANCE_MEANING = ("The edit node's guidance is the CFG scale, except for models with embedded guidance (Flux dev, "
                    "Kontext, Fill): there it is FluxGuidance's value (core templates: 3.5 dev, 2.5 Kontext, 30 Fill) "
                    "and CFG is 1, so the negative prompt is not used.")


class ImgEditComfyModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        import comfy.samplers  # ComfyUI's own lists, so new samplers and schedulers appear by themselves

        samplers, schedulers = list(comfy.samplers.KSampler.SAMPLERS), list(comfy.samplers.KSampler.SCHEDULERS)
        return io.Schema(
            node_id="ImgEditComfyModel",
            display_name="ImgEdit ComfyUI Model",
            category="ImgEdit/providers",
            description="Run ImgEdit Img2Img / Inpaint locally on a MODEL, CLIP and VAE from any loader (checkpoint, "
                        "UNET + CLIP + VAE loaders, LoRA and other patches), conditioned as the model family's core "
                        "workflow does (inpainting models, Flux Fill, embedded guidance, Kontext / Qwen-Image-Edit "
                        "references) and sampled by ComfyUI exactly as KSamplerAdvanced. " + STEPS_MEANING + " "
                        + GUIDANCE_MEANING,
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model, e.g. from Load Checkpoint or Load Diffusion Model "
                                                "(patched models work). Inpainting models (SD/SDXL 9-channel, Flux "
                                                "Fill) get the masked picture as input (InpaintModelConditioning)."),
                io.Clip.Input("clip", tooltip="Encodes the edit node's prompt and negative prompt, as CLIPTextEncode "
                                              "(Qwen-Image with reference: TextEncodeQwenImageEdit)."),
                io.Vae.Input("vae", tooltip="Encodes the picture and decodes the result; pictures are padded to its "
                                            "multiple (8 for SD and Flux) and cropped back."),
                io.Combo.Input("sampler_name", options=samplers, default="euler" if "euler" in samplers else samplers[0],
                               tooltip="ComfyUI's sampler, as in KSampler. " + STEPS_MEANING),
                io.Combo.Input("scheduler", options=schedulers,
                               default="normal" if "normal" in schedulers else schedulers[0],
                               tooltip="ComfyUI's scheduler for the `steps`-step schedule; strength picks how many "
                                       "of its last steps run."),
                io.Boolean.Input("reference", default=False, optional=True,
                                 tooltip="Instruction edit: show the model the picture as a reference, as the core "
                                         "templates do (Flux Kontext and OmniGen2: ReferenceLatent; Qwen-Image-Edit: "
                                         "TextEncodeQwenImageEdit; InstructPix2Pix: InstructPixToPixConditioning). "
                                         "Use strength 1 for the core template; lower keeps more of the picture's "
                                         "layout. Off: plain img2img / inpaint. A model with no reference path "
                                         "gives an error instead."),
                io.Image.Input("references", optional=True,
                               tooltip="More reference pictures (with reference on): every picture of this batch "
                                       "is shown with each edited picture. Kontext chains one ReferenceLatent each; "
                                       "Qwen-Image-Edit Plus takes up to two (TextEncodeQwenImageEditPlus)."),
            ],
            outputs=[PROVIDER.Output(display_name="provider",
                                     tooltip="Connect to ImgEdit Img2Img or ImgEdit Inpaint.")],
        )

    @classmethod
    def execute(cls, model, clip, vae, sampler_name, scheduler, reference=False, references=None) -> io.NodeOutput:
        return io.NodeOutput(ComfyModelProvider(model, clip, vae, sampler_name, scheduler, reference=reference,
                                                references=references))


NODES = [ImgEditComfyModel]
