"""Bench: the pack's local path vs a raw diffusers pipeline call, on the tiny random-weight SD model.

    python bench/bench_local.py [--rounds 40] [--steps 20] [--size 64] [--threads 1] [--models DIR]

In one process, on the CPU, warm, same seed and settings:

- **node path**: ``run_edit`` (the orchestrator the ImgEdit nodes call) with a
  ``LocalDiffusersProvider`` -- size fitting, per-sample generators, progress/cancel callback,
  output conversion -- (falls back to ``provider.edit`` if ``nodes.core.edit`` is absent);
- **raw**: the same loaded diffusers pipeline object (``provider.pipeline()``, an
  ``AutoPipelineForImage2Image`` from ``from_pretrained``) called directly with a tensor image, a
  generator and ``output_type="pt"`` -- the same weights in the same memory, so only the pack's
  own work differs (``--separate-raw`` loads a second copy with ``from_pretrained`` instead, which
  adds the noise of a different memory layout). It runs on a fresh
  worker thread per call, as ``run_edit`` runs the provider: a process's main thread and its other
  threads get different OpenMP teams, and on a loaded CPU their times differ by several times,
  which would make the comparison meaningless.

Each round times one node run and one raw run, alternating which goes first; the ratio is
median(node) / median(raw) over the rounds, goal <= 1.03 (the median of the per-round ratios and
the ratio of the fastest runs are printed too). Torch runs
single-threaded by default (``--threads 0``: torch's own choice): the bench measures the pack's
overhead over diffusers, and one thread keeps compute times steady on a shared CPU. The load
ratio is the second ``provider.pipeline()`` (a cache hit) over the first (from disk), goal <= 1%.
The script also prints the node path's own overhead: its time outside the diffusers call, measured
inside the same runs (robust to noise from other processes). Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

warnings.filterwarnings("ignore")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--scheduler", default="EulerDiscreteScheduler")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: stable times on a shared CPU; 0 = torch's own choice)")
    ap.add_argument("--separate-raw", action="store_true", help="raw calls a separately loaded pipeline")
    ap.add_argument("--models", help="a folder already built by tests/tiny_models.py (default: build one in a temp dir)")
    args = ap.parse_args(argv)

    import diffusers  # imported before timing: the load figures are model loads, not imports
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    from comfyui_imgedit.nodes.core.providers import local_diffusers as ld
    from comfyui_imgedit.nodes.core.request import EditRequest, Hooks

    try:
        from comfyui_imgedit.nodes.core.edit import run_edit
    except ImportError:  # pragma: no cover - before the orchestrator exists
        run_edit = None

    tmp = None
    if args.models:
        folder = Path(args.models) / "diffusers" / "tiny-sd"
    else:
        from tiny_models import build_tiny_models

        tmp = tempfile.TemporaryDirectory(prefix="imgedit-bench-")
        folder = build_tiny_models(Path(tmp.name), sdxl=False)["sd"]

    # -- load: first (disk) vs second (cache) --------------------------------------------------
    ld.clear_cache()
    provider = ld.LocalDiffusersProvider(str(folder), scheduler=args.scheduler, dtype="fp32", device="cpu")
    t0 = time.perf_counter()
    provider.pipeline("img2img")
    first_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    provider.pipeline("img2img")
    second_load = time.perf_counter() - t0

    # -- the two paths ---------------------------------------------------------------------------
    size = args.size
    image = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0))
    prompt, seed, guidance = "a red cat on a blue sofa", 1234, 7.5

    def node():
        if run_edit is not None:
            return run_edit(provider, image, prompt=prompt, strength=args.strength, steps=args.steps,
                            guidance=guidance, seed=seed, samples=1, hooks=Hooks()).images
        return provider.edit(EditRequest(prompt, image[0], strength=args.strength, steps=args.steps,
                                         guidance=guidance, seed=seed), Hooks()).images

    if args.separate_raw:
        raw_pipe = diffusers.AutoPipelineForImage2Image.from_pretrained(
            str(folder), local_files_only=True, safety_checker=None, requires_safety_checker=False)
        raw_pipe.scheduler = getattr(diffusers, args.scheduler).from_config(raw_pipe.scheduler.config)
        raw_pipe.set_progress_bar_config(disable=True)
    else:
        node()  # sets the provider's scheduler on its pipeline
        raw_pipe = provider.pipeline("img2img")
        assert type(raw_pipe.scheduler).__name__ == args.scheduler
    raw_image = image.permute(0, 3, 1, 2).contiguous()

    def raw_call():
        return raw_pipe(prompt=prompt, image=raw_image, strength=args.strength, num_inference_steps=args.steps,
                        guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(seed),
                        output_type="pt").images

    def raw():
        pool = cf.ThreadPoolExecutor(max_workers=1)
        try:
            return pool.submit(raw_call).result()
        finally:
            pool.shutdown(wait=False)

    # time the provider's diffusers call inside node runs, to report the node path's own overhead
    node_pipe = provider.pipeline("img2img")
    pipe_cls = type(node_pipe)
    original_call = pipe_cls.__call__
    inner: list = []

    def timed_call(self, *a, **k):
        if self is not node_pipe or "callback_on_step_end" not in k:  # only the node path's calls
            return original_call(self, *a, **k)
        t = time.perf_counter()
        try:
            return original_call(self, *a, **k)
        finally:
            inner.append(time.perf_counter() - t)

    pipe_cls.__call__ = timed_call

    for _ in range(3):  # warm both
        node()
        raw()
    inner.clear()
    node_t, raw_t = [], []
    for r in range(args.rounds):
        order = [(node, node_t), (raw, raw_t)] if r % 2 == 0 else [(raw, raw_t), (node, node_t)]
        for fn, times in order:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)

    overhead = [n - i for n, i in zip(node_t, inner)]
    a = node()
    b = raw()
    pipe_cls.__call__ = original_call
    same = torch.allclose(torch.as_tensor(a)[0].float(), b[0].permute(1, 2, 0).float(), atol=1e-5)
    ratio = statistics.median(node_t) / statistics.median(raw_t)
    paired = statistics.median(n / r for n, r in zip(node_t, raw_t))
    fastest = min(node_t) / min(raw_t)
    load_ratio = second_load / first_load
    print(f"device cpu, torch threads {torch.get_num_threads()}, tiny SD {size}x{size}, {args.steps} steps, "
          f"strength {args.strength}, {args.scheduler}, rounds {args.rounds}")
    def spread(times):
        q = statistics.quantiles(times, n=4)
        return (f"median {statistics.median(times) * 1000:.1f} ms (min {min(times) * 1000:.1f}, "
                f"quartiles {q[0] * 1000:.1f}-{q[2] * 1000:.1f})")

    print(f"node path ({'run_edit' if run_edit else 'provider.edit'}): {spread(node_t)}")
    print(f"raw diffusers:        {spread(raw_t)}")
    print(f"ratio node/raw (medians of {args.rounds} rounds): {ratio:.3f}  (goal <= 1.03)  same pixels: {same}")
    print(f"  median of per-round ratios {paired:.3f}, fastest/fastest {fastest:.3f}")
    print(f"node path overhead outside the diffusers call: median {statistics.median(overhead) * 1000:.2f} ms "
          f"= {statistics.median(overhead) / statistics.median(raw_t) * 100:.2f}% of a raw run")
    print(f"load: first {first_load * 1000:.1f} ms, second {second_load * 1000:.3f} ms, "
          f"ratio {load_ratio * 100:.3f}%  (goal <= 1%)")
    if tmp is not None:
        tmp.cleanup()
    return 0 if ratio <= 1.03 and load_ratio <= 0.01 and same else 1


if __name__ == "__main__":
    raise SystemExit(main())
