"""UI-format workflows (what the frontend saves) -> the API format ``POST /prompt`` takes.

Widget order comes from ``/object_info`` (``input_order``); :func:`adapt_for_test` swaps the model
names the example workflows use for the tiny test models.
"""

from __future__ import annotations

import json
from typing import Any

#: Input types the frontend shows as widgets (anything else is a link-only socket).
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
#: UI-only node types that never reach the API prompt.
UI_ONLY_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}


def input_specs(info: dict) -> list[tuple[str, Any, dict]]:
    """``(name, type, options)`` for every declared input, in the order the frontend builds widgets."""
    inputs = info.get("input", {})
    order = info.get("input_order") or {k: list(v) for k, v in inputs.items()}
    specs = []
    for group in ("required", "optional"):
        for name in order.get(group, []):
            spec = inputs.get(group, {}).get(name)
            if spec is None:
                continue
            kind = spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs.append((name, kind, options))
    return specs


def is_widget(kind: Any, options: dict) -> bool:
    if options.get("forceInput") or options.get("rawLink"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _has_control(name: str, kind: Any, options: dict) -> bool:
    """The frontend adds a ``control_after_generate`` widget (saved, never sent) after these."""
    if options.get("control_after_generate"):
        return True
    return kind == "INT" and name in ("seed", "noise_seed")


def widget_slots(info: dict) -> list[tuple[str, str]]:
    """The positional layout of a node's ``widgets_values``: ``(input name, "value"|"control"|"upload")``."""
    slots = []
    for name, kind, options in input_specs(info):
        if not is_widget(kind, options):
            continue
        slots.append((name, "value"))
        if _has_control(name, kind, options):
            slots.append((name, "control"))
        if options.get("image_upload") or options.get("video_upload") or options.get("animated_image_upload"):
            slots.append((name, "upload"))
    return slots


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow into the API format of ``POST /prompt``.

    ``widgets_values`` are positional, one per widget in ``/object_info`` input order (required,
    then optional), including the ``control_after_generate`` value after seed-like INTs and the
    upload button's value after image-upload combos; a linked input takes no widget value. Links
    ``[id, from_node, from_slot, to_node, to_slot, type]`` become ``[str(from_node), from_slot]``.
    Muted (mode 2) and UI-only nodes are dropped; bypassed nodes (mode 4) are not supported.
    """
    links = {link[0]: link for link in workflow.get("links", [])}
    nodes = {node["id"]: node for node in workflow.get("nodes", [])}
    prompt: dict[str, dict] = {}
    for node in workflow.get("nodes", []):
        kind = node["type"]
        if kind in UI_ONLY_TYPES or node.get("mode", 0) == 2:
            continue
        if node.get("mode", 0) == 4:
            raise ValueError(f"node {node['id']} ({kind}) is bypassed; the converter does not support bypass")
        if kind not in object_info:
            raise ValueError(f"node {node['id']} has type {kind!r}, which this ComfyUI does not know")
        info = object_info[kind]
        inputs: dict[str, Any] = {}

        linked = {}
        for slot in node.get("inputs", []) or []:
            if slot.get("link") is not None:
                linked[slot["name"]] = slot["link"]

        values = node.get("widgets_values", [])
        slots = widget_slots(info)
        if isinstance(values, dict):  # some DOM widgets save a name -> value map
            for name, _ in slots:
                if name in values:
                    inputs[name] = values[name]
        else:
            # the upload button's value is optional in older saves: drop those slots if counts say so
            if len(values) != len(slots):
                no_upload = [s for s in slots if s[1] != "upload"]
                if len(values) == len(no_upload):
                    slots = no_upload
                else:
                    raise ValueError(
                        f"node {node['id']} ({kind}) has {len(values)} widget values, expected {len(slots)}: "
                        f"{[f'{n}:{k}' for n, k in slots]}")
            for (name, role), value in zip(slots, values):
                if role == "value":
                    inputs[name] = value

        for name, link_id in linked.items():
            link = links.get(link_id)
            if link is None:
                raise ValueError(f"node {node['id']} input {name!r} names missing link {link_id}")
            _, origin, origin_slot, target, _target_slot, _type = link[:6]
            if target != node["id"]:
                raise ValueError(f"link {link_id} ends at node {target}, not {node['id']}")
            source = nodes.get(origin)
            if source is None or source.get("mode", 0) == 2 or source["type"] in UI_ONLY_TYPES:
                raise ValueError(f"node {node['id']} input {name!r} comes from an unsupported node {origin}")
            inputs[name] = [str(origin), origin_slot]

        prompt[str(node["id"])] = {
            "class_type": kind,
            "inputs": inputs,
            "_meta": {"title": node.get("title") or info.get("display_name") or kind},
        }
    return prompt


def api_node(object_info: dict, class_type: str, **inputs) -> dict:
    """An API-format node with every required widget input not given filled from its default."""
    info = object_info[class_type]
    filled = {}
    for name, spec in info.get("input", {}).get("required", {}).items():
        if name in inputs:
            continue
        kind, options = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
        if isinstance(kind, list):
            filled[name] = options.get("default", kind[0] if kind else None)
        elif kind == "COMBO":
            filled[name] = options.get("default", (options.get("options") or [None])[0])
        elif "default" in options:
            filled[name] = options["default"]
    filled.update(inputs)
    return {"class_type": class_type, "inputs": filled}


def output_index(object_info: dict, class_type: str, name: str) -> int:
    """The slot of output ``name`` (its ``output_name``, case-insensitive) on ``class_type``."""
    names = [str(n).lower() for n in object_info[class_type].get("output_name", [])]
    try:
        return names.index(name.lower())
    except ValueError:
        raise KeyError(f"{class_type} has no output {name!r}; it has {names}") from None


#: Loaders of model families whose real files the test ComfyUI lacks -> the test-only node of
#: ``tiny_families`` that stands in (same output slot 0), with its input from the loader's inputs.
_FAMILY_STAND_INS = {
    "UNETLoader": ("TestTinyFamilyModel", lambda inputs: {
        "family": "flux_fill" if "fill" in str(inputs.get("unet_name", "")).lower()
        else "qwen_image" if "qwen" in str(inputs.get("unet_name", "")).lower() else "flux_dev"}),
    "DualCLIPLoader": ("TestStandInClip", lambda inputs: {"kind": "flux"}),
    "CLIPLoader": ("TestStandInClip", lambda inputs: {"kind": "qwen" if "qwen" in str(inputs.get("type")) else "flux"}),
    "VAELoader": ("TestTinyVae", lambda inputs: {"kind": "qwen" if "qwen" in str(inputs.get("vae_name")) else "flux"}),
}


def _swap_family_loaders(prompt: dict, object_info: dict) -> None:
    """Family loaders (UNET, CLIP, VAE) naming files this ComfyUI lacks become the test-only tiny nodes."""
    for node in prompt.values():
        stand_in = _FAMILY_STAND_INS.get(node["class_type"])
        if stand_in is None or stand_in[0] not in object_info:
            continue
        specs = object_info[node["class_type"]].get("input", {}).get("required", {})
        missing = False
        for name, value in node["inputs"].items():
            spec = specs.get(name)
            options = None if spec is None else spec[0] if isinstance(spec[0], list) else (
                spec[1].get("options") if spec[0] == "COMBO" and len(spec) > 1 else None)
            missing |= bool(options is not None and "_name" in name and value not in options)
        if missing:
            node["inputs"] = stand_in[1](node["inputs"])
            node["class_type"] = stand_in[0]


def adapt_for_test(prompt: dict, object_info: dict) -> dict:
    """Swap what this ComfyUI lacks (the examples name real models) for what it has: family loaders
    (UNET, CLIP, VAE files) for the test-only tiny nodes; COMBO values: ``tiny-sd-inpaint`` for a model
    whose name says inpaint, ``tiny-sd`` otherwise (for ``ckpt_name``: ``tiny-sd15-inpaint.safetensors``
    / ``tiny-sd15.safetensors``), else the first option."""
    out = json.loads(json.dumps(prompt))
    _swap_family_loaders(out, object_info)
    for node in out.values():
        info = object_info.get(node["class_type"], {})
        specs = {**info.get("input", {}).get("required", {}), **info.get("input", {}).get("optional", {})}
        for name, value in list(node["inputs"].items()):
            spec = specs.get(name)
            if spec is None or isinstance(value, list):
                continue
            options = spec[0] if isinstance(spec[0], list) else (
                spec[1].get("options") if spec[0] == "COMBO" and len(spec) > 1 else None)
            if not options or value in options:
                continue
            wanted = "tiny-sd-inpaint" if "inpaint" in str(value).lower() else "tiny-sd"
            if name == "ckpt_name":  # ComfyUI's own loaders get the tiny SD1.5 checkpoints
                wanted = wanted.replace("tiny-sd", "tiny-sd15") + ".safetensors"
            node["inputs"][name] = wanted if wanted in options else options[0]
    return out
