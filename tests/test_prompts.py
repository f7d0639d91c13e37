"""One prompt per picture (prompts.py through run_edit): each request carries its own prompt against the
sandbox, the journal tells them apart, a wrong count is refused, one prompt still serves all; regions
cropped separately get their prompts in reading order; the local runner gets them too."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_imgedit.nodes.core import masks as M
from comfyui_imgedit.nodes.core.edit import run_edit
from comfyui_imgedit.nodes.core.errors import InputError
from comfyui_imgedit.nodes.core.journal import Journal
from comfyui_imgedit.nodes.core.prompts import prompts_per_picture, split_prompts
from comfyui_imgedit.nodes.core.providers.dezgo import DezgoClient
from comfyui_imgedit.nodes.core.providers.modelslab import ModelsLabClient
from remote_support import fast_http, picture, sandbox  # noqa: F401


def batch(n: int, h: int = 24, w: int = 32) -> torch.Tensor:
    return torch.stack([picture(h, w, seed=i) for i in range(n)])


def sent_picture(record, field: str = "init_image") -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(record.files[field])).convert("RGB"))


def which_picture(record, pictures: torch.Tensor) -> int:
    """The index of the picture a Dezgo request sent (by its pixels)."""
    sent = sent_picture(record).astype(np.float32) / 255.0
    errors = [float(np.abs(sent - p.numpy()).max()) for p in pictures]
    assert min(errors) < 1 / 255
    return int(np.argmin(errors))


def test_separator_lines_split_and_nothing_else_does():
    assert split_prompts("a cat\n---\na dog") == ["a cat", "a dog"]
    assert split_prompts("a cat\r\n  ---  \r\na dog\n---\n\nbird\n") == ["a cat", "a dog", "bird"]
    assert split_prompts("a---b\n----\nc") == ["a---b\n----\nc"]
    assert split_prompts("") == [""]
    assert prompts_per_picture("  one prompt  ", 3) == ["  one prompt  "] * 3
    assert prompts_per_picture("x\n---\ny", 2) == ["x", "y"]


def test_each_request_carries_only_its_own_prompt(sandbox):
    images = batch(3)
    out = run_edit(DezgoClient(http=fast_http("dezgo"), max_concurrency=3), images, prompt="a red barn\n---\na blue lake\n---\na green hill",
                   negative_prompt="blurry\n---\ndark\n---\nnoisy", seed=3, samples=2)
    assert out.images.shape[0] == 6
    wanted = [("a red barn", "blurry"), ("a blue lake", "dark"), ("a green hill", "noisy")]
    requests = sandbox.requests_to("dezgo.image2image")
    assert len(requests) == 6
    for record in requests:
        item = which_picture(record, images)
        assert (record.form["prompt"], record.form["negative_prompt"]) == wanted[item]
        assert "---" not in record.text()
    assert out.info["prompts"] == [{"picture": i, "prompt": p, "negative_prompt": n} for i, (p, n) in enumerate(wanted)]


def test_json_providers_get_their_own_prompt_too(sandbox):
    sandbox.job_delay = 0.0
    images = batch(2)
    run_edit(ModelsLabClient(http=fast_http("modelslab")), images, prompt="first\n---\nsecond", seed=9)
    prompts = sorted(record.json["prompt"] for record in sandbox.requests_to("modelslab.img2img"))
    assert prompts == ["first", "second"]


def test_a_wrong_count_is_refused_before_anything_is_sent(sandbox):
    with pytest.raises(InputError, match=r"^prompt holds 2 prompts \(separated by --- lines\) for 3 pictures; give one prompt for all "
                                         r"pictures, or exactly 3, one per picture\.$"):
        run_edit(DezgoClient(http=fast_http("dezgo")), batch(3), prompt="a\n---\nb", seed=1)
    with pytest.raises(InputError, match=r"^negative_prompt holds 3 prompts .* for 1 picture; "):
        run_edit(DezgoClient(http=fast_http("dezgo")), batch(1), prompt="a", negative_prompt="x\n---\ny\n---\nz", seed=1)
    assert sandbox.count("dezgo.image2image") == 0


def test_one_prompt_still_serves_every_picture(sandbox):
    out = run_edit(DezgoClient(http=fast_http("dezgo")), batch(3), prompt=" a red barn ", negative_prompt="blurry", seed=3)
    requests = sandbox.requests_to("dezgo.image2image")
    assert [r.form["prompt"] for r in requests] == [" a red barn "] * 3
    assert [r.form["negative_prompt"] for r in requests] == ["blurry"] * 3
    assert "prompts" not in out.info


def test_the_journal_digest_covers_each_request_s_own_prompt(sandbox, tmp_path):
    """Two equal pictures with two prompts are two paid calls; run again, both come from the journal."""
    journal = Journal(tmp_path / "journal")
    same = batch(1).expand(2, -1, -1, -1)
    client = DezgoClient(http=fast_http("dezgo"))
    first = run_edit(client, same, prompt="a red barn\n---\na blue lake", seed=5, journal=journal)
    assert sandbox.count("dezgo.image2image") == 2
    again = run_edit(client, same, prompt="a red barn\n---\na blue lake", seed=5, journal=journal)
    assert sandbox.count("dezgo.image2image") == 2
    assert torch.equal(first.images, again.images) and len(again.info["journal"]) == 2
    run_edit(client, same, prompt="a red barn\n---\na green hill", seed=5, journal=journal)
    assert sandbox.count("dezgo.image2image") == 3  # only picture 1's prompt changed: only its call is made


def test_separate_regions_get_their_prompts_in_reading_order(sandbox):
    """Two regions of one picture, cropped separately: region 0 (higher up) gets prompt 0."""
    image = picture(96, 128, seed=4)[None]
    mask = torch.zeros(1, 96, 128)
    mask[0, 60:80, 10:30] = 1.0   # lower left: second in reading order
    mask[0, 10:30, 90:110] = 1.0  # upper right: first
    crops, crop_masks, record = M.crop_to_mask(image, mask, context=0.5, max_edge=1024, multiple_of=8, regions="separately")
    assert crops.shape[0] == 2 and record.boxes[0][1] < record.boxes[1][1]
    out = run_edit(DezgoClient(http=fast_http("dezgo")), crops, mask=crop_masks, prompt="a bird\n---\na boat", seed=2)
    for request in sandbox.requests_to("dezgo.inpainting"):
        assert request.form["prompt"] == ["a bird", "a boat"][which_picture(request, crops)]
    assert [p["prompt"] for p in out.info["prompts"]] == ["a bird", "a boat"]
    stitched = M.stitch(record, out.images, feather=0)
    assert stitched.shape == image.shape
