"""Journal-of-paid-calls bench, offline against the loopback sandbox (no key, no network, no credits).

    python bench/bench_journal.py [--latency 0.5] [--size 768] [--rounds 3]

Prints, in one run (alternating runs with and without the journal, same thread, same process):

1. What the journal adds to a new call: wall time of ``run_edit`` (4 pictures of ``size``², Dezgo
   with a provider latency L, 4 at once) with a journal ÷ without one; every run uses new seeds, so
   nothing is replayed (the journal hashes the pictures and writes each result as PNG).
2. A replay (an identical call, taken from disk) ÷ the call it saves.
3. The caps' folder scan for 3000 records ÷ one such call (it runs at most once a minute per folder).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1].parent))

from comfyui_imgedit.nodes.core.edit import run_edit  # noqa: E402
from comfyui_imgedit.nodes.core.journal import Journal, Record, request_digest  # noqa: E402
from comfyui_imgedit.nodes.core.providers import DezgoClient  # noqa: E402
from comfyui_imgedit.sandbox import SandboxServer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_remote import photo_like  # noqa: E402

KEY = "bench-key-not-real"


def timed(provider, images, seed: int, journal) -> float:
    started = time.perf_counter()
    run_edit(provider, images, prompt="bench", seed=seed, journal=journal)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    images = torch.stack([photo_like(args.size, args.size, seed=i) for i in range(4)])
    with tempfile.TemporaryDirectory() as folder, SandboxServer(key=KEY, sync_delay=args.latency) as sb, \
            sb.patch_env():
        journal = Journal(Path(folder) / "journal", caps_every_s=3600)
        provider = DezgoClient(max_concurrency=4)
        timed(provider, images, 0, None)  # warm-up: connections, PNG encoder
        with_journal, without = [], []
        for round_ in range(args.rounds):
            without.append(timed(provider, images, 1000 + round_, None))
            with_journal.append(timed(provider, images, 2000 + round_, journal))
        replays = [timed(provider, images, 2000 + round_, journal) for round_ in range(args.rounds)]
        submissions = sb.count("dezgo.image2image")

        scan = Journal(Path(folder) / "scan")
        for n in range(3000):
            record = Record(digest=request_digest("dezgo", "e", {"n": n}, [b""]), provider="dezgo", endpoint="e")
            scan.save_results(record, [b"x" * 100], seeds=[n])
        started = time.perf_counter()
        scan.enforce_caps()
        scan_s = time.perf_counter() - started

    call = min(without)
    print(f"4 pictures {args.size}x{args.size}, Dezgo latency {args.latency} s, {args.rounds} rounds "
          f"({submissions} submissions: {4 * (1 + 2 * args.rounds)} expected, replays send none)")
    print(f"new call with journal / without: {min(with_journal) / call:.3f} "
          f"(min of {[round(t, 3) for t in with_journal]} / min of {[round(t, 3) for t in without]})")
    print(f"replay / the call it saves: {min(replays) / call:.3f} ({min(replays) * 1000:.0f} ms)")
    print(f"caps scan of 3000 records / one call: {scan_s / call:.3f} ({scan_s * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
