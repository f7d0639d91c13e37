"""Remote-provider bench, offline against the loopback sandbox (no key, no network, no credits).

    python bench/bench_remote.py [--latency 1.0] [--job 3.0]

Prints, in one run:

1. 8 pictures with a provider latency L through ``run_edit`` with concurrency 8: wall time / L
   (goal <= 1.3), against a sequential loop of ``edit`` calls (~8). Dezgo (synchronous) and
   ModelsLab (queued jobs, eta-driven polling).
2. How many polls a queued job of known duration takes: with the provider's eta (ModelsLab) and
   without one (ImagePipeline).
3. Dezgo upload bytes / PNG bytes for the multipart body (goal <= 1.02), against base64 JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1].parent))

from comfyui_imgedit.nodes.core import images as img  # noqa: E402
from comfyui_imgedit.nodes.core.edit import run_edit  # noqa: E402
from comfyui_imgedit.nodes.core.providers import DezgoClient, ImagePipelineClient, ModelsLabClient  # noqa: E402
from comfyui_imgedit.nodes.core.request import EditRequest, Hooks  # noqa: E402
from comfyui_imgedit.sandbox import SandboxServer  # noqa: E402

KEY = "bench-key-not-real"


def photo_like(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth gradient with mild noise: compresses like a photo, not like flat colour or pure noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, h)[:, None, None]
    x = torch.linspace(0, 1, w)[None, :, None]
    base = torch.cat([x.expand(h, w, 1), y.expand(h, w, 1), ((x + y) / 2).expand(h, w, 1)], dim=2)
    return (base * 0.8 + torch.rand(h, w, 3, generator=g) * 0.2).clamp(0, 1)


def concurrency(sb: SandboxServer, make, latency: float, label: str) -> dict:
    # 256 px: inside every service's size window (ModelsLab's smallest edge is 256), so no service
    # rescales and the figure is the pack's overhead, not picture size
    images = torch.stack([photo_like(256, 256, seed=i) for i in range(8)])
    started = time.monotonic()
    out = run_edit(make(max_concurrency=8), images, prompt="bench", seed=1)
    concurrent = time.monotonic() - started
    assert out.images.shape[0] == 8
    client = make(max_concurrency=1)
    started = time.monotonic()
    for i in range(8):
        client.edit(EditRequest(prompt="bench", image=images[i], seed=1), Hooks())
    sequential = time.monotonic() - started
    return {"provider": label, "latency_s": latency, "concurrent_wall_over_L": round(concurrent / latency, 2),
            "sequential_wall_over_L": round(sequential / latency, 2)}


def polls(sb: SandboxServer, make, endpoint: str, duration: float, label: str) -> dict:
    before = sb.count(endpoint)
    started = time.monotonic()
    make().edit(EditRequest(prompt="bench", image=photo_like(256, 256), seed=1), Hooks())
    wall = time.monotonic() - started
    return {"provider": label, "job_s": duration, "polls": sb.count(endpoint) - before,
            "wall_s": round(wall, 2), "overshoot_s": round(wall - duration, 2)}


def upload_ratio(sb: SandboxServer) -> dict:
    picture = photo_like(512, 512)
    png = img.encode_png(picture)
    before = len(sb.requests_to("dezgo.image2image"))
    DezgoClient().edit(EditRequest(prompt="bench", image=picture, seed=1), Hooks())
    sent = sb.requests_to("dezgo.image2image")[before]
    as_json = json.dumps({"prompt": "bench", "seed": "1", "init_image": base64.b64encode(png).decode()})
    return {"png_bytes": len(png), "multipart_bytes": len(sent.body),
            "multipart_over_png": round(len(sent.body) / len(png), 4),
            "base64_json_over_png": round(len(as_json) / len(png), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.0, help="provider latency L in seconds (default 1)")
    parser.add_argument("--job", type=float, default=3.0, help="duration of the queued job for the poll count")
    args = parser.parse_args()

    with SandboxServer(key=KEY) as sb:
        os.environ.update(sb.environ())
        print("# ImgEdit remote bench (loopback sandbox)")

        sb.sync_delay = args.latency
        dz = concurrency(sb, lambda **kw: DezgoClient(**kw), args.latency, "dezgo")
        sb.sync_delay = 0.0
        sb.job_delay = args.latency
        ml = concurrency(sb, lambda **kw: ModelsLabClient(image_transport="base64", **kw), args.latency, "modelslab")
        for row in (dz, ml):
            print(f"8 images, L={row['latency_s']:.2f} s, {row['provider']:9s}: run_edit x8 concurrent "
                  f"wall/L = {row['concurrent_wall_over_L']:.2f} (goal <= 1.3); sequential loop wall/L = "
                  f"{row['sequential_wall_over_L']:.2f}")

        sb.job_delay = args.job
        p1 = polls(sb, lambda: ModelsLabClient(image_transport="base64"), "modelslab.fetch", args.job,
                   "modelslab (eta given)")
        p2 = polls(sb, lambda: ImagePipelineClient(), "imagepipeline.status", args.job,
                   "imagepipeline (no eta)")
        for row in (p1, p2):
            print(f"job of {row['job_s']:.1f} s, {row['provider']}: {row['polls']} poll(s), done after "
                  f"{row['wall_s']:.2f} s (+{row['overshoot_s']:.2f} s)")

        up = upload_ratio(sb)
        print(f"Dezgo upload of a 512x512 picture: multipart {up['multipart_bytes']} B / PNG {up['png_bytes']} B = "
              f"{up['multipart_over_png']:.4f} (goal <= 1.02); base64 JSON would be {up['base64_json_over_png']:.4f}")
        print(json.dumps({"concurrency": [dz, ml], "polls": [p1, p2], "upload": up}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
