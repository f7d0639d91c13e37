"""The example workflows as specs: nodes (type, place, widget values), links, the notes they show.

:mod:`make_workflows` turns each :class:`Spec` into a UI-format ``example_workflows/<name>.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from comfyui_session import SAMPLE_INPUTS

SAMPLE = SAMPLE_INPUTS["sample.png"]
SAMPLE_MASK = SAMPLE_INPUTS["sample_mask.png"]
#: outpaint_remote extends the sample picture by this many pixels on the right.
OUTPAINT_RIGHT = 256

PAID_NOTE = (
    "Remote provider: every run spends credits on your account with the service.\n\n"
    "Key: ComfyUI Settings -> ImgEdit -> API keys (stored on the ComfyUI server in "
    "user/imgedit/keys.json, never in this workflow), or the environment variable "
    "{env} before starting ComfyUI.\n\n"
    "No key yet? Start the offline sandbox (python -m comfyui_imgedit.sandbox) and export the "
    "IMGEDIT_*_URL lines it prints: same workflow, no credits."
)
LOCAL_NOTE = (
    "Local provider: runs on this machine with diffusers (GPU if there is one).\n\n"
    "model: pick a Stable Diffusion 1.x/2.x or SDXL diffusers folder from ComfyUI/models/diffusers "
    "({kind}). Nothing is downloaded."
)
CHECKPOINT_NOTE = (
    "Local provider on ComfyUI's own models: any MODEL, CLIP and VAE work (Load Checkpoint, UNET + CLIP + "
    "VAE loaders, LoRA loaders and other patches before ImgEdit ComfyUI Model).\n\n"
    "ckpt_name: pick {kind} from ComfyUI/models/checkpoints. Steps and strength mean what they mean in "
    "KSamplerAdvanced: a schedule of `steps` steps of which the last int(steps x strength) run; "
    "sample k uses seed + k."
)
FLUX_NOTE = (
    "Flux on ComfyUI's own loaders: {model} from ComfyUI/models/diffusion_models, clip_l + t5xxl from "
    "models/text_encoders, ae.safetensors from models/vae.\n\n"
    "{what}\n\n"
    "Flux has embedded guidance: the edit node's guidance is FluxGuidance's value ({guidance} here, as "
    "the core templates) and CFG is 1, so the negative prompt is not used. These models want about "
    "1 megapixel: {size}"
)
INPUT_NOTE = (
    "Inputs: {files} (copied from the pack's assets/ into ComfyUI's input folder when the pack "
    "loads). Load your own picture with the upload button."
)


@dataclass
class N:
    """One node of a spec: id, type, place (column, row), widget values by input name, title/colour."""

    id: int
    type: str
    place: tuple[int, int]
    values: dict[str, Any] = field(default_factory=dict)
    title: Optional[str] = None
    size: Optional[tuple[float, float]] = None
    color: Optional[str] = None
    bgcolor: Optional[str] = None


@dataclass
class Spec:
    name: str
    nodes: list[N]
    links: list[tuple[int, Union[int, str], int, str]]  # (from id, output name/slot, to id, input name)


def _note(id_: int, pos, text: str, size=(330, 200)) -> N:
    return N(id_, "Note", pos, {"text": text}, size=size, color="#432", bgcolor="#653")


def picture_and_mask(grow_pixels: int, feather_radius: int, chain_row: int) -> tuple[list[N], list[tuple]]:
    """Nodes 1-5 that start every masked example: the picture (node 1), then mask picture (2) ->
    ImgEditMaskFromImage (3) -> ImgEditGrowMask (4) -> ImgEditFeatherMask (5), whose output is the mask.
    The chain's three nodes stack in column 1 from ``chain_row``."""
    nodes = [
        N(1, "LoadImage", (0, 0), {"image": SAMPLE}, title="Picture"),
        N(2, "LoadImage", (0, 1), {"image": SAMPLE_MASK}, title="Mask picture (white = change)"),
        N(3, "ImgEditMaskFromImage", (1, chain_row), {"threshold": 0.5, "invert": False}),
        N(4, "ImgEditGrowMask", (1, chain_row + 1), {"pixels": grow_pixels, "shape": "round"}),
        N(5, "ImgEditFeatherMask", (1, chain_row + 2), {"radius": feather_radius, "mode": "outward"}),
    ]
    return nodes, [(2, "IMAGE", 3, "image"), (3, 0, 4, "mask"), (4, 0, 5, "mask")]


def flux_loaders(first_id: int, column: int, unet_name: str) -> list[N]:
    """UNETLoader, DualCLIPLoader (flux) and VAELoader stacked in ``column`` (ids first_id..first_id + 2)."""
    return [
        N(first_id, "UNETLoader", (column, 0), {"unet_name": unet_name, "weight_dtype": "default"}),
        N(first_id + 1, "DualCLIPLoader", (column, 1), {"clip_name1": "clip_l.safetensors",
                                                         "clip_name2": "t5xxl_fp8_e4m3fn_scaled.safetensors",
                                                         "type": "flux"}),
        N(first_id + 2, "VAELoader", (column, 2), {"vae_name": "ae.safetensors"}),
    ]


def flux_links(first_id: int, provider_id: int) -> list[tuple]:
    return [(first_id, "MODEL", provider_id, "model"), (first_id + 1, "CLIP", provider_id, "clip"),
            (first_id + 2, "VAE", provider_id, "vae")]


def specs() -> list[Spec]:
    common = dict(negative_prompt="blurry, low quality, watermark", guidance=7.0, seed=42, samples=1)
    mask_prep_nodes, mask_prep_links = picture_and_mask(grow_pixels=12, feather_radius=16, chain_row=1)
    local_nodes, local_links = picture_and_mask(grow_pixels=8, feather_radius=12, chain_row=1)
    checkpoint_nodes, checkpoint_links = picture_and_mask(grow_pixels=8, feather_radius=12, chain_row=0)
    remote_nodes, remote_links = picture_and_mask(grow_pixels=8, feather_radius=12, chain_row=0)
    crop_links = [(1, "IMAGE", 6, "image"), (5, 0, 6, "mask")]  # picture and mask into node 6, CropToMask
    fill_nodes, fill_links = picture_and_mask(grow_pixels=8, feather_radius=12, chain_row=0)
    return [
        Spec("mask_prep", [
            *mask_prep_nodes,
            N(6, "ImgEditCropToMask", (2, 0), {"context": 0.5, "max_edge": 1024, "multiple_of": 8}),
            N(7, "PreviewImage", (3, 0), {}, title="Crop (what a provider would get)"),
            N(8, "MaskToImage", (2, 1), {}),
            N(9, "PreviewImage", (3, 1), {}, title="Crop mask"),
            N(10, "ImgEditStitch", (4, 0), {"feather": 8}),
            N(11, "SaveImage", (4, 1), {"filename_prefix": "imgedit/mask_prep"}),
            _note(12, (1, 0), INPUT_NOTE.format(files=f"{SAMPLE}, {SAMPLE_MASK}") +
                  "\n\nThe crop goes to a provider in the inpaint workflows; here it is stitched "
                  "back unchanged, so the saved picture equals the input outside the mask box."),
        ], [
            *mask_prep_links, *crop_links,
            (6, "image", 7, "images"), (6, "mask", 8, "mask"), (8, 0, 9, "images"),
            (6, "stitch", 10, "stitch"), (6, "image", 10, "image"), (10, 0, 11, "images"),
        ]),
        Spec("img2img_local", [
            N(1, "LoadImage", (0, 1), {"image": SAMPLE}, title="Picture"),
            N(2, "ImgEditLocalDiffusers", (0, 0), {"model": "stable-diffusion-v1-5"}),
            N(3, "ImgEditImg2Img", (1, 0), dict(common, prompt="an oil painting of a sunny landscape, detailed",
                                                   strength=0.6, steps=25)),
            N(4, "SaveImage", (2, 0), {"filename_prefix": "imgedit/img2img_local"}),
            _note(5, (2, 1), LOCAL_NOTE.format(kind="an ordinary, 4-channel model")),
        ], [
            (2, 0, 3, "provider"), (1, "IMAGE", 3, "image"), (3, "IMAGE", 4, "images"),
        ]),
        Spec("inpaint_local", [
            *local_nodes,
            N(6, "ImgEditLocalDiffusers", (1, 0), {"model": "stable-diffusion-inpainting"}),
            N(7, "ImgEditInpaint", (2, 0), dict(common, prompt="a red hot-air balloon in the sky, detailed",
                                                   strength=1.0, steps=30, keep_unmasked=True)),
            N(8, "SaveImage", (3, 0), {"filename_prefix": "imgedit/inpaint_local"}),
            _note(9, (3, 1), LOCAL_NOTE.format(
                kind="an inpainting model such as stable-diffusion-inpainting works best; ordinary ones work too")),
        ], [
            *local_links,
            (6, 0, 7, "provider"), (1, "IMAGE", 7, "image"), (5, 0, 7, "mask"), (7, "IMAGE", 8, "images"),
        ]),
        Spec("img2img_checkpoint", [
            N(1, "LoadImage", (0, 1), {"image": SAMPLE}, title="Picture"),
            N(2, "CheckpointLoaderSimple", (0, 0), {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}),
            N(3, "ImgEditComfyModel", (1, 0), {"sampler_name": "euler", "scheduler": "normal"}),
            N(4, "ImgEditImg2Img", (2, 0), dict(common, prompt="an oil painting of a sunny landscape, detailed",
                                                   strength=0.6, steps=25)),
            N(5, "SaveImage", (3, 0), {"filename_prefix": "imgedit/img2img_checkpoint"}),
            _note(6, (3, 1), CHECKPOINT_NOTE.format(kind="any checkpoint (SD 1.x/2.x, SDXL, SD3, Flux, ...)"),
                  size=(360, 260)),
        ], [
            (2, "MODEL", 3, "model"), (2, "CLIP", 3, "clip"), (2, "VAE", 3, "vae"),
            (3, 0, 4, "provider"), (1, "IMAGE", 4, "image"), (4, "IMAGE", 5, "images"),
        ]),
        Spec("inpaint_checkpoint", [
            *checkpoint_nodes,
            N(6, "ImgEditCropToMask", (2, 1), {"context": 0.75, "max_edge": 768, "multiple_of": 8}),
            N(7, "CheckpointLoaderSimple", (2, 0), {"ckpt_name": "sd-v1-5-inpainting.ckpt"}),
            N(8, "ImgEditComfyModel", (3, 0), {"sampler_name": "euler", "scheduler": "normal"}),
            N(9, "ImgEditInpaint", (4, 0), dict(common, prompt="a red hot-air balloon in the sky, detailed",
                                                    strength=1.0, steps=30, keep_unmasked=True)),
            N(10, "ImgEditStitch", (5, 0), {"feather": 8}),
            N(11, "SaveImage", (5, 1), {"filename_prefix": "imgedit/inpaint_checkpoint"}),
            _note(12, (5, 2), CHECKPOINT_NOTE.format(
                kind="an inpainting checkpoint (it gets the masked picture as input) or any ordinary one "
                     "(noise mask; soft edges through differential diffusion)"), size=(360, 300)),
        ], [
            *checkpoint_links, *crop_links,
            (7, "MODEL", 8, "model"), (7, "CLIP", 8, "clip"), (7, "VAE", 8, "vae"),
            (8, 0, 9, "provider"), (6, "image", 9, "image"), (6, "mask", 9, "mask"),
            (6, "stitch", 10, "stitch"), (9, "IMAGE", 10, "image"), (10, 0, 11, "images"),
        ]),
        Spec("edit_kontext", [
            N(1, "LoadImage", (1, 1), {"image": SAMPLE}, title="Picture"),
            *flux_loaders(2, 0, "flux1-dev-kontext_fp8_scaled.safetensors"),
            N(5, "ImgEditComfyModel", (1, 0), {"sampler_name": "euler", "scheduler": "simple", "reference": True}),
            N(6, "ImgEditImg2Img", (2, 0), dict(prompt="make it a winter scene with snow, keep everything else",
                                                   negative_prompt="", strength=1.0, steps=20, guidance=2.5, seed=42,
                                                   samples=1)),
            N(7, "SaveImage", (3, 0), {"filename_prefix": "imgedit/edit_kontext"}),
            _note(8, (3, 1), FLUX_NOTE.format(
                model="flux1-dev-kontext", guidance=2.5,
                what="reference on: the picture reaches Kontext as a reference latent (CLIPTextEncode -> "
                     "ReferenceLatent -> FluxGuidance, as the core Kontext template), so the prompt is an "
                     "instruction. strength 1 is the core template; lower keeps more of the picture's layout. "
                     "More reference pictures: connect a batch to the provider's references input.",
                size="put FluxKontextImageScale (core) between the picture and the edit node, or crop with "
                     "ImgEditCropToMask (target_edge 1024)."), size=(380, 360)),
        ], [
            *flux_links(2, 5), (5, 0, 6, "provider"), (1, "IMAGE", 6, "image"), (6, "IMAGE", 7, "images"),
        ]),
        Spec("inpaint_flux_fill", [
            *fill_nodes,
            N(6, "ImgEditCropToMask", (2, 1), {"context": 0.75, "max_edge": 1024, "multiple_of": 16,
                                                "target_edge": 1024}),
            *flux_loaders(7, 3, "flux1-fill-dev.safetensors"),
            N(10, "ImgEditComfyModel", (4, 0), {"sampler_name": "euler", "scheduler": "simple"}),
            N(11, "ImgEditInpaint", (4, 1), dict(prompt="a red hot-air balloon in the sky, detailed", negative_prompt="",
                                                    strength=1.0, steps=20, guidance=30.0, seed=42, samples=1,
                                                    keep_unmasked=True)),
            N(12, "ImgEditStitch", (5, 0), {"feather": 8}),
            N(13, "SaveImage", (5, 1), {"filename_prefix": "imgedit/inpaint_flux_fill"}),
            _note(14, (5, 2), FLUX_NOTE.format(
                model="flux1-fill-dev", guidance=30,
                what="Flux Fill takes the masked picture and the mask as input channels: the edit node runs "
                     "InpaintModelConditioning -> FluxGuidance as the core Fill workflows do.",
                size="ImgEditCropToMask scales the crop around the mask to 1024 px (target_edge) and "
                     "ImgEditStitch puts it back."), size=(380, 320)),
        ], [
            *fill_links, *crop_links, *flux_links(7, 10),
            (10, 0, 11, "provider"), (6, "image", 11, "image"), (6, "mask", 11, "mask"),
            (6, "stitch", 12, "stitch"), (11, "IMAGE", 12, "image"), (12, 0, 13, "images"),
        ]),
        Spec("img2img_remote", [
            N(1, "LoadImage", (0, 1), {"image": SAMPLE}, title="Picture"),
            N(2, "ImgEditDezgo", (0, 0), {}),
            N(3, "ImgEditImg2Img", (1, 0), dict(common, prompt="an oil painting of a sunny landscape, detailed",
                                                   strength=0.6, steps=30)),
            N(4, "SaveImage", (2, 0), {"filename_prefix": "imgedit/img2img_remote"}),
            _note(5, (2, 1), PAID_NOTE.format(env="DEZGO_API_KEY"), size=(360, 260)),
        ], [
            (2, 0, 3, "provider"), (1, "IMAGE", 3, "image"), (3, "IMAGE", 4, "images"),
        ]),
        Spec("inpaint_crop_stitch_remote", [
            *remote_nodes,
            N(6, "ImgEditCropToMask", (2, 1), {"context": 0.75, "max_edge": 768, "multiple_of": 8,
                                                "target_edge": 512, "regions": "separately"}),
            N(7, "ImgEditModelsLab", (2, 0), {}),
            N(8, "ImgEditInpaint", (3, 0), dict(common, prompt="a red hot-air balloon in the sky, detailed",
                                                    strength=1.0, steps=31, keep_unmasked=True)),
            N(9, "ImgEditStitch", (4, 0), {"feather": 8, "color_match": "lab"}),
            N(10, "SaveImage", (4, 1), {"filename_prefix": "imgedit/inpaint_crop_stitch_remote"}),
            _note(11, (4, 2), PAID_NOTE.format(env="MODELSLAB_API_KEY") +
                  "\n\nOnly the crop around the mask is sent, scaled to 512 px (target_edge: the size SD 1.5 "
                  "works best at), one crop per separate part of the mask; Stitch scales each edit back, "
                  "matches its colours to the picture (color_match) and pastes it in.", size=(360, 340)),
        ], [
            *remote_links, *crop_links,
            (7, 0, 8, "provider"), (6, "image", 8, "image"), (6, "mask", 8, "mask"),
            (6, "stitch", 9, "stitch"), (8, "IMAGE", 9, "image"), (9, 0, 10, "images"),
        ]),
        Spec("outpaint_remote", [
            N(1, "LoadImage", (0, 0), {"image": SAMPLE}, title="Picture"),
            N(2, "ImgEditExtendCanvas", (1, 0), {"left": 0, "top": 0, "right": OUTPAINT_RIGHT, "bottom": 0,
                                                  "fill": "surround", "overlap": 32}),
            N(3, "ImgEditCropToMask", (1, 1), {"context": 0.25, "max_edge": 768, "multiple_of": 8, "target_edge": 512,
                                                "regions": "together"}),
            N(4, "ImgEditDezgo", (2, 0), {}),
            N(5, "ImgEditInpaint", (3, 0), dict(common, prompt="a sunny landscape with green hills, a lake and a blue sky, detailed",
                                                    strength=1.0, steps=30, keep_unmasked=True)),
            N(6, "ImgEditStitch", (4, 0), {"feather": 8, "color_match": "lab"}),
            N(7, "SaveImage", (4, 1), {"filename_prefix": "imgedit/outpaint_remote"}),
            _note(8, (2, 1), PAID_NOTE.format(env="DEZGO_API_KEY") +
                  f"\n\nOutpainting: Extend Canvas adds {OUTPAINT_RIGHT} px on the right, filled from the picture's own "
                  "colours (no seam), and masks the new strip (ramping 32 px into the original). Crop To Mask sends only "
                  "that border region, scaled to 512 px; Stitch pastes the result into the larger picture, the rest of "
                  "the original untouched.", size=(360, 340)),
        ], [
            (1, "IMAGE", 2, "image"), (2, "image", 3, "image"), (2, "mask", 3, "mask"),
            (4, 0, 5, "provider"), (3, "image", 5, "image"), (3, "mask", 5, "mask"),
            (3, "stitch", 6, "stitch"), (5, "IMAGE", 6, "image"), (6, 0, 7, "images"),
        ]),
        Spec("regions_two_prompts_remote", [
            N(1, "LoadImage", (0, 0), {"image": SAMPLE}, title="Picture"),
            N(2, "LoadImage", (0, 1), {"image": SAMPLE_MASK}, title="Mask picture: the cloud"),
            N(3, "ImgEditMaskFromImage", (1, 0), {"threshold": 0.5, "invert": False}),
            N(4, "SolidMask", (1, 1), {"value": 1.0, "width": 200, "height": 70}, title="Second region: the lake"),
            N(5, "MaskComposite", (1, 2), {"x": 480, "y": 400, "operation": "add"}),
            N(6, "ImgEditCropToMask", (2, 1), {"context": 0.5, "max_edge": 768, "multiple_of": 8, "target_edge": 512,
                                                "regions": "separately"}),
            N(7, "ImgEditModelsLab", (2, 0), {}),
            N(8, "ImgEditInpaint", (3, 0), dict(common, prompt="a red hot-air balloon in the sky, detailed\n---\n"
                                                                   "a small white sailing boat on a blue lake, detailed",
                                                    strength=1.0, steps=31, keep_unmasked=True)),
            N(9, "ImgEditStitch", (4, 0), {"feather": 8, "color_match": "lab"}),
            N(10, "SaveImage", (4, 1), {"filename_prefix": "imgedit/regions_two_prompts_remote"}),
            _note(11, (3, 1), PAID_NOTE.format(env="MODELSLAB_API_KEY") +
                  "\n\nTwo regions, two prompts: the mask has two separate parts (the cloud, and a box on the lake), so "
                  "Crop To Mask (regions: separately) makes two crops, in reading order: the cloud first. The prompt holds "
                  "one prompt per crop, separated by a line that is exactly ---; crop i gets prompt i. Stitch puts both "
                  "back into the one picture.", size=(360, 340)),
        ], [
            (2, "IMAGE", 3, "image"), (3, 0, 5, "destination"), (4, 0, 5, "source"),
            (1, "IMAGE", 6, "image"), (5, 0, 6, "mask"),
            (7, 0, 8, "provider"), (6, "image", 8, "image"), (6, "mask", 8, "mask"),
            (6, "stitch", 9, "stitch"), (8, "IMAGE", 9, "image"), (9, 0, 10, "images"),
        ]),
    ]

