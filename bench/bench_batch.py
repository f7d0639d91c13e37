"""The command line's folder mode, offline against the loopback sandbox (no key, no network, no credits).

    python bench/bench_batch.py [--latency 1.0] [--pictures 64] [--repeat 2]

64 pictures of mixed sizes through ``python -m comfyui_imgedit img2img --image DIR -o DIR`` (its
``main`` in this process, so the interpreter's start is not counted; journal on, a fresh journal and
output folder per run) at service latency L. The sandbox runs in its own process, as a service would:
its decoding, rendering and encoding are not the command's CPU time. The baseline is what the
service's concurrency allows: 64 * L / concurrency; the figure is wall / that (goal <= 1.2).
Alternated with it, like with like: the same 64 pictures, already decoded in memory, sent by the bare
client (``provider.edit`` on a thread pool of the same size: no files, no journal, no report), so
command / bare is what the folder command itself adds on this machine.
Dezgo (synchronous, concurrency 8) and ModelsLab (queued jobs polled by eta, concurrency 15), runs
alternated. ModelsLab's floor is ceil(64 / 15) * 15 / 64 = 1.17: its fifth wave is partly empty.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1].parent))

from bench_remote import photo_like  # noqa: E402

from comfyui_imgedit.cli import main as cli_main  # noqa: E402
from comfyui_imgedit.nodes.core import images as img  # noqa: E402
from comfyui_imgedit.nodes.core.services import SERVICES  # noqa: E402
from comfyui_imgedit.sandbox.simulator import KEY_ENV, URL_ENV  # noqa: E402

KEY = "bench-key-not-real"
SIZES = [(256, 256), (384, 256), (256, 320), (512, 384)]


def make_folder(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        w, h = SIZES[i % len(SIZES)]
        img.tensor_to_pil(photo_like(h, w, seed=i)).save(folder / f"photo_{i:03d}.png")


@contextlib.contextmanager
def sandbox_process(latency: float):
    """``python -m comfyui_imgedit.sandbox`` on a free loopback port, its URLs and key in os.environ."""
    child = subprocess.Popen([sys.executable, "-m", "comfyui_imgedit.sandbox", "--port", "0", "--key", KEY,
                              "--job-delay", str(latency), "--sync-delay", str(latency)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        names = set()
        while True:
            line = child.stdout.readline()
            assert line, "the sandbox did not start"
            if line.startswith("export "):
                name, _, value = line[len("export "):].strip().partition("=")
                os.environ[name] = value.strip("'\"")
                names.add(name)
            if names >= {*URL_ENV.values(), *KEY_ENV.values()}:
                break
        yield
    finally:
        child.terminate()
        child.wait(timeout=10)


def bare_run(provider: str, pictures: Path) -> float:
    """The same pictures through ``provider.edit`` on a pool of the service's size, decoded beforehand."""
    import concurrent.futures as cf

    from comfyui_imgedit.cli import build_parser, make_provider
    from comfyui_imgedit.cli.batch import name_seed
    from comfyui_imgedit.nodes.core.request import EditRequest, Hooks

    args = build_parser().parse_args(["img2img", "--provider", provider, "--image", "x", "--prompt", "bench", "-o", "x"])
    client = make_provider(provider, args)
    tensors = [(path.name, img.decode_image(path.read_bytes(), path.name)) for path in sorted(pictures.iterdir())]
    started = time.monotonic()
    with cf.ThreadPoolExecutor(client.max_concurrency) as pool:
        answers = list(pool.map(lambda item: client.edit(EditRequest(prompt="bench", image=item[1], strength=0.5,
                                                                     seed=name_seed(item[0])), Hooks()), tensors))
    assert len(answers) == len(tensors)
    return time.monotonic() - started


def one_run(provider: str, pictures: Path, work: Path, run: int) -> float:
    out = work / f"out-{provider}-{run}"
    os.environ["IMGEDIT_JOURNAL_DIR"] = str(work / f"journal-{provider}-{run}")
    started = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()) as printed, contextlib.redirect_stderr(io.StringIO()):
        code = cli_main(["img2img", "--provider", provider, "--image", str(pictures), "--prompt", "bench",
                         "--strength", "0.5", "-o", str(out)])
    wall = time.monotonic() - started
    summary = json.loads(printed.getvalue().splitlines()[-1])
    assert code == 0 and summary["done"] == len(list(pictures.iterdir())), summary
    lines = [json.loads(text) for text in (out / "report.jsonl").read_text().splitlines()]
    return wall, sum(line["seconds"] for line in lines) / len(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.0, help="service latency L in seconds (default 1)")
    parser.add_argument("--pictures", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    rows = {"dezgo": [], "modelslab": []}
    over_bare = {"dezgo": [], "modelslab": []}
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(args.latency):
        work = Path(tmp)
        make_folder(work / "in", args.pictures)
        print(f"# ImgEdit folder command: {args.pictures} pictures, service latency L = {args.latency:g} s")
        for run in range(args.repeat):
            for provider in rows:  # alternated, like with like
                bare = bare_run(provider, work / "in")
                wall, each = one_run(provider, work / "in", work, run)
                limit = SERVICES[provider].max_concurrency
                ideal = args.pictures * args.latency / limit
                rows[provider].append(round(wall / ideal, 3))
                over_bare[provider].append(round(wall / bare, 3))
                print(f"{provider:9s} run {run}: wall {wall:.2f} s, 64*L/concurrency({limit}) = {ideal:.2f} s, "
                      f"ratio {wall / ideal:.3f} (goal <= 1.2; floor {math.ceil(args.pictures / limit) * limit / args.pictures:.2f}); "
                      f"a picture took {each / args.latency:.2f} L on average; bare client {bare:.2f} s "
                      f"(ratio {bare / ideal:.3f}), command / bare = {wall / bare:.3f}")
    print(json.dumps({"latency_s": args.latency, "pictures": args.pictures, "ratios": rows,
                      "command_over_bare": over_bare}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
