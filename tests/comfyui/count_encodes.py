"""Count the CLIP text encodes of ImgEditComfyModel's provider in ComfyUI's own python.

    COMFYUI_DIR=/path/to/ComfyUI /path/to/comfy-venv/bin/python count_encodes.py CHECKPOINT PACK_PARENT

``PACK_PARENT`` is a folder holding ``comfyui_imgedit`` (a link to the pack). The tiny checkpoint is
loaded with ComfyUI's loader; its CLIP's ``tokenize`` is wrapped to record each text it encodes
(CLIPTextEncode tokenizes once per encode), and ``comfy.sample.sample`` to record a digest of the
positive conditioning each sampling call gets. Four run_edit runs on a batch of 2 pictures x 3 samples
follow: prompt A, prompt B, prompt A again, then prompt A on a new provider with a clone of the CLIP.
Prints one JSON line: per run, the texts it encoded and the conditioning digest of each sampling call.
(The tiny UNet's zero-initialised attention output makes its pictures blind to the prompt, so the
conditioning that reaches the sampler is what shows which prompt a run used.)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

PROMPT_A, PROMPT_B, NEGATIVE = "a red house by the sea", "a green forest at night", "blurry"


def _recording(clip, texts: list):
    tokenize = clip.tokenize

    def recorded(text, *args, **kwargs):
        texts.append(text)
        return tokenize(text, *args, **kwargs)

    clip.tokenize = recorded
    return clip


def main(checkpoint: str, pack_parent: str) -> int:
    sys.path[:0] = [os.environ["COMFYUI_DIR"], pack_parent]
    from comfy.cli_args import args

    args.cpu = True  # read before comfy.model_management is first imported
    import comfy.sample
    import comfy.sd
    import torch

    sample = comfy.sample.sample

    def recorded_sample(model, noise, steps, cfg, sampler_name, scheduler, positive, *args, **kwargs):
        conditionings.append(hashlib.sha256(positive[0][0].float().cpu().numpy().tobytes()).hexdigest()[:16])
        return sample(model, noise, steps, cfg, sampler_name, scheduler, positive, *args, **kwargs)

    comfy.sample.sample, conditionings = recorded_sample, []

    from comfyui_imgedit.nodes.runtime.provider import ComfyModelProvider
    from comfyui_imgedit.nodes.core.edit import run_edit

    model, clip, vae = comfy.sd.load_checkpoint_guess_config(checkpoint, output_vae=True, output_clip=True)[:3]
    pictures = torch.rand((2, 48, 64, 3), generator=torch.Generator().manual_seed(3))
    provider = ComfyModelProvider(model, _recording(clip, texts := []), vae, "euler", "normal")
    runs = []
    for prompt in (PROMPT_A, PROMPT_B, PROMPT_A):
        runs.append(_run(run_edit, provider, pictures, prompt, texts, conditionings))
    clone = _recording(clip.clone(), clone_texts := [])
    runs.append(_run(run_edit, ComfyModelProvider(model, clone, vae, "euler", "normal"), pictures, PROMPT_A,
                     clone_texts, conditionings))
    print(json.dumps(runs))
    return 0


def _run(run_edit, provider, pictures, prompt: str, texts: list, conditionings: list) -> dict:
    encoded, sampled = len(texts), len(conditionings)
    outcome = run_edit(provider, pictures, prompt=prompt, negative_prompt=NEGATIVE, strength=0.5, steps=4,
                       guidance=5.0, seed=11, samples=3)
    return {"prompt": prompt, "encoded": texts[encoded:], "sampled_with": conditionings[sampled:],
            "pictures": int(outcome.images.shape[0])}


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
