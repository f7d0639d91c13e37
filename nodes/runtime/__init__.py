"""The pack's code that runs on ComfyUI's own machinery (imported only inside ComfyUI).

- :mod:`.node`: the ``ImgEditComfyModel`` node;
- :mod:`.provider`: its provider (a core ``Provider`` on a MODEL, CLIP and VAE);
- :mod:`.families`: what a model takes (concatenated inpaint inputs, embedded guidance, reference path);
- :mod:`.conditioning`: each family's core conditioning, with the core nodes' code;
- :mod:`.sampling`: KSamplerAdvanced's sampling with the pack's progress, previews and Cancel;
- :mod:`.hooks`: ComfyUI's side of the core Hooks (progress bar, previews, Cancel);
- :mod:`.memory`: the diffusers provider's models in ComfyUI's model management.
"""
