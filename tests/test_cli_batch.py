"""The command line on a folder or a manifest, against the sandbox: every good picture at its own size and
name, broken ones reported while the rest go on, exit codes, a re-run sends nothing, Ctrl-C or a kill
while jobs poll leaves journal records that the re-run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from comfyui_imgedit.cli import batch as cli_batch
from comfyui_imgedit.cli import main
from comfyui_imgedit.cli.batch import name_seed
from comfyui_imgedit.nodes.core import images as img
from remote_support import sandbox  # noqa: F401 - the sandbox fixture

REPO = Path(__file__).resolve().parents[1]
SIZES = {"wide.png": (300, 200), "tall.jpg": (180, 420), "big.png": (1500, 1000), "square.webp": (256, 256)}


def folder_of_pictures(folder: Path, broken: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, size) in enumerate(SIZES.items()):
        Image.new("RGB", size, (40 * i, 120, 200)).save(folder / name)
    if broken:
        (folder / "broken.png").write_bytes(b"not a picture at all")
    (folder / "notes.txt").write_text("not a picture file: ignored")
    return folder


def report_of(out: Path) -> dict[str, dict]:
    lines = [json.loads(text) for text in (out / "report.jsonl").read_text().splitlines()]
    return {Path(line["input"]).name: line for line in lines}


def run(capsys, *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1]) if captured.out.strip() else {}
    return code, summary, captured.err


def test_mixed_folder_with_a_broken_file_then_the_same_command_sends_nothing(sandbox, tmp_path, capsys):
    pictures = folder_of_pictures(tmp_path / "in")
    out = tmp_path / "out"
    argv = ["img2img", "--provider", "dezgo", "--image", str(pictures), "--prompt", "a lake", "-o", str(out)]
    code, summary, err = run(capsys, *argv)
    assert code == 1
    assert (summary["done"], summary["failed"]) == (4, 1) and summary["cost_usd"] > 0
    assert "5/5" in err and "failed 1" in err and "left" in err  # the progress bar on stderr
    report = report_of(out)
    assert set(report) == {*SIZES, "broken.png"}
    assert report["broken.png"]["status"] == "failed" and "broken.png" in report["broken.png"]["error"]
    assert "not a picture" in report["broken.png"]["error"]
    for name, size in SIZES.items():
        line = report[name]
        assert line["status"] == "done" and line["outputs"] == [str(out / name)]
        assert line["seeds"] == [name_seed(name)] and line["cost_usd"] > 0
        with Image.open(out / name) as result:
            assert result.size == size and result.format == Image.open(pictures / name).format
    assert sandbox.count("dezgo.image2image") == 4

    code, summary, _ = run(capsys, *argv)
    assert code == 1 and (summary["skipped"], summary["failed"]) == (4, 1) and summary["cost_usd"] == 0
    assert sandbox.count("dezgo.image2image") == 4  # no request for a done picture
    assert set(report_of(out)) == {*SIZES, "broken.png"}

    (pictures / "broken.png").unlink()
    (out / "wide.png").unlink()  # an output that went missing is made again: from the journal, not paid
    code, summary, _ = run(capsys, *argv)
    assert code == 0 and (summary["done"], summary["skipped"]) == (1, 3) and summary["cost_usd"] == 0
    assert sandbox.count("dezgo.image2image") == 4
    assert "taken from the journal" in report_of(out)["wide.png"]["journal"][0]


def test_seed_for_all_and_a_changed_prompt_is_a_new_request(sandbox, tmp_path, capsys):
    pictures = folder_of_pictures(tmp_path / "in", broken=False)
    out = tmp_path / "out"
    base = ["img2img", "--provider", "modelslab", "--image", str(pictures), "-o", str(out), "--seed", "77"]
    assert run(capsys, *base, "--prompt", "a lake")[0] == 0
    assert {tuple(line["seeds"]) for line in report_of(out).values()} == {(77,)}
    code, summary, _ = run(capsys, *base, "--prompt", "a forest")
    assert code == 0 and summary["done"] == 4 and summary["skipped"] == 0
    assert sandbox.count("modelslab.img2img") == 8


def test_inpaint_folder_with_a_mask_folder_or_one_mask_for_all(sandbox, tmp_path, capsys):
    pictures = folder_of_pictures(tmp_path / "in", broken=False)
    masks = tmp_path / "masks"
    masks.mkdir()
    for name, (w, h) in SIZES.items():
        mask = Image.new("L", (w, h), 0)
        mask.paste(255, (w // 4, h // 2, w // 2, h))
        mask.save(masks / (Path(name).stem + ".png"))  # same stem: a PNG mask for a JPEG photo is found
    code, summary, _ = run(capsys, "inpaint", "--provider", "sdapi", "--image", str(pictures), "--mask", str(masks),
                           "--prompt", "a boat", "-o", str(tmp_path / "out1"))
    assert code == 0 and summary["done"] == 4
    for name in SIZES:
        original = img.pil_to_tensor(Image.open(pictures / name))
        edited = img.pil_to_tensor(Image.open(tmp_path / "out1" / name))
        assert edited.shape == original.shape
        if not name.endswith(".jpg"):  # lossless: outside the mask (the top rows) the original is kept
            assert torch.equal(edited[:5], original[:5])
    # one mask for all: resized to pictures of its shape; another shape is that picture's error
    code, summary, _ = run(capsys, "inpaint", "--provider", "sdapi", "--image", str(pictures), "--mask",
                           str(masks / "wide.png"), "--prompt", "a boat", "-o", str(tmp_path / "out2"))
    report = report_of(tmp_path / "out2")
    assert code == 1 and {n for n, line in report.items() if line["status"] == "done"} == {"wide.png", "big.png"}
    assert "different shape" in report["tall.jpg"]["error"] and "different shape" in report["square.webp"]["error"]
    (masks / "tall.png").unlink()
    code, _, _ = run(capsys, "inpaint", "--provider", "sdapi", "--image", str(pictures), "--mask", str(masks),
                     "--prompt", "a boat", "-o", str(tmp_path / "out3"))
    report = report_of(tmp_path / "out3")
    assert code == 1 and report["tall.jpg"]["status"] == "failed" and "does not exist" in report["tall.jpg"]["error"]


def test_manifest_gives_each_picture_its_prompt_seed_and_mask(sandbox, tmp_path, capsys):
    pictures = folder_of_pictures(tmp_path / "in", broken=False)
    for name in ("wide.png", "tall.jpg", "square.webp"):
        Image.new("L", SIZES[name], 255).save(tmp_path / f"m_{Path(name).stem}.png")
    lines = [{"image": "in/wide.png", "prompt": "a red boat", "seed": 5, "mask": "m_wide.png"},
             {"image": "in/tall.jpg", "prompt": "a blue boat", "negative_prompt": "fog", "mask": "m_tall.png"},
             {"image": "in/square.webp"},  # no prompt, no mask: --prompt and --mask are used
             "not json", {"image": "in/wide.png", "prompt": "same output name again"}]
    manifest = tmp_path / "pictures.jsonl"
    manifest.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n\n")
    code, summary, _ = run(capsys, "inpaint", "--provider", "modelslab", "--manifest", str(manifest),
                           "--mask", str(tmp_path / "m_square.png"), "--prompt", "a green boat", "-o", str(tmp_path / "out"))
    assert code == 1 and (summary["done"], summary["failed"]) == (3, 2)
    sent = {r.json["prompt"]: r.json for r in sandbox.requests_to("modelslab.inpaint")}
    assert set(sent) == {"a red boat", "a blue boat", "a green boat"}
    assert int(sent["a red boat"]["seed"]) == 5 and int(sent["a blue boat"]["seed"]) == name_seed("tall.jpg")
    assert sent["a blue boat"]["negative_prompt"] == "fog"
    failed = [line["error"] for line in report_of(tmp_path / "out").values() if line["status"] == "failed"]
    assert len(failed) == 1  # the two failed lines: the broken one and the duplicate (same input name)
    errors = [json.loads(t)["error"] for t in (tmp_path / "out" / "report.jsonl").read_text().splitlines()]
    assert any("line 4 is not a JSON object" in e for e in errors)
    assert any("already writes 'wide.png'" in e for e in errors)
    assert pictures.exists()


@pytest.mark.parametrize("argv,said", [
    (["img2img", "--image", "{empty}"], "holds no picture files"),
    (["img2img", "--image", "{pictures}", "-o", "{pictures}"], "the input folder"),
    (["inpaint", "--image", "{pictures}"], "--mask is required"),
    (["inpaint", "--image", "{pictures}", "--mask", "{tmp}/nowhere"], "does not exist"),
    (["img2img", "--manifest", "{tmp}/none.jsonl"], "cannot be read"),
])
def test_bad_arguments_exit_2_with_one_sentence(sandbox, tmp_path, capsys, argv, said):
    pictures = folder_of_pictures(tmp_path / "in", broken=False)
    (tmp_path / "empty").mkdir()
    values = {"empty": tmp_path / "empty", "pictures": pictures, "tmp": tmp_path}
    argv = [a.format(**values) for a in argv]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "out")]
    code = main([*argv[:1], "--provider", "dezgo", "--prompt", "x", *argv[1:]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and said in err
    assert sandbox.count("dezgo") == 0


def test_a_missing_key_stops_the_folder_with_exit_2(tmp_path, capsys):
    pictures = folder_of_pictures(tmp_path / "in", broken=False)
    code, summary, err = run(capsys, "img2img", "--provider", "dezgo", "--image", str(pictures), "--prompt", "x",
                             "-o", str(tmp_path / "out"), "--concurrency", "1")
    assert code == 2 and "DEZGO_API_KEY" in err.splitlines()[-1]
    report = report_of(tmp_path / "out")
    assert summary["done"] == 0 and sum(line["status"] == "not started" for line in report.values()) == 3


def test_pictures_are_streamed_never_more_in_memory_than_run_at_once(sandbox, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(12):
        Image.new("RGB", (64 + 8 * i, 64), (i * 20, 0, 0)).save(folder / f"{i:02d}.png")
    held, most, lock = [0], [0], threading.Lock()
    load, write = cli_batch.load_picture, cli_batch.write_outputs

    def loading(*a):
        with lock:
            held[0] += 1
            most[0] = max(most[0], held[0])
        return load(*a)

    def writing(*a):
        try:
            return write(*a)
        finally:
            with lock:
                held[0] -= 1

    monkeypatch.setattr(cli_batch, "load_picture", loading)
    monkeypatch.setattr(cli_batch, "write_outputs", writing)
    sandbox.sync_delay = 0.05
    code, summary, _ = run(capsys, "img2img", "--provider", "dezgo", "--image", str(folder), "--prompt", "x",
                           "-o", str(tmp_path / "out"), "--concurrency", "3")
    assert code == 0 and summary["done"] == 12
    assert 2 <= most[0] <= 3  # concurrent, and bounded by --concurrency


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_stopped_while_jobs_poll_then_run_again_resumes_them(sandbox, tmp_path, capsys, how):
    pictures = folder_of_pictures(tmp_path / "in", broken=False)
    out = tmp_path / "out"
    argv = ["img2img", "--provider", "modelslab", "--image", str(pictures), "--prompt", "a lake", "-o", str(out)]
    sandbox.processing_forever = True
    journal = Path(os.environ["IMGEDIT_JOURNAL_DIR"])
    child = subprocess.Popen([sys.executable, "-m", "comfyui_imgedit", *argv], env={**os.environ, "PYTHONPATH": str(REPO / ".pypath")},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while sum(1 for r in _records(journal) if r.get("job_id")) < len(SIZES):
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
            time.sleep(0.05)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
        code = child.wait(timeout=10)
        stopped = time.monotonic() - sent
    finally:
        child.kill()
    assert sandbox.count("modelslab.img2img") == len(SIZES)
    if how == "ctrl-c":
        assert code == 130 and stopped < 1.0, stopped
        assert {line["status"] for line in report_of(out).values()} == {"cancelled"}
    assert [r["state"] for r in _records(journal)] == ["submitted"] * len(SIZES)
    sandbox.processing_forever = False
    sandbox.finish_jobs()
    code, summary, _ = run(capsys, *argv)
    assert code == 0 and summary["done"] == len(SIZES)
    assert sandbox.count("modelslab.img2img") == len(SIZES)  # none submitted again
    assert all("resumed job" in line["journal"][0] for line in report_of(out).values())


def _records(journal: Path) -> list[dict]:
    found = []
    for path in journal.glob("*/record.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return found
