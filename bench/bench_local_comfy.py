"""Bench: the diffusers node path inside ComfyUI's machinery vs the same path with plain hooks.

    COMFYUI_DIR=/path/to/ComfyUI /path/to/comfy-venv/bin/python bench/bench_local_comfy.py \
        [--rounds 30] [--steps 20] [--size 64] [--threads 1]

In one process (ComfyUI's modules imported from ``COMFYUI_DIR``, its device the CPU here), warm,
on the tiny random-weight SD model, same seed and settings; each round runs both, alternating
which goes first, each on a fresh worker thread as the edit node runs it:

- **tracked**: ``run_edit`` with the provider the node builds (``memory_hooks()``: the cached
  pipeline's ModelPatcher ticket claimed through ``load_models_gpu`` before each run), default hooks;
- **plain**: ``run_edit`` with the same provider settings and default memory hooks (no tracking);

and the step previews alone: ``comfy_hooks``' ``preview`` + ``progress`` of one step (a latent2rgb
preview from ``latent_preview.get_previewer``, the previewer KSampler uses, attached to the
progress bar update; without a server, the JPEG encoding and websocket send of ComfyUI's server
loop are not in it) timed 500 times in a row, against the time of one step of the run; and one
previewing run, which must make one preview per step.

Prints the median of the per-round ratios tracked / plain (goal <= 1.03; robust to the drift of a
shared CPU, which moves both runs of a round alike) and median(tracked) / median(plain), the cost
of one claim and of one step's preview. Exit 1 when the goal is missed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")


def _import_comfyui_and_pack():
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir or not (Path(comfy_dir) / "main.py").is_file():
        sys.exit("set COMFYUI_DIR to a ComfyUI checkout and run with its Python")
    sys.path.insert(0, comfy_dir)
    import torch
    from comfy.cli_args import LatentPreviewMethod, args

    args.preview_method = LatentPreviewMethod.Latent2RGB
    args.cpu = not torch.cuda.is_available()  # as main.py --cpu (set before model_management loads)
    if "comfyui_imgedit" not in sys.modules:  # the checkout as the package ComfyUI would load
        spec = importlib.util.spec_from_file_location("comfyui_imgedit", ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        sys.modules["comfyui_imgedit"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["comfyui_imgedit"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's own choice)")
    args = ap.parse_args(argv)
    _import_comfyui_and_pack()
    import torch
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    from comfyui_imgedit.nodes.runtime import memory as comfy_memory
    from comfyui_imgedit.nodes.runtime.hooks import comfy_hooks
    from comfyui_imgedit.nodes.core.edit import run_edit
    from comfyui_imgedit.nodes.core.providers import local_diffusers as ld
    from comfyui_imgedit.nodes.core.request import Hooks
    from comfyui_imgedit.nodes.local_nodes import memory_hooks
    from tiny_models import build_tiny_models

    tmp = tempfile.TemporaryDirectory(prefix="imgedit-bench-")
    folder = str(build_tiny_models(Path(tmp.name), sdxl=False)["sd"])
    settings = dict(scheduler="EulerDiscreteScheduler", dtype="fp32", device="cpu")
    tracked_provider = ld.LocalDiffusersProvider(folder, memory=memory_hooks(), **settings)
    plain_provider = ld.LocalDiffusersProvider(folder, **settings)
    image = torch.rand(1, args.size, args.size, 3, generator=torch.Generator().manual_seed(0))
    frames = []

    def previewing_hooks():
        hooks = comfy_hooks(None)
        offer = hooks.preview
        return Hooks(progress=hooks.progress, cancelled=hooks.cancelled,
                     preview=lambda latents, family: (frames.append(1), offer(latents, family)))

    def timed(provider, make_hooks) -> float:
        def job():
            t = time.perf_counter()
            run_edit(provider, image, prompt="a red cat", strength=1.0, steps=args.steps, guidance=7.5,
                     seed=1234, samples=1, hooks=make_hooks())
            return time.perf_counter() - t

        with cf.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(job).result()

    variants = {"tracked": (tracked_provider, Hooks), "plain": (plain_provider, Hooks)}
    for provider, hooks in variants.values():  # loads the model, lists its ticket with ComfyUI
        timed(provider, hooks)
    times: dict = {name: [] for name in variants}
    for r in range(args.rounds):
        for name in (("tracked", "plain") if r % 2 == 0 else ("plain", "tracked")):
            times[name].append(timed(*variants[name]))
    entry = ld.get_entry(tracked_provider.spec, torch.float32, torch.device("cpu"))
    t = time.perf_counter()
    for _ in range(200):
        comfy_memory.claim(entry.handle, 0, 0)
    claim_ms = (time.perf_counter() - t) / 200 * 1000
    timed(tracked_provider, previewing_hooks)
    hooks = comfy_hooks(None)
    latents = torch.randn(1, 4, args.size // 8, args.size // 8)
    hooks.preview(latents, "sd")
    t = time.perf_counter()
    for step in range(500):
        hooks.preview(latents, "sd")
        hooks.progress(step, 500, "")
    preview_ms = (time.perf_counter() - t) / 500 * 1000

    med = {name: statistics.median(values) for name, values in times.items()}
    ratio = med["tracked"] / med["plain"]
    per_round = statistics.median(a / b for a, b in zip(times["tracked"], times["plain"]))
    step_ms = med["tracked"] / args.steps * 1000
    print(f"tiny SD, CPU, {args.size}x{args.size}, {args.steps} steps, {args.rounds} rounds, "
          f"torch threads {torch.get_num_threads()}")
    print("medians: " + ", ".join(f"{name} {value * 1000:.1f} ms" for name, value in med.items()))
    print(f"ratio tracked/plain: median of per-round ratios {per_round:.3f} (goal <= 1.03); of medians {ratio:.3f}")
    print(f"one claim (load_models_gpu of a listed ticket) {claim_ms:.3f} ms")
    print(f"one step's preview {preview_ms:.3f} ms = {preview_ms / step_ms:.1%} of a tiny-model step "
          f"({step_ms:.2f} ms); a previewing run made {len(frames)} previews for {args.steps} steps")
    return 0 if per_round <= 1.03 and len(frames) == args.steps else 1


if __name__ == "__main__":
    sys.exit(main())
