"""ImgEditLocalDiffusers: the local diffusers provider node (img2img/inpaint on this machine).

A thin V3 node: it lists the models ComfyUI's folders hold, turns the chosen inputs into a
:class:`~.core.providers.local_diffusers.LocalDiffusersProvider` (cheap: nothing is loaded here)
and hands ComfyUI's memory management to it (:mod:`.runtime.memory`). The ImgEditImg2Img /
ImgEditInpaint nodes run it.
ComfyUI modules are imported inside functions so importing this module stays cheap.
"""

from __future__ import annotations

from comfy_api.latest import io

from .comfy_types import PROVIDER

from .core.providers.local_models import ModelRoots, list_loras, list_models, resolve_lora, resolve_model
from .core.providers.local_schedulers import scheduler_names

NO_LORA = "none"
NO_MODEL = "(no local models found)"
DTYPES = ["auto", "fp16", "bf16", "fp32"]
DEVICES = ["auto", "cpu", "cuda"]


def model_roots() -> ModelRoots:
    """ComfyUI's diffusers, checkpoints and loras folders (extra_model_paths.yaml included)."""
    import folder_paths

    def paths(name: str) -> list[str]:
        try:
            return list(folder_paths.get_folder_paths(name))
        except KeyError:
            return []

    return ModelRoots.of(paths("diffusers"), paths("checkpoints"), paths("loras"))


def memory_hooks():
    """ComfyUI's model management as the provider's :class:`MemoryHooks`: its device and dtype
    choices, and its accounting of the cached pipelines (see :mod:`.runtime.memory`)."""
    import comfy.model_management as mm

    from .runtime import memory as comfy_memory
    from .core.providers.local_diffusers import MemoryHooks

    def auto_dtype(device) -> str:
        if mm.is_device_cpu(device):
            return "fp32"
        if mm.should_use_fp16(device):
            return "fp16"
        return "bf16" if mm.should_use_bf16(device) else "fp32"

    def keep_on_device() -> bool:
        # As ComfyUI does with its own models: they stay loaded until it needs the room (it then
        # releases ours through the ticket); --lowvram/--novram/--disable-smart-memory give it back.
        keeps = (mm.VRAMState.NORMAL_VRAM, mm.VRAMState.HIGH_VRAM)
        return mm.vram_state in keeps and not getattr(mm, "DISABLE_SMART_MEMORY", False)

    return MemoryHooks(
        default_device=mm.get_torch_device,
        free_memory=lambda nbytes, device: mm.free_memory(nbytes, device),
        free_bytes=lambda device: mm.get_free_memory(device),
        empty_cache=mm.soft_empty_cache,
        keep_on_device=keep_on_device,
        auto_dtype=auto_dtype,
        track=comfy_memory.track,
        claim=comfy_memory.claim,
    )


class ImgEditLocalDiffusers(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        roots = model_roots()
        models = list_models(roots) or [NO_MODEL]
        return io.Schema(
            node_id="ImgEditLocalDiffusers",
            display_name="ImgEdit Local Diffusers",
            category="ImgEdit/providers",
            description="Run ImgEdit Img2Img / Inpaint on this machine with a Stable Diffusion 1.x/2.x or SDXL "
                        "model (diffusers). Nothing is downloaded.",
            inputs=[
                io.Combo.Input("model", options=models, default=models[0],
                               tooltip="A diffusers folder (with model_index.json) from models/diffusers, or a "
                                       ".safetensors checkpoint from models/checkpoints when a diffusers folder of "
                                       "the same kind supplies its configs. 9-channel inpainting models work too."),
                io.Combo.Input("scheduler", options=scheduler_names(), default="default",
                               tooltip="default = the model's own. Second-order ones (Heun, KDPM2) run the UNet "
                                       "about twice per step."),
                io.Boolean.Input("karras_sigmas", default=False,
                                 tooltip="Karras noise levels, for the schedulers that support them (ignored with a "
                                         "warning otherwise)."),
                io.Combo.Input("dtype", options=DTYPES, default="auto",
                               tooltip="auto: fp16 (or what ComfyUI picks) on a GPU, fp32 on the CPU; fp16 asked "
                                       "on the CPU runs in fp32."),
                io.Combo.Input("device", options=DEVICES, default="auto",
                               tooltip="auto: ComfyUI's device."),
                io.Combo.Input("lora", options=[NO_LORA, *list_loras(roots)], default=NO_LORA, optional=True,
                               tooltip="A LoRA from models/loras."),
                io.Float.Input("lora_strength", default=1.0, min=-4.0, max=4.0, step=0.05, optional=True,
                               tooltip="LoRA weight (0 = off)."),
                io.Int.Input("clip_skip", default=1, min=1, max=12, optional=True,
                             tooltip="1 = the last CLIP layer (no skip), 2 = the one before (A1111/ModelsLab "
                                     "counting)."),
            ],
            outputs=[PROVIDER.Output(display_name="provider",
                                     tooltip="Connect to ImgEdit Img2Img or ImgEdit Inpaint.")],
        )

    @classmethod
    def execute(cls, model, scheduler, karras_sigmas, dtype, device, lora=NO_LORA, lora_strength=1.0,
                clip_skip=1) -> io.NodeOutput:
        from .core.providers.local_diffusers import LocalDiffusersProvider

        roots = model_roots()
        spec = resolve_model("" if model == NO_MODEL else model, roots)
        lora_path = None if not lora or lora == NO_LORA else resolve_lora(lora, roots)
        provider = LocalDiffusersProvider(
            spec, scheduler=scheduler, karras_sigmas=karras_sigmas, dtype=dtype, device=device,
            lora_path=lora_path, lora_strength=lora_strength, clip_skip=clip_skip, memory=memory_hooks())
        return io.NodeOutput(provider)


NODES = [ImgEditLocalDiffusers]
