"""The headless command line: the README's demo and a real img2img/inpaint through the sandbox."""

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from comfyui_imgedit.cli import main
from comfyui_imgedit.nodes.core import images as img
from comfyui_imgedit.sandbox import SandboxServer

KEY = "test-key-not-real-cli"


def test_demo_writes_a_stitched_result_of_the_sample_size(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "stitch" in printed and "127.0.0.1" in printed
    with Image.open(tmp_path / "demo_result.png") as result, Image.open(tmp_path / "demo_mask.png") as mask:
        assert result.size == mask.size == (768, 512)
    with Image.open(tmp_path / "demo_crop.png") as crop:
        assert max(crop.size) == 512  # the small region is sent near the model's native size


def test_img2img_and_inpaint_through_the_sandbox(tmp_path, capsys, monkeypatch):
    picture = tmp_path / "in.png"
    Image.new("RGB", (100, 60), (40, 120, 200)).save(picture)
    mask = tmp_path / "mask.png"
    painted = Image.new("L", (100, 60), 0)
    painted.paste(255, (20, 10, 60, 40))
    painted.save(mask)
    with SandboxServer(key=KEY) as sandbox, sandbox.patch_env():
        code = main(["img2img", "--provider", "dezgo", "--image", str(picture), "--prompt", "a lake",
                     "--seed", "5", "-o", str(tmp_path / "out.png")])
        assert code == 0
        report = json.loads(capsys.readouterr().out)
        assert report["provider"] == "dezgo" and report["seeds"] == [5]
        code = main(["inpaint", "--provider", "modelslab", "--image", str(picture), "--mask", str(mask),
                     "--prompt", "a boat", "--seed", "9", "--samples", "2", "-o", str(tmp_path / "boat.png")])
        assert code == 0
        report = json.loads(capsys.readouterr().out)
    assert KEY not in json.dumps(report)
    assert len(report["written"]) == 2
    original = img.pil_to_tensor(Image.open(picture))
    for path in report["written"]:
        edited = img.pil_to_tensor(Image.open(path))
        assert edited.shape == original.shape
        # keep_unmasked: outside the mask the picture is the original's
        assert torch.equal(edited[:5], original[:5])


def test_same_command_twice_is_paid_once_and_the_journal_is_in_the_user_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("IMGEDIT_JOURNAL_DIR")  # the default folder: $XDG_CACHE_HOME/comfyui-imgedit/journal
    monkeypatch.setattr(sys, "platform", "linux")
    picture = tmp_path / "in.png"
    Image.new("RGB", (64, 48), (40, 120, 200)).save(picture)
    argv = ["img2img", "--provider", "dezgo", "--image", str(picture), "--prompt", "a lake", "--seed", "5",
            "-o", str(tmp_path / "out.png")]
    with SandboxServer(key=KEY) as sandbox, sandbox.patch_env():
        reports = []
        for extra in ([], [], ["--no-journal"]):
            assert main(argv + extra) == 0
            reports.append(json.loads(capsys.readouterr().out))
        assert sandbox.count("dezgo.image2image") == 2
    assert "journal" not in reports[0] and "taken from the journal" in reports[1]["journal"][0]
    folder = tmp_path / "cache" / "comfyui-imgedit" / "journal"
    assert len(list(folder.glob("*/record.json"))) == 1 and len(list(folder.glob("*/0.png"))) == 1


def test_missing_key_is_one_sentence_and_exit_code_2(tmp_path, capsys):
    picture = tmp_path / "in.png"
    Image.new("RGB", (32, 32)).save(picture)
    code = main(["img2img", "--provider", "dezgo", "--image", str(picture), "--prompt", "x", "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "DEZGO_API_KEY" in err and "\n" not in err


def test_unreadable_image_names_the_flag(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture")
    assert main(["img2img", "--provider", "dezgo", "--image", str(bad), "--prompt", "x", "-o", str(tmp_path / "o.png")]) == 2
    assert "--image" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["inpaint", "--help"]])
def test_module_entry_point_answers_help(argv):
    out = subprocess.run([sys.executable, "-m", "comfyui_imgedit", *argv], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0 and "usage" in out.stdout
