"""Where local models are and what they are: discovery and name resolution (the scheduler table is
:mod:`.local_schedulers`).

Nothing here imports torch, diffusers or ComfyUI, so the provider node can list models cheaply
when ComfyUI asks for its inputs. The node layer passes the folders (from ComfyUI's
``folder_paths``) as :class:`ModelRoots`.

Models the pack lists:

- **diffusers folders**: any folder under a ``diffusers`` root that holds ``model_index.json`` of a
  Stable Diffusion 1.x/2.x or SDXL pipeline and whose ``unet`` folder holds weights. The name is
  the folder's path relative to its root, with ``/`` separators (``sd15``, ``xl/juggernaut``).
- **single-file checkpoints**: ``.safetensors`` files under a ``checkpoints`` root (the name keeps
  the extension). diffusers can load one offline only with the configs and tokenizer of a
  diffusers folder of the same family (its ``config=`` argument); the pack reads the checkpoint's
  header (no tensors), finds such a "config donor" among the diffusers folders (weights there are
  not needed, a config-only folder is enough) and lists the checkpoint only when one exists.
  Pickle checkpoints (``.ckpt``) are not listed.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Iterable, Optional

from ..errors import InputError

# model_index.json ``_class_name`` -> family
SUPPORTED_PIPELINES = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionImg2ImgPipeline": "sd",
    "StableDiffusionInpaintPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "StableDiffusionXLInpaintPipeline": "sdxl",
}
# family -> (img2img class, inpaint class) in diffusers
TASK_PIPELINES = {
    "sd": ("StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"),
    "sdxl": ("StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline"),
}
CHECKPOINT_EXTENSIONS = (".safetensors",)
LORA_EXTENSIONS = (".safetensors",)
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_MAX_HEADER = 64 * 1024 * 1024


# --------------------------------------------------------------------------------------------
# models

@dataclass(frozen=True)
class ModelRoots:
    """The folders to search (ComfyUI's ``diffusers``, ``checkpoints`` and ``loras`` paths)."""

    diffusers: tuple = ()
    checkpoints: tuple = ()
    loras: tuple = ()

    @staticmethod
    def of(diffusers: Iterable = (), checkpoints: Iterable = (), loras: Iterable = ()) -> "ModelRoots":
        return ModelRoots(tuple(str(p) for p in diffusers), tuple(str(p) for p in checkpoints),
                          tuple(str(p) for p in loras))


@dataclass(frozen=True)
class Signature:
    """What must agree between a checkpoint and its config donor."""

    family: str          # "sd" or "sdxl"
    in_channels: int     # 4 (ordinary) or 9 (inpainting)
    base_channels: int   # UNet block_out_channels[0]
    cross_attention_dim: int

    def same_arch(self, other: "Signature") -> bool:
        """Equal except possibly ``in_channels`` (the pipeline then rebuilds conv_in's shape)."""
        return (self.family, self.base_channels, self.cross_attention_dim) == (
            other.family, other.base_channels, other.cross_attention_dim)

    def describe(self) -> str:
        kind = {("sd", 768): "SD 1.x", ("sd", 1024): "SD 2.x", ("sdxl", 2048): "SDXL",
                ("sdxl", 1280): "SDXL refiner"}.get((self.family, self.cross_attention_dim),
                                                    f"{self.family} (cross-attention {self.cross_attention_dim})")
        return kind + (" inpainting" if self.in_channels == 9 else "")


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: what the runner loads."""

    name: str
    path: str                      # the diffusers folder, or the checkpoint file
    kind: str                      # "folder" or "single_file"
    family: str                    # "sd" or "sdxl"
    in_channels: int = 4
    config_path: Optional[str] = None   # the config donor folder (single files)
    signature: Optional[Signature] = None

    @property
    def is_inpaint_model(self) -> bool:
        return self.in_channels == 9


@dataclass
class _FolderInfo:
    path: str
    family: Optional[str]
    class_name: str
    signature: Optional[Signature]
    has_weights: bool
    has_tokenizer: bool


_FOLDER_CACHE: dict[tuple, _FolderInfo] = {}
_HEADER_CACHE: dict[tuple, Optional[Signature]] = {}


def _read_json(path: str) -> dict:
    with open(path, "r", encoding="utf-8") as f:
        data = json.load(f)
    return data if isinstance(data, dict) else {}


def _stat_key(path: str) -> tuple:
    st = os.stat(path)
    return (path, st.st_mtime_ns, st.st_size)


def _has_weights(folder: str) -> bool:
    try:
        return any(n.endswith(_WEIGHT_SUFFIXES) for n in os.listdir(folder))
    except OSError:
        return False


def folder_info(folder: str) -> Optional[_FolderInfo]:
    """Facts about a diffusers folder (model_index.json, unet config), cached by mtime."""
    index = os.path.join(folder, "model_index.json")
    try:
        key = _stat_key(index)
    except OSError:
        return None
    if key in _FOLDER_CACHE:
        return _FOLDER_CACHE[key]
    try:
        model_index = _read_json(index)
    except (OSError, ValueError):
        return None
    class_name = str(model_index.get("_class_name", ""))
    family = SUPPORTED_PIPELINES.get(class_name)
    signature = None
    unet_dir = os.path.join(folder, "unet")
    try:
        unet = _read_json(os.path.join(unet_dir, "config.json"))
        blocks = unet.get("block_out_channels") or [0]
        cross = unet.get("cross_attention_dim")
        if isinstance(cross, (list, tuple)):
            cross = cross[0]
        if family:
            signature = Signature(family, int(unet.get("in_channels", 4)), int(blocks[0]), int(cross or 0))
    except (OSError, ValueError, TypeError):
        pass
    tokenizers = [n for n in model_index if n.startswith("tokenizer") and model_index[n] and model_index[n][0]]
    has_tokenizer = bool(tokenizers) and all(os.path.isdir(os.path.join(folder, t)) for t in tokenizers)
    info = _FolderInfo(folder, family, class_name, signature, _has_weights(unet_dir), has_tokenizer)
    _FOLDER_CACHE[key] = info
    return info


def _walk(root: str, want_dirs: bool, extensions: tuple = ()) -> Iterable[tuple[str, str]]:
    """Yield (relative name with '/', full path) of model folders or files under ``root``."""
    if not os.path.isdir(root):
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if want_dirs:
            if "model_index.json" in filenames:
                rel = os.path.relpath(dirpath, root)
                if rel != ".":
                    yield rel.replace(os.sep, "/"), dirpath
                dirnames[:] = []  # a pipeline's subfolders are components, not models
        else:
            for name in sorted(filenames):
                if name.lower().endswith(extensions):
                    full = os.path.join(dirpath, name)
                    yield os.path.relpath(full, root).replace(os.sep, "/"), full


def read_safetensors_header(path: str) -> dict:
    """The JSON header of a .safetensors file (tensor names, dtypes, shapes); no tensor is read."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError("file too short")
        (size,) = struct.unpack("<Q", raw)
        if size <= 0 or size > _MAX_HEADER:
            raise ValueError("bad header size")
        header = json.loads(f.read(size))
    if not isinstance(header, dict):
        raise ValueError("bad header")
    header.pop("__metadata__", None)
    return header


def checkpoint_signature(path: str) -> Optional[Signature]:
    """The :class:`Signature` of an original-layout SD/SDXL checkpoint, or None if it is not one."""
    try:
        key = _stat_key(path)
    except OSError:
        return None
    if key in _HEADER_CACHE:
        return _HEADER_CACHE[key]
    sig = None
    try:
        header = read_safetensors_header(path)
        conv_in = header.get("model.diffusion_model.input_blocks.0.0.weight", {}).get("shape")
        has_text = any(k.startswith(("cond_stage_model.", "conditioner.embedders.")) for k in header)
        has_vae = any(k.startswith("first_stage_model.") for k in header)
        cross = next((v.get("shape") for k, v in header.items()
                      if k.startswith("model.diffusion_model.") and k.endswith("attn2.to_k.weight")), None)
        if conv_in and len(conv_in) == 4 and cross and has_text and has_vae:
            family = "sdxl" if "model.diffusion_model.label_emb.0.0.weight" in header else "sd"
            sig = Signature(family, int(conv_in[1]), int(conv_in[0]), int(cross[1]))
    except (OSError, ValueError, AttributeError, TypeError, IndexError):
        sig = None
    _HEADER_CACHE[key] = sig
    return sig


def _folders(roots: ModelRoots) -> list[tuple[str, _FolderInfo]]:
    out = []
    for root in roots.diffusers:
        for name, full in _walk(root, want_dirs=True):
            info = folder_info(full)
            if info is not None:
                out.append((name, info))
    return out


def find_config_donor(sig: Signature, roots: ModelRoots, folders: Optional[list] = None) -> Optional[str]:
    """A diffusers folder whose configs and tokenizer fit a checkpoint (same in_channels first)."""
    candidates = [info for _, info in (folders if folders is not None else _folders(roots))
                  if info.signature is not None and info.has_tokenizer and info.signature.same_arch(sig)]
    candidates.sort(key=lambda i: (i.signature.in_channels != sig.in_channels, i.path))
    return candidates[0].path if candidates else None


def list_models(roots: ModelRoots) -> list[str]:
    """COMBO entries: loadable diffusers folders, then loadable single-file checkpoints."""
    names: list[str] = []
    folders = _folders(roots)
    for name, info in folders:
        if info.family and info.has_weights and name not in names:
            names.append(name)
    for root in roots.checkpoints:
        for name, full in _walk(root, want_dirs=False, extensions=CHECKPOINT_EXTENSIONS):
            sig = checkpoint_signature(full)
            if sig is not None and name not in names and find_config_donor(sig, roots, folders):
                names.append(name)
    return names


def _looked_in(roots: ModelRoots) -> str:
    parts = []
    if roots.diffusers:
        parts.append("diffusers folders in " + ", ".join(roots.diffusers))
    if roots.checkpoints:
        parts.append(".safetensors checkpoints in " + ", ".join(roots.checkpoints))
    return " and ".join(parts) or "no model folders (none are configured)"


def resolve_model(name: str, roots: ModelRoots) -> ModelSpec:
    """Turn a COMBO name into a :class:`ModelSpec`; one-sentence :class:`InputError` otherwise."""
    name = (name or "").strip()
    if not name or name.startswith("(") or ".." in name.split("/"):
        raise InputError(f"model: no local model is selected; the pack looked for {_looked_in(roots)}.")
    if name.lower().endswith(CHECKPOINT_EXTENSIONS):
        for root in roots.checkpoints:
            full = os.path.join(root, *name.split("/"))
            if os.path.isfile(full):
                sig = checkpoint_signature(full)
                if sig is None:
                    raise InputError(f"model: {name} is not a Stable Diffusion 1.x/2.x or SDXL checkpoint "
                                     "with its text encoder and VAE; pick another model.")
                donor = find_config_donor(sig, roots)
                if donor is None:
                    where = ", ".join(roots.diffusers) or "a diffusers models folder"
                    raise InputError(
                        f"model: {name} ({sig.describe()}) can only be loaded offline with the configs of a "
                        f"diffusers model of the same kind; put one (configs and tokenizer are enough) in {where}.")
                return ModelSpec(name, full, "single_file", sig.family, sig.in_channels, donor, sig)
    else:
        for root in roots.diffusers:
            full = os.path.join(root, *name.split("/"))
            info = folder_info(full)
            if info is None:
                continue
            if not info.family:
                raise InputError(f"model: {name} is a {info.class_name or 'unknown'} pipeline; local editing runs "
                                 "Stable Diffusion 1.x/2.x and SDXL models.")
            if not info.has_weights:
                raise InputError(f"model: {name} has configs but no UNet weights; download its weights or pick "
                                 "another model.")
            sig = info.signature
            return ModelSpec(name, full, "folder", info.family, sig.in_channels if sig else 4, None, sig)
    raise InputError(f"model: '{name}' was not found; the pack looked for {_looked_in(roots)}.")


def list_loras(roots: ModelRoots) -> list[str]:
    names: list[str] = []
    for root in roots.loras:
        for name, _ in _walk(root, want_dirs=False, extensions=LORA_EXTENSIONS):
            if name not in names:
                names.append(name)
    return names


def resolve_lora(name: str, roots: ModelRoots) -> str:
    for root in roots.loras:
        full = os.path.join(root, *name.split("/"))
        if ".." not in name.split("/") and os.path.isfile(full):
            return full
    where = ", ".join(roots.loras) or "no loras folder (none is configured)"
    raise InputError(f"lora: '{name}' was not found in {where}.")
