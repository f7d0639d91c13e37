"""ImgEditImg2Img and ImgEditInpaint: one pair of nodes for every provider, local or remote.

They only translate ComfyUI inputs into :func:`nodes.core.edit.run_edit`; the provider input
decides where the work runs, so switching service never means rewiring.
"""

from __future__ import annotations

import asyncio
import functools
import json

from comfy_api.latest import io

from .runtime.hooks import comfy_hooks, comfy_interrupts
from .comfy_types import PROVIDER
from .core.edit import run_edit
from .core.journal import open_journal
from .core.request import MAX_SAMPLES, SEED_MAX
from .core.services import SERVICES, seed_per_sample_services
from .journal_routes import node_user_dir

_SEED_TOOLTIP = (
    "Same seed, same inputs: same picture. Sample k of a picture uses seed + k with the local provider and "
    f"{', '.join(seed_per_sample_services())} (one call per sample). "
    + ", ".join(s.label for s in SERVICES.values() if s.samples_per_call > 1)
    + " make several samples in one call from the seed; info.seeds gives each sample's seed as the service "
    "reports it, null where it does not say."
)


def _common_inputs() -> list:
    return [
        io.String.Input("prompt", multiline=True, default="",
                        tooltip="Describe the whole picture you want, not only the change. One prompt per picture of the batch: "
                                "separate them with lines that are exactly ---; picture i gets prompt i (crops of ImgEditCropToMask "
                                "regions: separately come picture 0's first, each picture's regions top to bottom). One prompt serves all."),
        io.String.Input("negative_prompt", multiline=True, default="",
                        tooltip="What you do not want in the picture. Like prompt: one for all pictures, or one per picture separated by --- lines."),
        io.Float.Input("strength", default=0.75, min=0.0, max=1.0, step=0.01,
                       tooltip="How much to change: 0 keeps the picture, 1 ignores it. Only strength x steps denoising steps run."),
        io.Int.Input("steps", default=30, min=1, max=150,
                     tooltip="Denoising steps. Some services snap this to the values they allow (said in info)."),
        io.Float.Input("guidance", default=7.5, min=0.0, max=30.0, step=0.1,
                       tooltip="Classifier-free guidance (CFG): how closely to follow the prompt. On ImgEditComfyModel "
                               "with a guidance-distilled model (Flux dev, Kontext, Fill) it is the model's embedded "
                               "guidance instead (FluxGuidance; core templates use 3.5 dev, 2.5 Kontext, 30 Fill) "
                               "and CFG is 1."),
        io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                     tooltip=_SEED_TOOLTIP),
        io.Int.Input("samples", default=1, min=1, max=MAX_SAMPLES,
                     tooltip="Pictures to make from each input picture; the output holds them in input order. "
                             "Services make at most a few per call; more become several calls (each one paid)."),
    ]


def _outputs() -> list:
    return [
        io.Image.Output(display_name="IMAGE", tooltip="The edited pictures, at the input's size."),
        io.String.Output(display_name="info", tooltip="JSON: provider, seeds, job ids, warnings, timings, cost when reported; prompts: which prompt went to which picture "
                                                           "(with --- separated prompts); journal: a result taken from the journal of paid calls or a resumed job."),
    ]


async def _run(node_id, provider, image, mask=None, keep_unmasked=True, **params) -> io.NodeOutput:
    hooks = comfy_hooks(node_id)
    # Paid calls go through the journal in user/imgedit/journal/ (unless turned off).
    journal = open_journal(node_user_dir()) if getattr(provider, "remote", False) else None
    with comfy_interrupts():
        edit = functools.partial(run_edit, provider, image, mask=mask, keep_unmasked=keep_unmasked, hooks=hooks,
                                 journal=journal, **params)
        if getattr(provider, "remote", True):
            # Blocking work leaves the event loop free, so several remote nodes in one graph overlap.
            outcome = await asyncio.to_thread(edit)
        else:
            # Local work uses ComfyUI's models and device: it runs in turn, as core nodes do (a KSampler on
            # the same MODEL running meanwhile would break both samplings).
            outcome = edit()
    return io.NodeOutput(outcome.images, json.dumps(outcome.info, indent=1, default=str))


class ImgEditImg2Img(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ImgEditImg2Img",
            display_name="ImgEdit Img2Img",
            category="ImgEdit",
            description="Redo a picture from a prompt, on the connected provider (local diffusers or a remote service).",
            inputs=[
                PROVIDER.Input("provider", tooltip="Where the edit runs: connect an ImgEdit provider node."),
                io.Image.Input("image", tooltip="The picture(s) to redo; any size (fitted to the provider and back)."),
                *_common_inputs(),
            ],
            outputs=_outputs(),
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    async def execute(cls, provider, image, prompt, negative_prompt, strength, steps, guidance, seed,
                      samples) -> io.NodeOutput:
        return await _run(cls.hidden.unique_id, provider, image, prompt=prompt, negative_prompt=negative_prompt,
                          strength=strength, steps=steps, guidance=guidance, seed=seed, samples=samples)


class ImgEditInpaint(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ImgEditInpaint",
            display_name="ImgEdit Inpaint",
            category="ImgEdit",
            description="Repaint the masked part of a picture (mask white = change, black = keep) on the connected provider.",
            inputs=[
                PROVIDER.Input("provider", tooltip="Where the edit runs: connect an ImgEdit provider node."),
                io.Image.Input("image", tooltip="The picture(s) to repaint."),
                io.Mask.Input("mask", tooltip="1 (white) = repaint, 0 (black) = keep; soft edges blend. An empty mask returns the picture unchanged without calling the provider."),
                *_common_inputs(),
                io.Boolean.Input("keep_unmasked", default=True,
                                 tooltip="Paste the original pixels back outside the mask (blended through its soft edge), so nothing outside it changes."),
            ],
            outputs=_outputs(),
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    async def execute(cls, provider, image, mask, prompt, negative_prompt, strength, steps, guidance, seed,
                      samples, keep_unmasked=True) -> io.NodeOutput:
        return await _run(cls.hidden.unique_id, provider, image, mask=mask, keep_unmasked=keep_unmasked,
                          prompt=prompt, negative_prompt=negative_prompt, strength=strength, steps=steps,
                          guidance=guidance, seed=seed, samples=samples)


NODES = [ImgEditImg2Img, ImgEditInpaint]
