"""comfyui-imgedit: img2img and inpainting for ComfyUI, locally or on a remote provider.

ComfyUI imports this package and calls :func:`comfy_entrypoint`. The node modules (which import
``comfy_api``) load only then, so the ComfyUI-free core under ``nodes/core`` stays importable on its
own (tests, the CLI, the sandbox).
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    """Return the pack's ComfyExtension (V3 schema)."""
    from .nodes.extension import ImgEditExtension

    return ImgEditExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
