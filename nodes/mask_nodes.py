"""Mask preparation nodes: grow/shrink, feather, mask from a picture, crop around a mask, stitch,
cut other pictures like a crop, fill the masked area, extend the canvas for outpainting.

Thin V3 wrappers: each ``execute`` only turns widget values into one call of
:mod:`nodes.core.masks`, where the maths (and its tests) live.
"""

from __future__ import annotations

from comfy_api.latest import io

from .comfy_types import STITCH

from .core import masks

CATEGORY = "ImgEdit/mask"
MAX_PIXELS = 4096


class ImgEditGrowMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ImgEditGrowMask",
            display_name="Grow / Shrink Mask (ImgEdit)",
            category=CATEGORY,
            description="Grow (positive pixels) or shrink (negative) a mask. Soft masks stay soft. "
                        "diamond and square give exactly what core GrowMask gives, much faster; round grows evenly in every direction.",
            inputs=[
                io.Mask.Input("mask", tooltip="The mask to grow or shrink (white = area to change)."),
                io.Int.Input("pixels", default=8, min=-MAX_PIXELS, max=MAX_PIXELS, step=1,
                             tooltip="How far to move the mask's edge, in pixels: positive grows, negative shrinks, 0 keeps it."),
                io.Combo.Input("shape", options=list(masks.GROW_SHAPES), default="round",
                               tooltip="round: a circle (even growth); diamond: core GrowMask with tapered corners; square: core GrowMask without."),
            ],
            outputs=[io.Mask.Output(display_name="mask", tooltip="The grown or shrunk mask, same size.")],
        )

    @classmethod
    def execute(cls, mask, pixels: int, shape: str) -> io.NodeOutput:
        return io.NodeOutput(masks.grow_mask(mask, pixels, shape))


class ImgEditFeatherMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ImgEditFeatherMask",
            display_name="Feather Mask Edges (ImgEdit)",
            category=CATEGORY,
            description="Soften a mask's edges with a smooth (Gaussian-shaped) ramp, so an edit blends into the picture without a seam.",
            inputs=[
                io.Mask.Input("mask", tooltip="The mask whose edges to soften."),
                io.Int.Input("radius", default=16, min=0, max=1024, step=1,
                             tooltip="Width of the soft ramp in pixels; 0 leaves the mask unchanged."),
                io.Combo.Input("mode", options=list(masks.FEATHER_MODES), default="outward",
                               tooltip="outward: the mask stays whole and the ramp is added outside it; inward: the ramp eats into the mask, outside stays 0; centered: the ramp straddles the edge."),
            ],
            outputs=[io.Mask.Output(display_name="mask", tooltip="The feathered mask, same size.")],
        )

    @classmethod
    def execute(cls, mask, radius: int, mode: str) -> io.NodeOutput:
        return io.NodeOutput(masks.feather_mask(mask, radius, mode))


class ImgEditMaskFromImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ImgEditMaskFromImage",
            display_name="Mask From Image (ImgEdit)",
            category=CATEGORY,
            description="Make a mask from a picture's brightness: a black-and-white mask picture loaded with LoadImage becomes a MASK (white = change).",
            inputs=[
                io.Image.Input("image", tooltip="A picture whose bright areas become the mask (for example a painted mask file)."),
                io.Float.Input("threshold", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="0 keeps the brightness as a soft mask; above 0, pixels at least this bright become 1 and the rest 0."),
                io.Boolean.Input("invert", default=False,
                                 tooltip="Swap the result, for mask pictures where black marks the area to change."),
            ],
            outputs=[io.Mask.Output(display_name="mask", tooltip="The mask, same size as the picture.")],
        )

    @classmethod
    def execute(cls, image, threshold: float, invert: bool) -> io.NodeOutput:
        return io.NodeOutput(masks.mask_from_image(image, threshold, invert))


class ImgEditCropToMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ImgEditCropToMask",
            display_name="Crop To Mask (ImgEdit)",
            category=CATEGORY,
            description="Cut the picture down to the area around the mask (plus some context), so an edit works at full detail there; "
                        "ImgEditStitch puts the edited crop back.",
            inputs=[
                io.Image.Input("image", tooltip="The pictures to crop."),
                io.Mask.Input("mask", tooltip="The area to edit; the crop is centred on it. An empty mask keeps the whole picture."),
                io.Float.Input("context", default=0.5, min=0.0, max=10.0, step=0.05,
                               tooltip="Extra surroundings, as a fraction of the mask's box: 0.5 makes the box half as big again."),
                io.Int.Input("max_edge", default=1024, min=64, max=8192, step=8,
                             tooltip="Longest side of the crop in pixels; bigger areas are scaled down to it."),
                io.Int.Input("multiple_of", default=8, min=1, max=256, step=1,
                             tooltip="Both sides of the crop are a multiple of this (8 suits most models)."),
                io.Int.Input("target_edge", default=0, min=0, max=8192, step=8,
                             tooltip="0: off, the crop keeps the picture's own pixels. Otherwise the crop is scaled, up or down, so its longest side "
                                     "is this many pixels (at most max_edge): the size the model works best at, e.g. 512 for SD 1.5, 1024 for SDXL."),
                io.Combo.Input("regions", options=list(masks.REGION_MODES), default="together",
                               tooltip="together: one crop per picture around all of its mask. separately: one crop per separate part of the mask "
                                       "(parts whose crops would overlap are merged); the crops form one batch, picture 0's first, and Stitch puts each back."),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The crops, all one size."),
                io.Mask.Output(display_name="mask", tooltip="The mask cut the same way."),
                STITCH.Output(display_name="stitch", tooltip="Where the crops came from: connect it to ImgEditStitch."),
            ],
        )

    @classmethod
    def execute(cls, image, mask, context: float, max_edge: int, multiple_of: int, target_edge: int = 0,
                regions: str = "together") -> io.NodeOutput:
        crops, crop_masks, record = masks.crop_to_mask(image, mask, context, max_edge, multiple_of, target_edge, regions)
        return io.NodeOutput(crops, crop_masks, record)


class ImgEditStitch(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ImgEditStitch",
            display_name="Stitch Crop Back (ImgEdit)",
            category=CATEGORY,
            description="Paste edited crops back into the original pictures through the crop mask; pixels outside the crop stay exactly as they were.",
            inputs=[
                STITCH.Input("stitch", tooltip="The stitch output of ImgEditCropToMask."),
                io.Image.Input("image", tooltip="The edited crops (any size; several samples per picture are fine)."),
                io.Int.Input("feather", default=8, min=0, max=1024, step=1,
                             tooltip="Soft blend outside the mask's edge, in picture pixels, so the seam does not show."),
                io.Combo.Input("color_match", options=list(masks.COLOR_MATCH_MODES), default="none",
                               tooltip="none: paste the edit as it is. lab / ycbcr: first match the edit's colours (mean and spread per channel in that "
                                       "colour space) to the original's on the crop area outside the mask, so an edit whose colours drifted leaves no seam."),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="The full pictures with the edits pasted in.")],
        )

    @classmethod
    def execute(cls, stitch, image, feather: int, color_match: str = "none") -> io.NodeOutput:
        return io.NodeOutput(masks.stitch(stitch, image, feather, color_match))


class ImgEditCropLike(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ImgEditCropLike",
            display_name="Crop Like Stitch (ImgEdit)",
            category=CATEGORY,
            description="Cut another picture or mask (a ControlNet hint, a depth map, a second mask) exactly as ImgEditCropToMask cut the original, "
                        "so the edit of the crops can use it.",
            inputs=[
                STITCH.Input("stitch", tooltip="The stitch output of ImgEditCropToMask whose cut to repeat."),
                io.Image.Input("image", optional=True,
                               tooltip="A picture of the original's size (or the same aspect); one, or one per original. Not connected: the original's crops."),
                io.Mask.Input("mask", optional=True,
                              tooltip="A mask of the original's size (or the same aspect), cut whole. Not connected: the crop masks of the stitch."),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The picture cut like the crops, one per crop."),
                io.Mask.Output(display_name="mask", tooltip="The mask cut like the crops, one per crop."),
            ],
        )

    @classmethod
    def execute(cls, stitch, image=None, mask=None) -> io.NodeOutput:
        return io.NodeOutput(*masks.crop_like(stitch, image, mask))


class ImgEditFillMasked(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ImgEditFillMasked",
            display_name="Fill Masked Area (ImgEdit)",
            category=CATEGORY,
            description="Fill the masked area before an img2img-style edit at high strength, so the old content does not steer it. "
                        "Outside the mask the picture is untouched; soft masks blend the fill in.",
            inputs=[
                io.Image.Input("image", tooltip="The pictures to fill."),
                io.Mask.Input("mask", tooltip="The area to fill (white = fill)."),
                io.Combo.Input("mode", options=list(masks.FILL_MODES), default="neutral",
                               tooltip="neutral: mid grey. surround: a smooth fill pulled in from the colours around the hole."),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="The pictures with the masked area filled.")],
        )

    @classmethod
    def execute(cls, image, mask, mode: str) -> io.NodeOutput:
        return io.NodeOutput(masks.fill_masked(image, mask, mode))


class ImgEditExtendCanvas(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        def side(name: str, where: str) -> io.Int.Input:
            return io.Int.Input(name, default=0, min=0, max=masks.MAX_EXTEND, step=8,
                                tooltip=f"Pixels to add {where} the picture (0: none).")

        return io.Schema(
            node_id="ImgEditExtendCanvas",
            display_name="Extend Canvas for Outpainting (ImgEdit)",
            category=CATEGORY,
            description="Make the picture larger for outpainting: the original stays exactly in place, the new area is filled so a model "
                        "continues the picture, and the mask marks the new area. Then ImgEditCropToMask (target_edge) -> ImgEditInpaint -> "
                        "ImgEditStitch sends only the border region, at the model's size.",
            inputs=[
                io.Image.Input("image", tooltip="The pictures to extend."),
                side("left", "left of"),
                side("top", "above"),
                side("right", "right of"),
                side("bottom", "below"),
                io.Combo.Input("fill", options=list(masks.EXTEND_FILL_MODES), default="surround",
                               tooltip="What the new area starts as. surround: the colours next to it, fading smoothly to the picture's broad "
                                       "colours (no seam, the model continues it). edge: the border pixels repeated outwards (stripes). neutral: mid grey."),
                io.Int.Input("overlap", default=16, min=0, max=masks.MAX_OVERLAP, step=1,
                             tooltip="How far, in pixels, the mask ramps down into the original along each extended side, so the model may blend "
                                     "its continuation into the edge. 0: the mask stops exactly at the border. The picture's pixels are never changed here."),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The larger pictures: the original in place, the new area filled."),
                io.Mask.Output(display_name="mask", tooltip="1 on the new area, ramping to 0 over the overlap inside the original, 0 elsewhere."),
            ],
        )

    @classmethod
    def execute(cls, image, left: int, top: int, right: int, bottom: int, fill: str = "surround", overlap: int = 16) -> io.NodeOutput:
        return io.NodeOutput(*masks.extend_canvas(image, left, top, right, bottom, fill, overlap))


NODES = [ImgEditGrowMask, ImgEditFeatherMask, ImgEditMaskFromImage, ImgEditCropToMask, ImgEditStitch, ImgEditCropLike,
         ImgEditFillMasked, ImgEditExtendCanvas]
