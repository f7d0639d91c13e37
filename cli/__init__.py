"""Headless command line over the same core as the nodes.

    python -m comfyui_imgedit img2img|inpaint --provider NAME --image in.png [--mask m.png] --prompt "…" -o out.png
    python -m comfyui_imgedit img2img|inpaint --provider NAME --image DIR [--mask DIR|m.png] --prompt "…" -o DIR
    python -m comfyui_imgedit img2img|inpaint --provider NAME --manifest pictures.jsonl -o DIR
    python -m comfyui_imgedit demo [-o DIR]

A folder or a manifest runs in :mod:`.batch` (concurrent, streamed, a report, resumable).

Keys come from the environment (``DEZGO_API_KEY``, ``MODELSLAB_API_KEY``, ``IMAGEPIPELINE_API_KEY``)
as in ComfyUI; hosts from ``IMGEDIT_*_URL``. Paid calls with a fixed ``--seed`` go through the journal
in the user cache folder (``~/.cache/comfyui-imgedit/journal`` on Linux). Nothing here imports ComfyUI.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ..nodes.core.errors import ImgEditError, InputError
from ..nodes.core.request import Cancelled, Hooks
from ..nodes.core.services import SERVICES
from .batch_io import load_mask, load_picture, write_outputs

ASSETS = Path(__file__).resolve().parents[1] / "assets"
PROVIDERS = (*SERVICES, "local")


def make_provider(name: str, args: argparse.Namespace):
    """The provider object for ``--provider`` (imports only the module it needs)."""
    extra = args.extra or None
    common = dict(deadline_s=args.deadline, extra=extra)
    if name in SERVICES:  # as many calls at once as the service allows, unless --concurrency says fewer
        common["max_concurrency"] = args.concurrency or SERVICES[name].max_concurrency
    if name == "dezgo":
        from ..nodes.core.providers.dezgo import DezgoClient

        return DezgoClient(model=args.model or "", sampler=args.scheduler or "", **common)
    if name == "sdapi":
        from ..nodes.core.providers.sdapi import SDAPIClient

        return SDAPIClient(**common)
    if name == "modelslab":
        from ..nodes.core.providers.modelslab import ModelsLabClient

        options = {"model_id": args.model_id} if args.model_id else {}
        if args.scheduler:
            options["scheduler"] = args.scheduler
        return ModelsLabClient(**options, **common)
    if name == "imagepipeline":
        from ..nodes.core.providers.imagepipeline import ImagePipelineClient

        return ImagePipelineClient(**({"model_id": args.model_id} if args.model_id else {}), **common)
    if name == "local":
        from ..nodes.core.providers.local_diffusers import LocalDiffusersProvider

        if not args.model:
            raise InputError("--model is required with --provider local: give a diffusers folder (with model_index.json).")
        return LocalDiffusersProvider(model_path=args.model, scheduler=args.scheduler or "default")
    raise InputError(f"--provider is {name!r}; use one of {', '.join(PROVIDERS)}.")


def _print_progress(done: int, total: int, text: str) -> None:
    if text:
        print(f"  … {text}", file=sys.stderr, flush=True)


def run_edit_command(args: argparse.Namespace) -> dict[str, Any]:
    from ..nodes.core.edit import run_edit

    if args.prompt is None:
        raise InputError("--prompt is required.")
    if not args.image:
        raise InputError("--image is required: a picture file or a folder of pictures (or give --manifest).")

    image = load_picture(Path(args.image), "--image")
    mask = None
    if args.command == "inpaint":
        if not args.mask:
            raise InputError("--mask is required for inpaint: a picture where white = change, black = keep.")
        mask = load_mask(Path(args.mask), "--mask")
    from ..nodes.core.journal import open_journal

    provider = make_provider(args.provider, args)
    outcome = run_edit(
        provider, image, mask=mask, prompt=args.prompt, negative_prompt=args.negative_prompt,
        strength=args.strength, steps=args.steps, guidance=args.guidance, seed=args.seed,
        samples=args.samples, keep_unmasked=not args.no_keep_unmasked,
        hooks=Hooks(progress=_print_progress), journal=None if args.no_journal else open_journal())
    written = _save(outcome.images, Path(args.output))
    return {"written": [str(p) for p in written], **outcome.info}


def _save(images, output: Path) -> list[Path]:
    """One file per image: ``out.png``, or ``out_0.png``, ``out_1.png``… for several (written as the folder mode does)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return write_outputs(images, output.parent, output.name)


DEMO_TARGET_EDGE = 512


def run_demo(out_dir: Path) -> dict[str, Any]:
    """Crop -> inpaint (ModelsLab protocol, queued job) -> stitch on the sample, against the sandbox."""
    from ..nodes.core import images as img
    from ..nodes.core import masks
    from ..nodes.core.edit import run_edit
    from ..nodes.core.providers.modelslab import ModelsLabClient
    from ..sandbox import SandboxServer

    out_dir.mkdir(parents=True, exist_ok=True)
    picture = load_picture(ASSETS / "sample.png", "sample")[None]
    painted = load_mask(ASSETS / "sample_mask.png", "sample mask")[None]
    steps: list[str] = []

    mask = masks.grow_mask(painted, 8, "round")
    mask = masks.feather_mask(mask, 12, "outward")
    steps.append(f"mask: grown 8 px (round), feathered 12 px outward; {float((mask > 0).float().mean()) * 100:.1f}% of the picture")
    # target_edge 512: the model works near its native size, not at the small region's own size
    crops, crop_masks, record = masks.crop_to_mask(picture, mask, context=0.5, max_edge=1024, multiple_of=8,
                                                   target_edge=DEMO_TARGET_EDGE)
    steps.append(f"crop: {tuple(picture.shape[1:3])} -> {tuple(crops.shape[1:3])} around the mask "
                 f"(longest edge scaled to {DEMO_TARGET_EDGE})")

    # The sandbox's URLs and fake key go into the environment only while it runs.
    with SandboxServer(key="demo-key-not-real") as sandbox, sandbox.patch_env():
        provider = ModelsLabClient(model_id="sandbox-inpaint", deadline_s=60)
        started = time.monotonic()
        outcome = run_edit(provider, crops, mask=crop_masks, prompt="a red hot air balloon",
                           strength=0.9, steps=31, seed=1234, hooks=Hooks(progress=_print_progress))
        elapsed = time.monotonic() - started
    steps.append(f"inpaint: ModelsLab v6 protocol on the sandbox at 127.0.0.1, {outcome.info.get('calls')} call(s), "
                 f"{elapsed:.2f} s, seeds {outcome.info.get('seeds')}")
    result = masks.stitch(record, outcome.images, feather=8, color_match="lab")
    steps.append(f"stitch: back into {tuple(result.shape[1:3])} with lab colour match; pixels outside the crop box "
                 "are the original's")

    paths = {"result": out_dir / "demo_result.png", "mask": out_dir / "demo_mask.png", "crop": out_dir / "demo_crop.png"}
    img.tensor_to_pil(result[0]).save(paths["result"])
    img.mask_to_pil(mask[0]).save(paths["mask"])
    img.tensor_to_pil(outcome.images[0]).save(paths["crop"])
    return {"steps": steps, "written": {k: str(v) for k, v in paths.items()}, "info": outcome.info}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m comfyui_imgedit", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("img2img", "inpaint"):
        sub = commands.add_parser(command, help=f"{command} one picture, a folder of pictures or a manifest")
        sub.add_argument("--provider", required=True, choices=PROVIDERS)
        sources = sub.add_mutually_exclusive_group(required=True)
        sources.add_argument("--image", help="input picture (PNG, JPEG, WebP…), or a folder: every picture in it")
        sources.add_argument("--manifest", help="JSON lines, one picture a line: "
                                                '{"image": …, "mask": …, "prompt": …, "negative_prompt": …, "seed": …} '
                                                "(paths relative to the manifest; missing fields come from the flags)")
        if command == "inpaint":
            sub.add_argument("--mask", help="white = change, black = keep; with a folder of pictures, a folder of "
                                            "masks with the same file names, or one mask for all")
            sub.add_argument("--no-keep-unmasked", action="store_true",
                             help="do not paste the original back outside the mask")
        sub.add_argument("--prompt", help="required, except with a manifest whose lines all give one")
        sub.add_argument("--negative-prompt", default="")
        sub.add_argument("--strength", type=float, default=0.75)
        sub.add_argument("--steps", type=int, default=30)
        sub.add_argument("--guidance", type=float, default=7.5)
        sub.add_argument("--seed", type=int, default=None,
                         help="default: the provider picks one (reported); for a folder, each picture's seed comes "
                              "from its file name, so a re-run is the same request")
        sub.add_argument("--concurrency", type=int, default=None,
                         help="pictures sent at once (default and most: the service's limit)")
        sub.add_argument("--samples", type=int, default=1)
        sub.add_argument("--model", help="Dezgo model id, or a diffusers folder for --provider local")
        sub.add_argument("--model-id", help="ModelsLab / ImagePipeline model_id")
        sub.add_argument("--scheduler", help="Dezgo sampler, or ModelsLab / local scheduler name")
        sub.add_argument("--extra", help="JSON object of further documented provider parameters")
        sub.add_argument("--deadline", type=float, default=600.0, help="overall seconds to wait for a job")
        sub.add_argument("--no-journal", action="store_true",
                         help="send the call even when an identical one (same --seed) is in the journal of "
                              "paid calls (the user cache folder, or IMGEDIT_JOURNAL_DIR)")
        sub.add_argument("-o", "--output", required=True,
                         help="output PNG (several samples: NAME_0.png, …); for a folder or manifest, an output "
                              "folder: each result under its input's name and size, plus report.jsonl")
        sub.set_defaults(no_keep_unmasked=False, mask=None)
    demo = commands.add_parser("demo", help="offline end-to-end demo on the bundled sample (uses the sandbox)")
    demo.add_argument("-o", "--output", default="out", help="folder for the results")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            report = run_demo(Path(args.output))
            for line in report["steps"]:
                print(line)
            print("wrote " + ", ".join(report["written"].values()))
        elif args.manifest or (args.image and Path(args.image).is_dir()):
            from .batch import run_batch

            return run_batch(args, make_provider)
        else:
            report = run_edit_command(args)
            print(json.dumps(report, indent=1, default=str))
    except (Cancelled, KeyboardInterrupt):
        print("cancelled", file=sys.stderr)
        return 130
    except ImgEditError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
