"""Generate ``example_workflows/*.json`` (UI format) from a running ComfyUI's ``/object_info``.

Widget order comes from ``/object_info`` (``input_order``), so the saved ``widgets_values`` line up
with what the frontend builds, including the ``control_after_generate`` value after ``seed`` and the
upload button's value after LoadImage's ``image``.

    # a ComfyUI already running with the pack loaded:
    python tests/comfyui/make_workflows.py --url http://127.0.0.1:8188
    # or start one (tiny models + sandbox), write the workflows, run each and render thumbnails:
    COMFYUI_DIR=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/venv/bin/python \\
        python tests/comfyui/make_workflows.py --run --thumbnails

Thumbnails (same-name ``.jpg``) show the input and the workflow's output side by side; they come from
a run against the offline sandbox (remote workflows) and tiny random-weight models (local ones, so
their output is noise inside the mask: that is what a random model paints).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Optional, Union

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from comfyui_client import ComfyClient  # noqa: E402
from comfyui_server import PACK_ROOT  # noqa: E402
from comfyui_session import comfy_session  # noqa: E402
from comfyui_workflow import adapt_for_test, input_specs, is_widget, ui_to_api, widget_slots  # noqa: E402
from example_specs import SAMPLE, N, Spec, specs  # noqa: E402

OUT_DIR = PACK_ROOT / "example_workflows"


# --------------------------------------------------------------------------------------------------


def _output_slot(info: dict, ref: Union[int, str]) -> int:
    if isinstance(ref, int):
        return ref
    names = [str(n).lower() for n in info.get("output_name", [])]
    types = [str(t).lower() for t in info.get("output", [])]
    for options in (names, types):
        if ref.lower() in options:
            return options.index(ref.lower())
    raise KeyError(f"{info.get('name')}: no output {ref!r} (names {names}, types {types})")


def _default(kind: Any, options: dict) -> Any:
    if "default" in options:
        return options["default"]
    if isinstance(kind, list):
        return kind[0] if kind else ""
    if kind == "COMBO":
        return (options.get("options") or [""])[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


def _size(info: dict, n_widgets: int, multiline: int, n_in: int, n_out: int) -> list[float]:
    rows = max(n_in, n_out)
    height = 46 + 22 * rows + 26 * n_widgets + 70 * multiline
    if info.get("name") in ("LoadImage", "SaveImage", "PreviewImage"):
        height = max(height, 330)  # room for the picture preview
    return [340, height]


#: Layout: columns left to right, nodes stacked top to bottom; graph units.
ORIGIN, COLUMN_GAP, ROW_GAP, TITLE_HEIGHT = (40, 80), 70, 40, 30


def _layout(spec: Spec, nodes: list[dict]) -> None:
    """Place each node from its (column, row): columns as wide as their widest node, no overlaps."""
    by_id = {node["id"]: node for node in nodes}
    columns: dict[int, list[N]] = {}
    for n in spec.nodes:
        columns.setdefault(n.place[0], []).append(n)
    x = ORIGIN[0]
    for col in sorted(columns):
        members = sorted(columns[col], key=lambda n: n.place[1])
        y = ORIGIN[1]
        for n in members:
            node = by_id[n.id]
            node["pos"] = [x, y]
            y += node["size"][1] + TITLE_HEIGHT + ROW_GAP
        x += max(by_id[n.id]["size"][0] for n in members) + COLUMN_GAP


def build_ui(spec: Spec, object_info: dict) -> dict:
    """A UI-format workflow (``version`` 0.4) for ``spec``, widgets laid out from ``object_info``."""
    nodes_by_id = {n.id: n for n in spec.nodes}
    links = []
    inputs_of: dict[int, list[dict]] = {n.id: [] for n in spec.nodes}
    outputs_of: dict[int, dict[int, list[int]]] = {n.id: {} for n in spec.nodes}
    for link_id, (src, ref, dst, input_name) in enumerate(spec.links, start=1):
        src_info = object_info[nodes_by_id[src].type]
        slot = _output_slot(src_info, ref)
        kind = src_info["output"][slot]
        dst_info = object_info[nodes_by_id[dst].type]
        names = [name for name, _, _ in input_specs(dst_info)]
        if input_name not in names:
            raise KeyError(f"{nodes_by_id[dst].type} has no input {input_name!r} ({names})")
        links.append([link_id, src, slot, dst, None, kind])
        inputs_of[dst].append({"name": input_name, "type": kind, "link": link_id})
        outputs_of[src].setdefault(slot, []).append(link_id)

    # topological order for "order"
    order: dict[int, int] = {}
    pending = {n.id for n in spec.nodes}
    deps = {n.id: {src for src, _, dst, _ in spec.links if dst == n.id} for n in spec.nodes}
    while pending:
        ready = sorted(i for i in pending if deps[i] <= set(order))
        if not ready:
            raise ValueError(f"{spec.name}: the links form a cycle")
        for i in ready:
            order[i] = len(order)
            pending.discard(i)

    nodes = []
    for n in spec.nodes:
        if n.type == "Note":
            nodes.append({
                "id": n.id, "type": "Note", "pos": [0, 0], "size": list(n.size or (330, 200)),
                "flags": {}, "order": order[n.id], "mode": 0, "inputs": [], "outputs": [],
                "properties": {}, "widgets_values": [n.values["text"]],
                **({"color": n.color} if n.color else {}), **({"bgcolor": n.bgcolor} if n.bgcolor else {}),
            })
            continue
        info = object_info[n.type]
        specs_by_name = {name: (kind, options) for name, kind, options in input_specs(info)}
        unknown = set(n.values) - set(specs_by_name)
        if unknown:
            raise KeyError(f"{spec.name}: {n.type} has no widget(s) {sorted(unknown)}")
        linked = {i["name"] for i in inputs_of[n.id]}
        values = []
        multiline = 0
        for name, role in widget_slots(info):
            kind, options = specs_by_name[name]
            if role == "control":
                values.append("fixed")
            elif role == "upload":
                values.append("image")
            else:
                values.append(n.values.get(name, _default(kind, options)))
                multiline += bool(options.get("multiline"))
        # socket inputs in declaration order (linked ones carry their link; unlinked optional sockets too)
        socket_inputs = []
        for name, kind, options in input_specs(info):
            if is_widget(kind, options):
                continue
            entry = next((i for i in inputs_of[n.id] if i["name"] == name), None)
            if entry is None:
                entry = {"name": name, "type": kind if isinstance(kind, str) else "COMBO", "link": None}
            socket_inputs.append(entry)
        for slot_index, entry in enumerate(socket_inputs):
            if entry["link"] is not None:
                links[entry["link"] - 1][4] = slot_index
        outputs = []
        for slot, (kind, out_name) in enumerate(zip(info.get("output", []), info.get("output_name", []))):
            outputs.append({"name": out_name, "type": kind, "links": outputs_of[n.id].get(slot, []),
                            "slot_index": slot})
        node = {
            "id": n.id, "type": n.type, "pos": [0, 0],
            "size": list(n.size or _size(info, len(values), multiline, len(socket_inputs), len(outputs))),
            "flags": {}, "order": order[n.id], "mode": 0, "inputs": socket_inputs, "outputs": outputs,
            "properties": {"Node name for S&R": n.type}, "widgets_values": values,
        }
        if n.title:
            node["title"] = n.title
        if n.color:
            node["color"] = n.color
        if n.bgcolor:
            node["bgcolor"] = n.bgcolor
        nodes.append(node)
        del linked
    _layout(spec, nodes)

    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-imgedit/example_workflows/{spec.name}")),
        "revision": 0,
        "last_node_id": max(n.id for n in spec.nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.75, "offset": [20, 20]}, "imgedit_example": spec.name},
        "version": 0.4,
    }


def write_workflows(object_info: dict, out_dir: Path = OUT_DIR, only: Optional[list[str]] = None) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for spec in specs():
        if only and spec.name not in only:
            continue
        workflow = build_ui(spec, object_info)
        ui_to_api(workflow, object_info)  # fails loudly if the converter cannot read it back
        path = out_dir / f"{spec.name}.json"
        path.write_text(json.dumps(workflow, indent=2) + "\n", encoding="utf-8")
        written[spec.name] = path
    return written


def thumbnail(pictures: list[bytes], path: Path, height: int = 256, gap: int = 8) -> None:
    """The pictures (input first, then the workflow's outputs) side by side at one height, JPEG."""
    from PIL import Image

    panels = []
    for data in pictures:
        im = Image.open(io.BytesIO(data)).convert("RGB")
        panels.append(im.resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS))
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + gap
    canvas.save(path, "JPEG", quality=85)


def run_and_thumbnail(client: ComfyClient, object_info: dict, paths: dict[str, Path],
                      input_dir: Path, timeout: float = 600) -> None:
    for name, path in paths.items():
        workflow = json.loads(path.read_text())
        prompt = adapt_for_test(ui_to_api(workflow, object_info), object_info)
        entry = client.run(prompt, timeout=timeout)
        images = client.output_images(entry)
        if not any(i["type"] == "output" for i in images):
            raise RuntimeError(f"{name}: no saved output")
        # previews (crop, mask) first in node order, the saved result last
        images.sort(key=lambda i: (i["type"] == "output", int(i["node"])))
        outs = [client.view(i["filename"], i["subfolder"], i["type"]) for i in images][-3:]
        thumbnail([(input_dir / SAMPLE).read_bytes(), *outs], path.with_suffix(".jpg"))
        print(f"{name}: ran, thumbnail {path.with_suffix('.jpg').name}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running ComfyUI with the pack loaded")
    parser.add_argument("--run", action="store_true", help="start a ComfyUI from COMFYUI_DIR (tiny models, sandbox)")
    parser.add_argument("--thumbnails", action="store_true", help="run each workflow and write its .jpg")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--only", nargs="*", help="only these workflows (names without .json)")
    args = parser.parse_args(argv)
    if args.url:
        client = ComfyClient(args.url)
        info = client.object_info()
        paths = write_workflows(info, args.out, args.only)
        print("wrote", ", ".join(str(p) for p in paths.values()))
        if args.thumbnails:
            raise SystemExit("--thumbnails needs --run (the sample inputs and tiny models of a test session)")
        return 0
    if not args.run:
        parser.error("give --url or --run")
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        parser.error("--run needs COMFYUI_DIR (and COMFYUI_PYTHON for its venv)")
    with tempfile.TemporaryDirectory(prefix="imgedit-wf-") as tmp:
        with comfy_session(Path(tmp), Path(comfy_dir), python=os.environ.get("COMFYUI_PYTHON")) as session:
            paths = write_workflows(session.object_info, args.out, args.only)
            print("wrote", ", ".join(str(p) for p in paths.values()))
            if args.thumbnails:
                run_and_thumbnail(session.client, session.object_info, paths, session.server.input_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
