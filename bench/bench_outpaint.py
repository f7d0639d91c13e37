"""Speed of ImgEditExtendCanvas (a benchmark, not a test).

Run from the repository root:  python bench/bench_outpaint.py  [--quick]

* A 2048x2048 picture extended by 512 px on every side (3072x3072) with each fill, against one
  copy of the extended picture (the least any fill can cost: the output has to be written), and
  the surround fill against the baseline it replaces: ``fill_masked(..., "surround")`` (the
  full-size push-pull of ImgEditFillMasked) on the same canvas and mask. Goal: <= 150 ms.
* Linear in the new area: the same picture extended by 128, 256, 512 and 1024 px a side; time per
  million new pixels, and the fit ``time = a + b * new pixels`` (``a``: the work on the picture
  itself, one read for the half-size pyramid plus the copy into place).

Every ratio comes from runs alternated in this one process (a, b, a, b, ...), medians of a few
repeats, fixed seed, so a change of load on a shared machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
try:
    from comfyui_imgedit.nodes.core import masks as M
except ImportError:  # running from a checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from nodes.core import masks as M  # type: ignore


def alternating(fn_a, fn_b, repeats: int) -> tuple[float, float]:
    """Medians of ``fn_a`` and ``fn_b`` run in turns (a, b, a, b, ...): load changes hit both alike."""
    fn_a(), fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def cpu_time(fn, repeats: int) -> float:
    """Median CPU time of ``fn`` (this process, summed over its threads): far above the wall time, the
    work ran on both cores; near it while the machine is loaded, the load is memory-bus contention."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    repeats = 3 if parser.parse_args().quick else 7
    torch.manual_seed(0)
    side, pad = 2048, 512
    picture = torch.rand(1, side, side, 3)
    canvas_side = side + 2 * pad
    print(f"== Extend a {side}x{side} picture by {pad} px on every side ({canvas_side}x{canvas_side}) ==")
    extended = torch.rand(1, canvas_side, canvas_side, 3)
    one_copy = lambda: extended.clone()  # noqa: E731
    for fill in M.EXTEND_FILL_MODES:
        ours, copy = alternating(lambda: M.extend_canvas(picture, pad, pad, pad, pad, fill, 16), one_copy, repeats)
        print(f"{fill:8s} {ours * 1000:6.1f} ms   one copy of the extended picture {copy * 1000:5.1f} ms   ratio {ours / copy:4.2f}")
    canvas, _ = M.extend_canvas(picture, pad, pad, pad, pad, "surround", 0)
    hole = torch.ones(1, canvas_side, canvas_side)
    hole[:, pad:pad + side, pad:pad + side] = 0
    ours, full = alternating(lambda: M.extend_canvas(picture, pad, pad, pad, pad, "surround", 16),
                             lambda: M.fill_masked(canvas, hole, "surround"), repeats)
    print(f"surround {ours * 1000:6.1f} ms   full-size push-pull (fill_masked on the canvas) {full * 1000:6.1f} ms   "
          f"{full / ours:4.2f}x faster")
    busy = cpu_time(lambda: M.extend_canvas(picture, pad, pad, pad, pad, "surround", 16), repeats)
    print(f"surround wall {ours * 1000:6.1f} ms: goal <= 150 ms {'met' if ours <= 0.150 else 'NOT met'}   "
          f"(CPU time {busy * 1000:6.1f} ms, all threads; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")

    print("\n== Linear in the new area (surround, the same picture, every side extended alike) ==")
    rows = []
    reference = lambda: M.extend_canvas(picture, pad, pad, pad, pad, "surround", 16)  # noqa: E731
    for width in (128, 256, 512, 1024):
        new_pixels = (side + 2 * width) ** 2 - side ** 2
        taken, at_512 = alternating(lambda: M.extend_canvas(picture, width, width, width, width, "surround", 16), reference,
                                    max(2, repeats // 2))
        rows.append((new_pixels, taken, at_512))
        print(f"{width:5d} px a side: {new_pixels / 1e6:5.2f} M new pixels  {taken * 1000:7.1f} ms  "
              f"({taken / at_512:4.2f}x the 512 px case run alternately)")
    # Least-squares line through (new pixels, time normalised to the 512 px case's median).
    scale = statistics.median(r[2] for r in rows)
    xs = [r[0] / 1e6 for r in rows]
    ys = [r[1] / r[2] * scale * 1000 for r in rows]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    intercept = mean_y - slope * mean_x
    worst = max(abs(y - (intercept + slope * x)) / y for x, y in zip(xs, ys))
    print(f"fit: {intercept:5.1f} ms + {slope:5.1f} ms per million new pixels; worst point off the line by {worst * 100:4.1f}%")


if __name__ == "__main__":
    main()
