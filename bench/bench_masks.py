"""Speed, flat cost and memory of the mask operations (a benchmark, not a test).

Run from the repository root:  python bench/bench_masks.py  [--quick]

* Grow 64 px on a 2048x2048 mask against ComfyUI's GrowMask algorithm (scipy ``grey_dilation``
  with a 3x3 footprint repeated 64 times), checking that diamond and square give identical masks.
* Flat cost: grow 256 px vs 8 px, feather 128 vs 4, on the same mask.
* Peak extra memory of each operation: the process's peak resident memory (``VmHWM``, reset through
  ``/proc/self/clear_refs``) minus its resident memory before the call, over the mask's size, with
  glibc told to give every large block its own mmap (so nothing freed is silently reused). This
  counts every allocation (numpy, torch, the result itself) that was actually touched.
* Crop + stitch of a 4096x4096 picture around a 512x512 region: times, and how many full-picture
  passes that is (against the time of one copy of the picture).
* scipy.ndimage equivalents of our own kernels (square grow, round grow of a binary mask, the
  feather's blur), run alternately with ours: the reason each of ours is kept.
* Fill of a 512x512 hole in a 2048x2048 picture (neutral, surround), against one picture copy.
* Crop (target_edge, regions=separately) + stitch with colour match, and the colour-match drift
  figure on the sample picture.

All ratios are measured in this one process, with a fixed seed, as the median of a few repeats;
each pair that makes a ratio is run alternately (a, b, a, b, ...), so a change of load on a shared
machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import scipy.ndimage as ndi
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
try:
    from comfyui_imgedit.nodes.core import masks as M
    from comfyui_imgedit.nodes.core.mask_feather import _box_widths
except ImportError:  # running from a checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from nodes.core import masks as M  # type: ignore
    from nodes.core.mask_feather import _box_widths  # type: ignore


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alternating(fn_a, fn_b, repeats: int) -> tuple[float, float]:
    """Medians of ``fn_a`` and ``fn_b`` run in turns (a, b, a, b, ...): load changes hit both alike."""
    fn_a(), fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(median_time(fn_a, 1))
        times_b.append(median_time(fn_b, 1))
    return statistics.median(times_a), statistics.median(times_b)


def comfy_growmask(mask: np.ndarray, expand: int, tapered_corners: bool) -> np.ndarray:
    """ComfyUI's GrowMask (comfy_extras/nodes_mask.py): a 3x3 grey dilation repeated |expand| times."""
    c = 0 if tapered_corners else 1
    kernel = np.array([[c, 1, c], [1, 1, 1], [c, 1, c]])
    output = mask
    for _ in range(abs(expand)):
        output = ndi.grey_erosion(output, footprint=kernel) if expand < 0 else ndi.grey_dilation(output, footprint=kernel)
    return output


def test_mask(size: int, seed: int = 0) -> np.ndarray:
    """A binary mask with a disk, a bar and scattered specks (fixed seed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    m = ((yy - 0.45 * size) ** 2 + (xx - 0.55 * size) ** 2 < (0.2 * size) ** 2).astype(np.float32)
    m[int(0.15 * size) : int(0.25 * size), int(0.1 * size) : int(0.9 * size)] = 1.0
    m[rng.random((size, size)) < 2e-5] = 1.0
    return m


def release_freed_memory_to_the_os() -> None:
    """Make every large allocation its own mmap (glibc), so freeing it lowers the resident size.

    Without this, freed blocks stay resident in the heap and a later allocation reuses them
    without raising the peak, which would under-count. Linux/glibc only; a no-op elsewhere.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: 64 KiB
        libc.mallopt(-1, 0)  # M_TRIM_THRESHOLD
    except OSError:
        pass


def peak_extra_memory(fn) -> float:
    """Bytes of peak resident memory above the level before ``fn()`` (Linux /proc)."""
    def status():
        fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the peak (VmHWM) to the current RSS
    before, _ = status()
    result = fn()
    _, peak = status()
    del result
    return float(peak - before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for a smoke run)")
    parser.add_argument("--new", action="store_true", help="only the scipy, fill and target/regions/colour sections")
    parser.add_argument("--memory", action="store_true", help="only the memory section (the full run starts it in a child)")
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    torch.manual_seed(0)
    if args.memory:  # before the first allocation, so nothing freed stays resident and reusable
        release_freed_memory_to_the_os()
    print(f"torch {torch.__version__}, numpy {np.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}")

    size = 2048
    mask_np = test_mask(size)
    mask = torch.from_numpy(mask_np).unsqueeze(0)
    for shape in M.GROW_SHAPES:  # warm-up (first calls load code paths)
        M.grow_mask(mask[:, :64, :64], 3, shape)
    soft_np = M.gaussian_blur(mask_np, 4.0)
    if args.memory:
        memory_section(mask, torch.from_numpy(soft_np).unsqueeze(0))
        return
    if args.new:
        scipy_section(mask_np, soft_np, repeats)
        fill_section(repeats)
        target_regions_section(repeats)
        return

    print(f"\n== Grow 64 px, {size}x{size} mask, against ComfyUI GrowMask (scipy 3x3 x 64) ==")
    for shape, tapered in (("diamond", True), ("square", False)):
        baseline_out = comfy_growmask(mask_np, 64, tapered)
        baseline, ours = alternating(lambda: comfy_growmask(mask_np, 64, tapered), lambda: M.grow_mask(mask, 64, shape),
                                     max(3, repeats // 2))
        same = np.array_equal(M.grow_mask(mask, 64, shape)[0].numpy(), baseline_out)
        shrink_same = np.array_equal(M.grow_mask(mask, -64, shape)[0].numpy(), comfy_growmask(mask_np, -64, tapered))
        print(f"{shape:8s} GrowMask {baseline * 1000:8.0f} ms   ours {ours * 1000:6.1f} ms   "
              f"speed-up {baseline / ours:5.1f}x   identical grow {same}, shrink {shrink_same}")
    ours = median_time(lambda: M.grow_mask(mask, 64, "round"), repeats)
    print(f"round    (exact Euclidean disk, binary mask)         ours {ours * 1000:6.1f} ms")
    soft = torch.from_numpy(soft_np).unsqueeze(0)
    for shape, tapered in (("diamond", True), ("square", False)):
        baseline, ours = alternating(lambda: comfy_growmask(soft_np, 64, tapered), lambda: M.grow_mask(soft, 64, shape), 2)
        same = np.array_equal(M.grow_mask(soft, 64, shape)[0].numpy(), comfy_growmask(soft_np, 64, tapered))
        print(f"{shape:8s} soft mask: GrowMask {baseline * 1000:5.0f} ms   ours {ours * 1000:6.1f} ms   "
              f"speed-up {baseline / ours:5.1f}x   identical {same}")

    print(f"\n== Flat cost in the radius, {size}x{size} ==")
    for shape in M.GROW_SHAPES:
        small, large = alternating(lambda: M.grow_mask(mask, 8, shape), lambda: M.grow_mask(mask, 256, shape), repeats)
        print(f"grow {shape:8s} 8 px {small * 1000:6.1f} ms   256 px {large * 1000:6.1f} ms   ratio {large / small:4.2f}")
    small, large = alternating(lambda: M.grow_mask(soft, 8, "round"), lambda: M.grow_mask(soft, 256, "round"), max(1, repeats // 2))
    print(f"grow round, soft mask ({M.ROUND_SOFT_LEVELS} levels) 8 px {small * 1000:6.0f} ms   256 px {large * 1000:6.0f} ms   ratio {large / small:4.2f}")
    for mode in M.FEATHER_MODES:
        small, large = alternating(lambda: M.feather_mask(mask, 4, mode), lambda: M.feather_mask(mask, 128, mode), repeats)
        print(f"feather {mode:8s} 4 px {small * 1000:6.1f} ms   128 px {large * 1000:6.1f} ms   ratio {large / small:4.2f}")

    print("\n== Crop + stitch, 4096x4096 picture, 512x512 masked region ==")
    picture, region = picture_with_holes(4096, (1800, 1700, 512))
    one_copy = median_time(lambda: picture.clone(), repeats)
    one_read = median_time(lambda: torch.aminmax(picture), repeats)
    crop_time = median_time(lambda: M.crop_to_mask(picture, region, 0.5, 1024, 8), repeats)
    crops, _, record = M.crop_to_mask(picture, region, 0.5, 1024, 8)
    stitch_time = median_time(lambda: M.stitch(record, crops, 16), repeats)
    out = M.stitch(record, crops, 16)
    print(f"crop {crop_time * 1000:.0f} ms (crop {tuple(crops.shape[1:3])}), stitch {stitch_time * 1000:.0f} ms (feather 16), "
          f"one picture copy {one_copy * 1000:.0f} ms, one read {one_read * 1000:.0f} ms")
    print("full-picture passes by design: crop 1 read (value check) + 1 read of the mask (its box); "
          "stitch 1 copy (the output); everything else touches only the 768x768 box")
    print(f"measured: (crop + stitch) = {(crop_time + stitch_time) / one_copy:.2f} picture copies; "
          f"stitched == original: {torch.equal(out, picture)}")
    del picture, region, crops, record, out
    scipy_section(mask_np, soft_np, repeats)
    fill_section(repeats)
    target_regions_section(repeats)
    memory_in_a_fresh_process()


def scipy_box_blur(m: np.ndarray, sigma: float) -> np.ndarray:
    """Our feather's blur (three box blurs of Kovesi's widths per axis, inside-the-picture averages) with scipy."""
    out = m.astype(np.float32, copy=True)
    widths = _box_widths(sigma)
    for axis in (0, 1):
        n = out.shape[axis]
        for width in widths:
            r = min(width // 2, n - 1)
            if r <= 0:
                continue
            ndi.uniform_filter1d(out, 2 * r + 1, axis=axis, mode="constant", output=out)
            idx = np.arange(n)
            count = (np.minimum(idx + r, n - 1) - np.maximum(idx - r, 0) + 1).astype(np.float32)
            out *= ((2 * r + 1) / count).reshape((-1, 1) if axis == 0 else (1, -1))
    return out


def scipy_section(mask_np: np.ndarray, soft_np: np.ndarray, repeats: int) -> None:
    print("\n== scipy.ndimage equivalents, 2048x2048, run alternately with ours (ours / scipy > 1: ours slower) ==")
    print("(grow_mask uses scipy for square on soft masks, ours for square on binary masks (bytes), round, diamond, feather)")
    binary_bytes = mask_np.astype(np.uint8)
    for name, data in (("binary", binary_bytes), ("soft", soft_np)):
        for radius in (8, 64, 256):
            ours, theirs = alternating(lambda: M._square(data, radius, True), lambda: M._square_scipy(data, radius, True), repeats)
            same = np.array_equal(M._square(data, radius, True), M._square_scipy(data, radius, True))
            print(f"square {radius:3d} px {name:6s}  ours {ours * 1000:6.1f} ms   maximum_filter1d x2 {theirs * 1000:6.1f} ms   "
                  f"ours/scipy {ours / theirs:4.2f}   identical {same}")
    for shape, metric, kernel in (("diamond", "taxicab", M._diamond), ("square", "chessboard", M._square)):
        cdt = lambda metric=metric: ndi.distance_transform_cdt(binary_bytes == 0, metric=metric) <= 64  # noqa: E731
        ours, theirs = alternating(lambda kernel=kernel: kernel(binary_bytes, 64, True), cdt, repeats)
        same = np.array_equal(kernel(binary_bytes, 64, True).astype(bool), cdt())
        print(f"{shape} 64 px binary  ours {ours * 1000:6.1f} ms   distance_transform_cdt ({metric}) {theirs * 1000:6.1f} ms   "
              f"ours/scipy {ours / theirs:4.2f}   identical {same}")
    mask = torch.from_numpy(mask_np)[None]
    edt = lambda: (ndi.distance_transform_edt(mask_np < 0.5) <= 64).astype(np.float32)  # noqa: E731
    ours, theirs = alternating(lambda: M.grow_mask(mask, 64, "round"), edt, max(1, repeats // 2))
    same = np.array_equal(M.grow_mask(mask, 64, "round")[0].numpy(), edt())
    print(f"round 64 px  binary  ours {ours * 1000:6.1f} ms   distance_transform_edt {theirs * 1000:6.1f} ms   "
          f"ours/scipy {ours / theirs:4.2f}   identical {same}")
    sigma = 128 / 2.5
    ours, theirs = alternating(lambda: M.gaussian_blur(mask_np, sigma), lambda: scipy_box_blur(mask_np, sigma), repeats)
    a, b = M.gaussian_blur(mask_np, sigma), scipy_box_blur(mask_np, sigma)
    far = M.gaussian_blur(mask_np, sigma) == 0
    print(f"feather 128 px blur  ours {ours * 1000:6.1f} ms   uniform_filter1d x6 {theirs * 1000:6.1f} ms   "
          f"ours/scipy {ours / theirs:4.2f}   max diff {float(np.abs(a - b).max()):.1e}, "
          f"exactly 0 where ours is: {bool(np.all(b[far] == 0))}")
    gauss = median_time(lambda: ndi.gaussian_filter(mask_np, sigma, mode="nearest"), 1)
    print(f"feather 128 px blur  scipy gaussian_filter (a true Gaussian, cost grows with the radius) {gauss * 1000:6.0f} ms")
    print("diamond on soft masks: scipy's only flat L1-ball filter is grey_dilation with a (2r+1)^2 footprint, "
          "O(r^2) per pixel: the GrowMask baseline above is the fair comparison")


def memory_in_a_fresh_process() -> None:
    """The memory section runs in a child process: the glibc setting that makes the measurement
    honest makes every large allocation a fresh mmap (page faults on first touch), which would
    slow every timing, and memory freed by the timings would hide peaks."""
    import subprocess

    sys.stdout.flush()
    subprocess.run([sys.executable, os.path.abspath(__file__), "--memory"], check=True)


def memory_section(mask: torch.Tensor, soft: torch.Tensor) -> None:
    print("\n== Peak extra memory (peak RSS above the level before the call, incl. the result) / mask size ==")
    mask_bytes = mask.numel() * 4
    cases = [(f"grow {shape} {r}", (lambda s=shape, r=r: M.grow_mask(mask, r, s))) for shape in M.GROW_SHAPES for r in (8, 256)]
    cases += [(f"grow {shape} soft {r}", (lambda s=shape, r=r: M.grow_mask(soft, r, s)))
              for shape in ("diamond", "square") for r in (256, 1500)]
    cases += [("grow round soft 64", lambda: M.grow_mask(soft, 64, "round"))]
    cases += [(f"feather {mode} 128", (lambda m=mode: M.feather_mask(mask, 128, m))) for mode in M.FEATHER_MODES]
    for name, fn in cases:
        print(f"{name:22s} {peak_extra_memory(fn) / mask_bytes:4.2f}x")


def picture_with_holes(size: int, *holes: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``size``-square picture and a mask of square holes ``(top, left, side)``."""
    picture = torch.rand(1, size, size, 3)
    mask = torch.zeros(1, size, size)
    for top, left, side in holes:
        mask[0, top : top + side, left : left + side] = 1.0
    return picture, mask


def fill_section(repeats: int) -> None:
    print("\n== Fill a 512x512 hole in a 2048x2048 picture (ImgEditFillMasked) ==")
    picture, hole = picture_with_holes(2048, (700, 800, 512))
    copy = lambda: picture.clone()  # noqa: E731
    for mode in M.FILL_MODES:
        ours, one_copy = alternating(lambda: M.fill_masked(picture, hole, mode), copy, repeats)
        out = M.fill_masked(picture, hole, mode)
        print(f"{mode:8s} {ours * 1000:6.1f} ms   one picture copy {one_copy * 1000:5.1f} ms   ratio {ours / one_copy:4.2f}   "
              f"outside identical {torch.equal(out[hole == 0], picture[hole == 0])}")
    big, big_hole = picture_with_holes(4096, (1400, 1600, 1024))
    small, large = alternating(lambda: M.fill_masked(picture, hole, "surround"), lambda: M.fill_masked(big, big_hole, "surround"),
                               max(2, repeats // 2))
    print(f"surround, 4x the pixels (4096x4096, 1024x1024 hole): {large * 1000:6.1f} ms, "
          f"{large / small:4.2f}x the 2048x2048 case run alternately (linear cost: 4)")


def target_regions_section(repeats: int) -> None:
    print("\n== Crop (target_edge 1024, regions=separately) + stitch (color_match lab), 4096x4096, two 256x256 regions ==")
    picture, mask = picture_with_holes(4096, (300, 300, 256), (3400, 3300, 256))
    crop = lambda: M.crop_to_mask(picture, mask, 0.5, 1024, 8, 1024, "separately")  # noqa: E731
    crop_time = median_time(crop, repeats)
    crops, _, record = crop()
    stitch_time = median_time(lambda: M.stitch(record, crops, 16, "lab"), repeats)
    one_copy = median_time(lambda: picture.clone(), repeats)
    print(f"crop {crop_time * 1000:.0f} ms ({len(record.boxes)} crops {record.crop_size} from boxes {record.box_size}), "
          f"stitch {stitch_time * 1000:.0f} ms, one picture copy {one_copy * 1000:.0f} ms")
    print("\n== Colour match: an edit drifted by 0.85x + 0.12, error left inside the mask (sample picture) ==")
    from PIL import Image

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sample = torch.from_numpy(np.asarray(Image.open(os.path.join(root, "assets", "sample.png")).convert("RGB"), np.float32) / 255)[None]
    painted = np.asarray(Image.open(os.path.join(root, "assets", "sample_mask.png")).convert("L"), np.float32) / 255
    region = torch.from_numpy((painted > 0.5).astype(np.float32))[None]
    crops, _, record = M.crop_to_mask(sample, region, 0.75, 1024, 8)
    drifted = (0.85 * crops + 0.12).clamp(0, 1)
    inside = region[0] > 0.5
    base = float((M.stitch(record, drifted, 8, "none") - sample)[0][inside].abs().mean())
    for mode in M.COLOR_MATCH_MODES[1:]:
        left = float((M.stitch(record, drifted, 8, mode) - sample)[0][inside].abs().mean())
        print(f"{mode:6s} mean error {left:.4f} (none: {base:.4f})   left {left / base:.3f} of the drift   goal <= 0.333")


if __name__ == "__main__":
    main()
