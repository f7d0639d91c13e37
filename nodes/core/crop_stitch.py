"""Crop around the mask (one crop per picture, or one per separate region), cut other pictures the
same way, and stitch the edited crops back.

Every crop of one call has the same size, so the crops form one batch that any edit node takes at
once. The crop box is the mask's box grown by ``context``; with ``target_edge`` it is then scaled
(up or down) so its longest edge is ``target_edge``, the resolution a model works best at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from . import images as img
from .color_match import COLOR_MATCH_MODES, match_colors
from .errors import InputError
from .mask_feather import feather_mask, mask_bbox

REGION_MODES = ("together", "separately")
#: Below this a crop mask value counts as "outside the mask" (resampling leaves tiny values).
OUTSIDE_MASK = 1e-3
#: regions="separately": more mask parts than this is a speckled mask, not regions to edit one by
#: one (the overlap test is pairwise); more regions than MAX_REGIONS would mean as many paid edits.
MAX_PARTS = 4096
MAX_REGIONS = 64


@dataclass(frozen=True, eq=False)
class StitchRecord:
    """What :func:`stitch` and :func:`crop_like` need. Never mutated (tensors are shared).

    One entry per crop, in crop order: ``boxes`` ``(x0, y0, x1, y1)`` in picture pixels, ends
    exclusive, all the same size, and they may reach outside the picture; ``paddings``
    ``(left, top, right, bottom)`` pixels of the box outside the picture (replicated edge pixels in
    the crop); ``pictures`` the index of the original each crop came from (picture 0's crops
    first). ``originals``: ``[B,H,W,3]`` the uncropped pictures. ``crop_size``: ``(h, w)`` of every
    crop. ``crop_masks``: ``[N,h,w]`` the cropped masks (with ``regions="separately"`` each holds
    only its own region).
    """

    originals: torch.Tensor
    boxes: tuple[tuple[int, int, int, int], ...]
    paddings: tuple[tuple[int, int, int, int], ...]
    crop_size: tuple[int, int]
    crop_masks: torch.Tensor
    pictures: tuple[int, ...]

    @property
    def box_size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.boxes[0]
        return y1 - y0, x1 - x0


# --------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------

def _grown_box(box, context: float, height: int, width: int) -> tuple[float, float, float, float]:
    """``(cx, cy, bw, bh)``: the box's centre and its size times ``1 + context`` (empty: whole picture)."""
    if box is None:
        return width / 2.0, height / 2.0, float(width), float(height)
    x0, y0, x1, y1 = box
    scale = 1.0 + context
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0, (x1 - x0) * scale, (y1 - y0) * scale


def _place(centre: float, size: int, limit: int) -> int:
    """Start of a span of ``size`` centred on ``centre``, moved inside ``[0, limit)`` if it fits."""
    start = int(math.floor(centre - size / 2.0 + 0.5))
    if size <= limit:
        return min(max(start, 0), limit - size)
    return (limit - size) // 2


def _to_multiple(x: float, multiple: int, max_edge: int) -> int:
    """``x`` rounded to the nearest multiple, at least one multiple, at most ``max_edge``'s multiple."""
    return min(max(multiple, int(x / multiple + 0.5) * multiple), max(multiple, max_edge // multiple * multiple))


def _crop_sizes(box_h: float, box_w: float, max_edge: int, multiple: int, target_edge: int = 0):
    """``(box_h, box_w, crop_h, crop_w)``: integer box size, and the size of the crop cut from it.

    ``target_edge`` 0: the crop is the box's own pixels (box rounded up to ``multiple``), scaled
    down only past ``max_edge``. Otherwise the box is scaled so its longest edge becomes
    ``min(target_edge, max_edge)``, up or down, sides rounded to ``multiple``.
    """
    box_h = max(1, int(math.ceil(box_h - 1e-6)))
    box_w = max(1, int(math.ceil(box_w - 1e-6)))
    if target_edge > 0:
        scale = min(target_edge, max_edge) / max(box_h, box_w)
        return box_h, box_w, _to_multiple(box_h * scale, multiple, max_edge), _to_multiple(box_w * scale, multiple, max_edge)
    if max(box_h, box_w) <= max_edge:
        # No resize: grow the box to the multiple so the crop is the picture's own pixels.
        box_h = -(-box_h // multiple) * multiple
        box_w = -(-box_w // multiple) * multiple
        if max(box_h, box_w) <= max_edge:
            return box_h, box_w, box_h, box_w
    scale = max_edge / max(box_h, box_w)
    return box_h, box_w, _to_multiple(box_h * scale, multiple, max_edge), _to_multiple(box_w * scale, multiple, max_edge)


def _overlap_groups(grown: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Group index of each box: boxes whose rectangles overlap (directly or in a chain) share one."""
    from scipy.sparse.csgraph import connected_components

    g = np.asarray(grown, dtype=np.float64).reshape(-1, 4)
    x0, x1 = g[:, 0] - g[:, 2] / 2, g[:, 0] + g[:, 2] / 2
    y0, y1 = g[:, 1] - g[:, 3] / 2, g[:, 1] + g[:, 3] / 2
    touching = ((x0[:, None] < x1[None]) & (x0[None] < x1[:, None]) & (y0[:, None] < y1[None]) & (y0[None] < y1[:, None]))
    return connected_components(touching, directed=False)[1]


def _separate_regions(mask: torch.Tensor, context: float):
    """``(boxes, region_ids)`` for one ``[H,W]`` mask: its connected parts, merged while grown boxes overlap.

    ``region_ids [H,W]`` int32 holds ``k + 1`` on the pixels of region ``k`` (0 elsewhere). Regions
    are in reading order of their first pixel (top to bottom, then left to right).
    """
    import scipy.ndimage as ndi

    height, width = int(mask.shape[0]), int(mask.shape[1])
    labels, count = ndi.label(mask.detach().cpu().numpy() > 0, structure=np.ones((3, 3), bool))
    if count == 0:
        return [None], None
    if count > MAX_PARTS:
        raise InputError(f"mask has {count} separate parts; use regions=together, or clean the mask first (grow then shrink it).")
    parts = [(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndi.find_objects(labels)]
    group = np.arange(count)
    while True:  # merging grows boxes, which may make them overlap others: repeat until stable
        boxes = _group_boxes(parts, group)
        merged = _overlap_groups([_grown_box(b, context, height, width) for b in boxes])
        if merged.max() + 1 == len(boxes):
            break
        group = merged[group]
    # Number groups by their first label (reading order of the first pixel).
    order = np.unique(group, return_index=True)[1].argsort().argsort()
    group = order[np.unique(group, return_inverse=True)[1]]
    if len(order) > MAX_REGIONS:
        raise InputError(f"mask has {len(order)} separate regions (at most {MAX_REGIONS}); use regions=together or more context.")
    lookup = np.concatenate([[0], group + 1]).astype(np.int32)
    return _group_boxes(parts, group), torch.from_numpy(lookup[labels])


def _group_boxes(parts, group: np.ndarray) -> list[tuple[int, int, int, int]]:
    p = np.asarray(parts)
    boxes = []
    for k in range(int(group.max()) + 1):
        members = p[group == k]
        boxes.append((int(members[:, 0].min()), int(members[:, 1].min()), int(members[:, 2].max()), int(members[:, 3].max())))
    return boxes


# --------------------------------------------------------------------------------------------
# Crop
# --------------------------------------------------------------------------------------------

def _check_crop_inputs(context: float, max_edge: int, multiple_of: int, target_edge: int, regions: str) -> None:
    if not 0.0 <= context <= 100.0:
        raise InputError(f"context is {context}; use 0 (tight box) or more, up to 100.")
    if multiple_of < 1:
        raise InputError(f"multiple_of is {multiple_of}; use 1 or more.")
    if max_edge < multiple_of:
        raise InputError(f"max_edge is {max_edge}; use at least multiple_of ({multiple_of}).")
    if target_edge < 0 or 0 < target_edge < multiple_of:
        raise InputError(f"target_edge is {target_edge}; use 0 (off) or at least multiple_of ({multiple_of}).")
    if regions not in REGION_MODES:
        raise InputError(f"regions is {regions!r}; use together or separately.")


def crop_to_mask(image: torch.Tensor, mask: torch.Tensor, context: float = 0.5, max_edge: int = 1024,
                 multiple_of: int = 8, target_edge: int = 0, regions: str = "together"):
    """Cut every picture down to the area around its mask, all crops one size.

    ``image [B,H,W,3]``, ``mask [B,H,W]`` (batches of 1 broadcast; a mask of another size with the
    same aspect is resized). Returns ``(crops [N,h,w,3], crop_masks [N,h,w], StitchRecord)``.

    Each box is the mask's bounding box scaled by ``1 + context`` around its centre (``context``
    0.5: half as big again, a quarter of the box on each side); an empty mask takes the whole
    picture. ``regions="separately"``: each connected part of the mask (8-connected; parts whose
    grown boxes overlap are merged) gets its own box and crop, whose mask holds only that part;
    ``N`` is then the number of regions, picture 0's first, each picture's in reading order.
    The boxes are widened (centred) to the largest width and height among them and placed inside
    the picture when they fit; a box larger than the picture hangs over both sides and the crop
    repeats the edge pixels there (its mask is 0 there). Crop size: see :func:`_crop_sizes`
    (``target_edge`` 0: the box's own pixels, downscaled past ``max_edge``; otherwise the box
    scaled so its longest edge is ``target_edge``).

    Cost: one read of the mask for the boxes (and one labelling pass when separately); the
    picture is only read inside the boxes.
    """
    context, multiple_of, max_edge, target_edge = float(context), int(multiple_of), int(max_edge), int(target_edge)
    _check_crop_inputs(context, max_edge, multiple_of, target_edge, regions)
    images = img.to_image_batch(image, name="image")
    masks = img.match_mask_to_image(img.to_mask_batch(mask, name="mask"), images)
    images, masks = img.broadcast_batch(images, masks)
    count, height, width = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])

    found = []  # (picture, grown box, region ids or None, region number)
    for i in range(count):
        if regions == "separately":
            boxes, ids = _separate_regions(masks[i], context)
        else:
            boxes, ids = [mask_bbox(masks[i])], None
        found += [(i, _grown_box(b, context, height, width), ids, k) for k, b in enumerate(boxes)]
    box_h, box_w, crop_h, crop_w = _crop_sizes(max(f[1][3] for f in found), max(f[1][2] for f in found),
                                               max_edge, multiple_of, target_edge)
    boxes, paddings, crops, crop_masks = [], [], [], []
    for i, (cx, cy, _, _), ids, k in found:
        x0, y0 = _place(cx, box_w, width), _place(cy, box_h, height)
        box = (x0, y0, x0 + box_w, y0 + box_h)
        padding = (max(0, -x0), max(0, -y0), max(0, box[2] - width), max(0, box[3] - height))
        boxes.append(box)
        paddings.append(padding)
        crops.append(img.resize_image(_cut(images[i], box, padding, replicate=True), crop_h, crop_w))
        cut_mask = _cut(masks[i], box, padding, replicate=False)
        if ids is not None:
            cut_mask = cut_mask * (_cut(ids, box, padding, replicate=False) == k + 1).to(cut_mask.device)
        crop_masks.append(img.resize_mask(cut_mask, crop_h, crop_w))
    crop_images, crop_mask_batch = torch.stack(crops), torch.stack(crop_masks)
    record = StitchRecord(images, tuple(boxes), tuple(paddings), (crop_h, crop_w), crop_mask_batch,
                          tuple(f[0] for f in found))
    return crop_images, crop_mask_batch, record


def _inside(box, padding):
    """Slices of the picture covered by ``box`` (clipped to the picture)."""
    x0, y0, x1, y1 = box
    left, top, right, bottom = padding
    return slice(y0 + top, y1 - bottom), slice(x0 + left, x1 - right)


def _cut(t: torch.Tensor, box, padding, replicate: bool) -> torch.Tensor:
    """``t`` (``[H,W,3]`` or ``[H,W]``) inside ``box``; outside parts replicated (picture) or 0 (mask)."""
    rows, cols = _inside(box, padding)
    part = t[rows, cols]
    if not any(padding):
        return part
    left, top, right, bottom = padding
    if not replicate:
        return torch.nn.functional.pad(part, (left, right, top, bottom))
    chw = part.permute(2, 0, 1).unsqueeze(0)
    return torch.nn.functional.pad(chw, (left, right, top, bottom), mode="replicate")[0].permute(1, 2, 0)


def _per_crop(record: StitchRecord, batch: torch.Tensor, name: str) -> list[int]:
    """Index into ``batch`` (1 or one per original) of the item each crop cuts."""
    count = int(record.originals.shape[0])
    if batch.shape[0] not in (1, count):
        raise InputError(f"{name} has {batch.shape[0]} pictures but the stitch was cut from {count}; give one, or {count}.")
    return [p if batch.shape[0] > 1 else 0 for p in record.pictures]


def crop_like(record: StitchRecord, image: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None):
    """Cut ``image`` and ``mask`` exactly as ``record`` cut its originals: ``(images [N,h,w,3], masks [N,h,w])``.

    For the originals themselves this gives the very crops of :func:`crop_to_mask`. Either input
    may have another size of the same aspect (a half-size depth map: it is resized to the
    originals' size first) and one picture or one per original. A missing ``image`` gives the
    originals' crops, a missing ``mask`` the record's crop masks. A given mask is cut whole (with
    ``regions="separately"`` it is not reduced to each crop's region).
    """
    originals = record.originals
    height, width = int(originals.shape[1]), int(originals.shape[2])
    crop_h, crop_w = record.crop_size
    pictures = originals
    if image is not None:
        pictures = img.to_image_batch(image, name="image")
        ph, pw = int(pictures.shape[1]), int(pictures.shape[2])
        if (ph, pw) != (height, width):
            if not img.aspect_matches(ph, pw, height, width):
                raise InputError(f"image is {pw}x{ph} but the stitch was cut from {width}x{height} pictures; "
                                 "give a picture of that size (or the same aspect).")
            pictures = img.resize_image(pictures, height, width)
    source = _per_crop(record, pictures, "image")
    crops = torch.stack([img.resize_image(_cut(pictures[source[k]], box, pad, replicate=True), crop_h, crop_w)
                         for k, (box, pad) in enumerate(zip(record.boxes, record.paddings))])
    if mask is None:
        return crops, record.crop_masks
    masks = img.to_mask_batch(mask, name="mask")
    if masks.shape[0] == 1 or masks.shape[0] == originals.shape[0]:
        masks = img.match_mask_to_image(masks, originals[:1])
    source = _per_crop(record, masks, "mask")
    cut = torch.stack([img.resize_mask(_cut(masks[source[k]], box, pad, replicate=False), crop_h, crop_w)
                       for k, (box, pad) in enumerate(zip(record.boxes, record.paddings))])
    return crops, cut


# --------------------------------------------------------------------------------------------
# Stitch
# --------------------------------------------------------------------------------------------

def stitch(record: StitchRecord, edited: torch.Tensor, feather: int = 0, color_match: str = "none") -> torch.Tensor:
    """Paste edited crops back into the original pictures.

    ``edited``: ``[k*N, h', w', 3]`` for the record's ``N`` crops, any size (resized to the box).
    ``k`` samples per crop: edited item ``j`` is a sample of crop ``j // k``. The result has ``k``
    pictures per original, picture-major: output ``i*k + s`` is original ``i`` with sample ``s`` of
    every one of its crops pasted in (all samples of picture 0, then picture 1, ...). Inside each
    box the picture and the edit are blended through the crop mask, feathered outward by
    ``feather`` picture pixels (:func:`feather_mask`); outside every box the result is
    bit-identical to the original, and inside it is exactly the original wherever the blend mask
    is 0. ``color_match`` (not "none") first matches each edit's colours to the original's on the
    part of the box outside the mask (:func:`match_colors`). ``record`` is not changed, so
    stitching twice gives the same result.

    Cost: one copy of the originals (the output); everything else touches only the boxes.
    """
    feather = int(feather)
    if feather < 0:
        raise InputError(f"feather is {feather}; use 0 or more pixels.")
    if color_match not in COLOR_MATCH_MODES:
        raise InputError(f"color_match is {color_match!r}; use one of {', '.join(COLOR_MATCH_MODES)}.")
    edits = img.to_image_batch(edited, name="image")
    originals = record.originals
    crops = len(record.boxes)
    if edits.shape[0] % crops:
        raise InputError(f"image has {edits.shape[0]} pictures but the stitch holds {crops} crops; connect the crops of this stitch (or a multiple of {crops} samples).")
    per_crop = edits.shape[0] // crops
    box_h, box_w = record.box_size
    masks = [_box_mask(record, k) for k in range(crops)]
    blends = [feather_mask(m, feather, "outward") if feather else m for m in masks]
    source = torch.arange(originals.shape[0] * per_crop) // per_crop
    out = originals.index_select(0, source.to(originals.device)).to(torch.float32)
    for j in range(edits.shape[0]):
        k = j // per_crop
        target = record.pictures[k] * per_crop + j % per_crop
        rows, cols = _inside(record.boxes[k], record.paddings[k])
        left, top, right, bottom = record.paddings[k]
        edit = img.resize_image(edits[j], box_h, box_w)[top : box_h - bottom, left : box_w - right].to(out.device)
        inside = lambda m: m[top : box_h - bottom, left : box_w - right].to(out.device)  # noqa: E731
        if color_match != "none":
            original = originals[record.pictures[k], rows, cols].to(torch.float32)
            edit = match_colors(edit, original, inside(masks[k]) < OUTSIDE_MASK, color_match)
        region = out[target, rows, cols]
        out[target, rows, cols] = img.composite(region[None], edit[None], inside(blends[k])[None])[0]
    return out


def _box_mask(record: StitchRecord, k: int) -> torch.Tensor:
    """Crop mask of crop ``k`` at box size."""
    box_h, box_w = record.box_size
    return img.resize_mask(record.crop_masks[k], box_h, box_w)
