"""The command line on many pictures: ``--image DIR`` (every picture file in it) or ``--manifest FILE``
(JSON lines), results in ``-o DIR`` under each input's own file name and size.

Pictures run concurrently up to the provider's limit and are streamed: a worker reads its picture when
it starts it and writes the result when done, so memory holds only the pictures in flight, whatever the
folder's size. ``report.jsonl`` in the output folder gets one line per picture (input, outputs,
status, seeds, job ids, cost, error sentence); a broken picture or a failed call is reported and the
rest go on. A re-run skips pictures whose report line says done for the same request and whose
outputs exist; the others go through the journal of paid calls, so queued jobs left by a Ctrl-C or a
crash are resumed and nothing is paid twice. Exit codes: 0 all done, 1 some failed, 2 bad arguments
(or the key refused), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from .batch_io import (REPORT, BatchProgress, OldReport, ReportWriter, Picture, count_lines, is_picture_file,
                           load_mask, load_picture, write_outputs)
from ..nodes.core.errors import AuthError, CreditsError, ImgEditError, InputError
from ..nodes.core.request import SEED_MAX, Cancelled, Hooks

#: after Ctrl-C, how long in-flight pictures get to stop and report (their journal records stay)
STOP_GRACE_S = 0.8


def name_seed(name: str) -> int:
    """A picture's seed when ``--seed`` is not given: stable across runs and machines (from its file name)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % (SEED_MAX + 1)


def plan(args: argparse.Namespace) -> tuple[int, Iterator[Picture]]:
    """(how many pictures, an iterator over them); InputError for arguments that cannot work (exit 2)."""
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {args.output!r} is a file; with a folder of pictures or a manifest give an output folder.")
    if args.manifest:
        return _manifest_plan(args)
    folder = Path(args.image)
    if out.resolve() == folder.resolve():
        raise InputError("-o is the input folder; give another folder so the originals are not overwritten.")
    if args.command == "inpaint" and not args.mask:
        raise InputError("--mask is required for inpaint: a folder of masks named like the pictures, or one mask file for all.")
    if args.mask and not Path(args.mask).exists():
        raise InputError(f"--mask {args.mask!r} does not exist; give a folder of masks or one mask file.")
    try:
        names = sorted(entry.name for entry in os.scandir(folder) if entry.is_file() and is_picture_file(entry.name))
    except OSError as error:
        raise InputError(f"--image {args.image!r} cannot be listed ({type(error).__name__}).") from None
    if not names:
        raise InputError(f"--image {args.image!r} holds no picture files (.png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff).")
    if args.prompt is None:
        raise InputError("--prompt is required (a manifest may give one per picture instead).")

    def pictures() -> Iterator[Picture]:
        for index, name in enumerate(names):
            yield Picture(index=index, image=folder / name, name=name, mask=_mask_for(args.mask, name),
                          prompt=args.prompt, negative_prompt=args.negative_prompt,
                          seed=args.seed if args.seed is not None else name_seed(name))

    return len(names), pictures()


def _mask_for(mask: Optional[str], name: str) -> Optional[Path]:
    """One mask file for all, or the mask folder's file of the same name (or the same stem, any picture type)."""
    if not mask:
        return None
    path = Path(mask)
    if not path.is_dir():
        return path
    same = path / name
    if same.exists():
        return same
    stem = Path(name).stem
    for other in sorted(path.glob(f"{stem}.*")):
        if is_picture_file(other.name):
            return other
    return same  # missing: the picture's report line says so


def _manifest_plan(args: argparse.Namespace) -> tuple[int, Iterator[Picture]]:
    manifest = Path(args.manifest)
    try:
        total = count_lines(manifest)
    except OSError as error:
        raise InputError(f"--manifest {args.manifest!r} cannot be read ({type(error).__name__}).") from None
    if not total:
        raise InputError(f"--manifest {args.manifest!r} has no lines; write one JSON object per picture: "
                         '{"image": "a.png", "mask": "a_mask.png", "prompt": "…", "negative_prompt": "…", "seed": 1}.')

    def pictures() -> Iterator[Picture]:
        base, names = manifest.parent, set()
        with manifest.open(encoding="utf-8") as lines:
            index = 0
            for number, text in enumerate(lines, start=1):
                if not text.strip():
                    continue
                picture = _manifest_line(args, base, number, text)
                if not picture.error and picture.name in names:
                    picture.error = f"line {number}: another line already writes {picture.name!r} in the output folder."
                names.add(picture.name)
                picture.index = index
                index += 1
                yield picture

    return total, pictures()


def _manifest_line(args: argparse.Namespace, base: Path, number: int, text: str) -> Picture:
    broken = Picture(index=0, image=base / f"line-{number}", name=f"line-{number}", mask=None, prompt="",
                     negative_prompt="", seed=0)
    try:
        line = json.loads(text)
        if not isinstance(line, dict) or not isinstance(line.get("image"), str):
            raise ValueError
    except ValueError:
        broken.error = f"manifest line {number} is not a JSON object with an \"image\" path."
        return broken
    image = base / line["image"]
    broken.image, broken.name = image, image.name
    prompt = line.get("prompt", args.prompt)
    if not isinstance(prompt, str):
        broken.error = f"manifest line {number} has no \"prompt\" and --prompt is not given."
        return broken
    seed = line.get("seed", args.seed)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= SEED_MAX):
        broken.error = f"manifest line {number}: \"seed\" is {seed!r}; use a whole number from 0 to {SEED_MAX}."
        return broken
    mask = line.get("mask") or args.mask
    if args.command == "inpaint" and not mask:
        broken.error = f"manifest line {number} has no \"mask\" and --mask is not given (inpaint needs one)."
        return broken
    return Picture(index=0, image=image, name=image.name, mask=None if not mask else base / mask, prompt=prompt,
                   negative_prompt=str(line.get("negative_prompt", args.negative_prompt) or ""),
                   seed=seed if seed is not None else name_seed(image.name))


# --------------------------------------------------------------------------------------------
# Running


@dataclass
class Batch:
    args: argparse.Namespace
    provider: Any
    journal: Any
    out: Path
    stop: threading.Event

    def request_key(self, picture: Picture) -> str:
        """What makes a picture's result: every setting, its prompt and seed, its files' sizes and times."""
        a = self.args
        files = []
        for path in (picture.image, picture.mask):
            try:
                stat = path.stat() if path else None
                files.append([str(path), stat.st_size, stat.st_mtime_ns] if stat else None)
            except OSError:
                files.append([str(path), None, None])
        head = {"command": a.command, "provider": a.provider, "model": a.model, "model_id": a.model_id,
                "scheduler": a.scheduler, "extra": a.extra, "strength": a.strength, "steps": a.steps,
                "guidance": a.guidance, "samples": a.samples, "keep_unmasked": not a.no_keep_unmasked,
                "prompt": picture.prompt, "negative_prompt": picture.negative_prompt, "seed": picture.seed,
                "files": files}
        return hashlib.sha256(json.dumps(head, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:32]

    def run_one(self, picture: Picture, key: str) -> dict[str, Any]:
        from ..nodes.core.edit import run_edit

        line: dict[str, Any] = {"input": str(picture.image), "mask": None if picture.mask is None else str(picture.mask),
                                "outputs": [], "status": "failed", "seeds": [], "job_ids": [], "cost_usd": None,
                                "error": picture.error, "request": key}
        if picture.error:
            return line
        started = time.monotonic()
        try:
            image = load_picture(picture.image, "--image")
            mask = None if picture.mask is None else load_mask(picture.mask, "--mask")
            outcome = run_edit(
                self.provider, image, mask=mask, prompt=picture.prompt, negative_prompt=picture.negative_prompt,
                strength=self.args.strength, steps=self.args.steps, guidance=self.args.guidance, seed=picture.seed,
                samples=self.args.samples, keep_unmasked=not self.args.no_keep_unmasked,
                hooks=Hooks(cancelled=self.stop.is_set), journal=self.journal)
            outputs = write_outputs(outcome.images, self.out, picture.name)
        except Cancelled:
            line.update(status="cancelled", error="stopped by Ctrl-C; run the same command again to resume it "
                                                  "(queued jobs are resumed, nothing is paid twice).")
            return line
        except ImgEditError as error:
            line["error"] = str(error)
            if isinstance(error, (AuthError, CreditsError)):  # every other picture would fail the same way
                line["fatal"] = "auth" if isinstance(error, AuthError) else "credits"
            return line
        except Exception as error:  # noqa: BLE001 - one picture's surprise must not stop the others
            line.update(error=f"unexpected {type(error).__name__}: {error}")
            return line
        info = outcome.info
        line.update(status="done", outputs=[str(p) for p in outputs], seeds=info.get("seeds", []),
                    job_ids=info.get("job_ids", []), cost_usd=info.get("metadata", {}).get("cost_usd"),
                    warnings=info.get("warnings", []), seconds=round(time.monotonic() - started, 3))
        if info.get("journal"):
            line["journal"] = info["journal"]
        return line


def run_batch(args: argparse.Namespace, make_provider) -> int:
    """Run the folder or manifest; prints a one-line JSON summary on stdout; returns the exit code."""
    total, pictures = plan(args)
    from ..nodes.core.journal import open_journal

    provider = make_provider(args.provider, args)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    batch = Batch(args, provider, None if args.no_journal else open_journal(), out, threading.Event())
    calls_per_picture = -(-int(args.samples) // max(1, int(getattr(provider, "max_samples_per_call", 1))))
    workers = max(1, int(provider.max_concurrency) // calls_per_picture)
    old = OldReport.read(out / REPORT)
    report = ReportWriter(out / REPORT, old)
    progress = BatchProgress(total, sys.stderr)
    todo: queue.Queue = queue.Queue()
    finished: queue.Queue = queue.Queue()

    def work() -> None:
        while True:
            picture, key = todo.get()
            finished.put((picture.index, batch.run_one(picture, key)))

    for _ in range(workers):
        threading.Thread(target=work, name="imgedit-batch", daemon=True).start()

    flying: dict[int, tuple[str, str]] = {}  # index -> (input, request key) of the pictures being worked on
    interrupted = False
    try:
        for picture in pictures:
            key = batch.request_key(picture)
            earlier = old.done_line(str(picture.image), key)
            if earlier is not None:
                report.add({**earlier, "cost_usd": 0.0, "skipped": "done in an earlier run; not sent again"})
                progress.add("skipped")
                continue
            while len(flying) >= workers:
                _collect(finished, flying, report, progress)
            if report.fatal:
                report.add({"input": str(picture.image), "status": "not started", "outputs": [], "request": key,
                            "error": f"not started: an earlier picture failed: {report.fatal}"})
                progress.add("failed")
                continue
            flying[picture.index] = (str(picture.image), key)
            todo.put((picture, key))
        while flying:
            _collect(finished, flying, report, progress)
    except KeyboardInterrupt:
        interrupted = True
        batch.stop.set()
        deadline = time.monotonic() + STOP_GRACE_S
        while flying and time.monotonic() < deadline:
            _collect(finished, flying, report, progress, timeout=0.05)
        for image, key in flying.values():  # still stopping (a request in flight): its record stays
            report.add({"input": image, "status": "cancelled", "outputs": [], "request": key,
                        "error": "stopped by Ctrl-C; run the same command again to resume it."})
    finally:
        progress.close()
        report.close()
    summary = {**progress.counts, "report": str(out / REPORT), "cost_usd": report.cost_usd}
    print(json.dumps(summary), flush=True)
    if interrupted:
        print("cancelled: run the same command again to resume (queued jobs are resumed, nothing is paid twice)",
              file=sys.stderr, flush=True)
        return 130
    if report.fatal_auth:  # a missing or refused key: an argument to fix, not a picture that failed
        print(f"error: {report.fatal}", file=sys.stderr)
        return 2
    return 1 if progress.counts["failed"] else 0


def _collect(finished: queue.Queue, flying: dict[int, tuple[str, str]], report: ReportWriter, progress: BatchProgress,
             timeout: float = 0.1) -> None:
    """Report one finished picture, if one finishes within ``timeout``."""
    try:
        index, line = finished.get(timeout=timeout)
    except queue.Empty:
        progress.refresh()
        return
    flying.pop(index, None)
    report.add(line)
    progress.add("done" if line["status"] == "done" else "failed")


__all__ = ["run_batch", "plan", "name_seed"]
