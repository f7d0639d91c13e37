"""The four remote provider nodes: ImgEditDezgo, ImgEditSDAPI, ImgEditModelsLab, ImgEditImagePipeline.

Thin V3 nodes: they validate their inputs into a client from :mod:`nodes.core.providers` and
output it as ``IMGEDIT_PROVIDER`` for the ImgEditImg2Img / ImgEditInpaint nodes. There is no key
input and no host input on purpose: keys come from the environment or ComfyUI Settings -> ImgEdit
(stored server-side), hosts from ``IMGEDIT_*_URL``, so a shared workflow can never carry a key or
send one elsewhere. A client's ``repr`` (what ComfyUI prints in error reports) holds no key.
"""

from __future__ import annotations

from comfy_api.latest import io

from .comfy_types import PROVIDER

from .core import keys
from .core.services import SERVICES

CATEGORY = "ImgEdit/providers"
DEFAULT = "default"

EXTRA_TOOLTIP = (
    "Optional JSON object of more provider parameters, merged into the request after validation, e.g. {}. "
    "Documented ones are checked; unknown ones are sent as-is with a warning in info. It cannot set the key, "
    "the host, the images or what the Img2Img/Inpaint node sets (prompt, strength, steps, seed, size)."
)
KEY_HELP = "Key: env {env} or ComfyUI Settings -> ImgEdit. Host: env {url_env} (default {url})."


def _user_dir() -> str | None:
    try:
        import folder_paths

        return folder_paths.get_user_directory()
    except Exception:  # outside ComfyUI (tests): environment keys only
        return None


def _require_key(service: str, user_dir: str | None) -> None:
    """Fail at the provider node when no key is configured (the key itself is read at call time)."""
    if not keys.services_with_keys(user_dir).get(SERVICES[service].key_owner, False):
        keys.resolve_key(service, user_dir)  # raises AuthError with the how-to sentence


def _common_inputs(service: str, nsfw: bool = True) -> list:
    """fail_on_nsfw, deadline_s, max_concurrency and extra, with the limits of the service's row."""
    row = SERVICES[service]
    inputs = []
    if nsfw:
        flag = ("the answer flags replaced results" if row.nsfw_flag else
                f"the {row.label} documents describe no NSFW flag in the answer, so this cannot detect anything there")
        inputs.append(io.Boolean.Input(
            "fail_on_nsfw", default=False,
            tooltip="When the provider's safety checker replaces a result (blank/blurred image), stop with an "
                    f"error instead of returning it with a warning in info. {row.label}: {flag}."))
    low, default, high = row.deadline_s
    inputs += [
        io.Int.Input("deadline_s", default=default, min=low, max=high, step=1,
                     tooltip="Give up on one provider call after this many seconds (queued jobs may still finish "
                             "on the provider's side)."),
        io.Int.Input("max_concurrency", default=row.default_concurrency, min=1, max=row.max_concurrency,
                     tooltip="How many calls run at once for a batch or several samples."),
        io.String.Input("extra", default="", multiline=True, optional=True, tooltip=EXTRA_TOOLTIP),
    ]
    return inputs


def _service_help(service: str) -> str:
    row = SERVICES[service]
    return KEY_HELP.format(env=row.key_env, url_env=row.url_env, url=row.default_url)


def _output() -> list:
    return [PROVIDER.Output(display_name="provider", tooltip="Connect to ImgEdit Img2Img or ImgEdit Inpaint.")]


class ImgEditDezgo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        from .core.providers.dezgo import FORMATS, SAMPLERS

        return io.Schema(
            node_id="ImgEditDezgo",
            display_name="ImgEdit Dezgo",
            category=CATEGORY,
            description="Dezgo (api.dezgo.com): synchronous img2img and inpainting, one image per call, images "
                        "uploaded as multipart files; cost and balance go to info. " + _service_help("dezgo"),
            inputs=[
                io.String.Input("model", default="",
                                tooltip="Dezgo model id (see Dezgo's /info); empty = Dezgo's default. Inpainting "
                                        "needs an inpainting model, e.g. absolute_reality_1_8_1_inpaint."),
                io.Combo.Input("sampler", options=[DEFAULT, *SAMPLERS], default=DEFAULT,
                               tooltip="default = Dezgo's own choice. Other sampler names can go in extra."),
                io.Combo.Input("format", options=list(FORMATS), default="png",
                               tooltip="Format Dezgo answers in; png is lossless."),
                *_common_inputs("dezgo", nsfw=False),
            ],
            outputs=_output(),
        )

    @classmethod
    def execute(cls, model: str, sampler: str, format: str, deadline_s: int, max_concurrency: int,
                extra: str = "") -> io.NodeOutput:
        from .core.providers.dezgo import DezgoClient

        user_dir = _user_dir()
        client = DezgoClient(model=model, sampler="" if sampler == DEFAULT else sampler, format=format,
                             deadline_s=deadline_s, max_concurrency=max_concurrency, extra=extra, user_dir=user_dir)
        _require_key("dezgo", user_dir)
        return io.NodeOutput(client)


class ImgEditSDAPI(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        from .core.providers.modelslab import IMAGE_TRANSPORTS

        return io.Schema(
            node_id="ImgEditSDAPI",
            display_name="ImgEdit Stable Diffusion API (v3)",
            category=CATEGORY,
            description="stablediffusionapi.com v3 (ModelsLab's older API, same key): img2img and inpaint, queued "
                        "jobs polled until done; steps are snapped to 21/31/41/51. " + _service_help("sdapi"),
            inputs=[
                io.Boolean.Input("enhance_prompt", default=False,
                                 tooltip="Off keeps edits faithful: when on, the service rewrites your prompt "
                                         "(adds its own words and style) before generating."),
                io.Boolean.Input("safety_checker", default=True,
                                 tooltip="The service's NSFW checker: flagged results come back blank (with a "
                                         "warning in info, or an error with fail_on_nsfw)."),
                io.Combo.Input("image_transport", options=list(IMAGE_TRANSPORTS), default="upload",
                               tooltip="upload: through ModelsLab's documented base64_to_url (a link valid 24 h). "
                                       "base64: inline data: URIs (unverified against the live service)."),
                *_common_inputs("sdapi"),
            ],
            outputs=_output(),
        )

    @classmethod
    def execute(cls, enhance_prompt: bool, safety_checker: bool, image_transport: str, fail_on_nsfw: bool,
                deadline_s: int, max_concurrency: int, extra: str = "") -> io.NodeOutput:
        from .core.providers.sdapi import SDAPIClient

        user_dir = _user_dir()
        client = SDAPIClient(enhance_prompt=enhance_prompt, safety_checker=safety_checker,
                             image_transport=image_transport, fail_on_nsfw=fail_on_nsfw, deadline_s=deadline_s,
                             max_concurrency=max_concurrency, extra=extra, user_dir=user_dir)
        _require_key("sdapi", user_dir)
        return io.NodeOutput(client)


class ImgEditModelsLab(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        from .core.providers.modelslab import ALGORITHM_TYPES, IMAGE_TRANSPORTS, SAFETY_CHECKER_TYPES, SCHEDULERS

        return io.Schema(
            node_id="ImgEditModelsLab",
            display_name="ImgEdit ModelsLab (v6)",
            category=CATEGORY,
            description="ModelsLab v6 community models: img2img and inpaint, 1-4 samples per call, queued jobs "
                        "polled until done (5 queued jobs per pay-as-you-go account). " + _service_help("modelslab"),
            inputs=[
                io.String.Input("model_id", default="realistic-vision-51",
                                tooltip="A public or your own ModelsLab model id (modelslab.com/models); use an "
                                        "inpainting model for Inpaint, e.g. lazymixv4-inpaint."),
                io.Combo.Input("scheduler", options=[DEFAULT, *SCHEDULERS], default=DEFAULT,
                               tooltip="default = not sent (the model's default)."),
                io.Boolean.Input("use_karras_sigmas", default=True, tooltip="Karras noise levels."),
                io.Int.Input("clip_skip", default=0, min=0, max=8,
                             tooltip="0 = not sent (the service's default); 1-8 otherwise."),
                io.String.Input("lora_model", default="",
                                tooltip="LoRA model id(s), comma-separated; empty = none."),
                io.String.Input("lora_strength", default="",
                                tooltip="One strength 0.1-1 per LoRA, comma-separated; empty = the service's default."),
                io.String.Input("vae", default="", tooltip="A custom VAE id; empty = the model's own."),
                io.Boolean.Input("enhance_prompt", default=False,
                                 tooltip="Off keeps edits faithful: when on (ModelsLab's own default), the service "
                                         "rewrites your prompt, adding its own words and style."),
                io.Boolean.Input("safety_checker", default=True,
                                 tooltip="The service's NSFW checker: flagged results are replaced as "
                                         "safety_checker_type says (warning in info, or an error with fail_on_nsfw)."),
                io.Combo.Input("safety_checker_type", options=list(SAFETY_CHECKER_TYPES),
                               default="sensitive_content_text", tooltip="How a flagged result is replaced."),
                io.Boolean.Input("tomesd", default=True, tooltip="Token merging: faster, slightly different results."),
                io.Combo.Input("algorithm_type", options=list(ALGORITHM_TYPES), default="none",
                               tooltip="dpmsolver+++ applies only with DPMSolverMultistepScheduler."),
                io.Combo.Input("image_transport", options=list(IMAGE_TRANSPORTS), default="upload",
                               tooltip="upload: through the documented base64_to_url (a link valid 24 h, at most "
                                       "5 MB). base64: inline data: URIs (unverified against the live service)."),
                *_common_inputs("modelslab"),
            ],
            outputs=_output(),
        )

    @classmethod
    def execute(cls, model_id: str, scheduler: str, use_karras_sigmas: bool, clip_skip: int, lora_model: str,
                lora_strength: str, vae: str, enhance_prompt: bool, safety_checker: bool, safety_checker_type: str,
                tomesd: bool, algorithm_type: str, image_transport: str, fail_on_nsfw: bool, deadline_s: int,
                max_concurrency: int, extra: str = "") -> io.NodeOutput:
        from .core.providers.modelslab import ModelsLabClient

        user_dir = _user_dir()
        client = ModelsLabClient(
            model_id=model_id, scheduler="" if scheduler == DEFAULT else scheduler,
            use_karras_sigmas=use_karras_sigmas, clip_skip=clip_skip, lora_model=lora_model,
            lora_strength=lora_strength, vae=vae, enhance_prompt=enhance_prompt, safety_checker=safety_checker,
            safety_checker_type=safety_checker_type, tomesd=tomesd, algorithm_type=algorithm_type,
            image_transport=image_transport, fail_on_nsfw=fail_on_nsfw, deadline_s=deadline_s,
            max_concurrency=max_concurrency, extra=extra, user_dir=user_dir)
        _require_key("modelslab", user_dir)
        return io.NodeOutput(client)


class ImgEditImagePipeline(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        from .core.providers.imagepipeline import FAMILIES

        return io.Schema(
            node_id="ImgEditImagePipeline",
            display_name="ImgEdit ImagePipeline",
            category=CATEGORY,
            description="ImagePipeline (legacy API): SDXL / SD1.5 img2img and inpainting, queued jobs. Its "
                        "documents want public image links: without init_image_url / mask_image_url the pictures "
                        "are sent as data: URIs, unverified against the live service. " + _service_help("imagepipeline"),
            inputs=[
                io.Combo.Input("family", options=list(FAMILIES), default="sdxl",
                               tooltip="sdxl: /sdxl/... endpoints; sd: the SD 1.5 ones."),
                io.String.Input("model_id", default="",
                                tooltip="Empty = sdxl or sd1.5 by family; or a model id from ImagePipeline's models page."),
                io.String.Input("scheduler", default="",
                                tooltip="Empty = not sent; e.g. UniPCMultistepScheduler."),
                io.Boolean.Input("refiner", default=False, tooltip="SDXL refiner pass."),
                io.Boolean.Input("safety_checker", default=True,
                                 tooltip="The service's NSFW filter (flagged results give a warning, or an error "
                                         "with fail_on_nsfw)."),
                io.String.Input("init_image_url", default="", optional=True,
                                tooltip="Optional public link to the same picture as the image input; the service "
                                        "fetches it instead of an inline data: URI."),
                io.String.Input("mask_image_url", default="", optional=True,
                                tooltip="Optional public link to the mask (white = change) for Inpaint."),
                *_common_inputs("imagepipeline"),
            ],
            outputs=_output(),
        )

    @classmethod
    def execute(cls, family: str, model_id: str, scheduler: str, refiner: bool, safety_checker: bool,
                fail_on_nsfw: bool, deadline_s: int, max_concurrency: int, init_image_url: str = "",
                mask_image_url: str = "", extra: str = "") -> io.NodeOutput:
        from .core.providers.imagepipeline import ImagePipelineClient

        user_dir = _user_dir()
        client = ImagePipelineClient(
            family=family, model_id=model_id, scheduler=scheduler, refiner=refiner, safety_checker=safety_checker,
            init_image_url=init_image_url, mask_image_url=mask_image_url, fail_on_nsfw=fail_on_nsfw,
            deadline_s=deadline_s, max_concurrency=max_concurrency, extra=extra, user_dir=user_dir)
        _require_key("imagepipeline", user_dir)
        return io.NodeOutput(client)


NODES: list[type[io.ComfyNode]] = [ImgEditDezgo, ImgEditSDAPI, ImgEditModelsLab, ImgEditImagePipeline]

__all__ = ["NODES", "PROVIDER", "ImgEditDezgo", "ImgEditSDAPI", "ImgEditModelsLab", "ImgEditImagePipeline"]

