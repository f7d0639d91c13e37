"""A whole integration-test session: tiny models, the offline sandbox and one ComfyUI process."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from comfyui_client import ComfyClient, ComfyError
from comfyui_server import PACK_ROOT, ComfyServer, extra_model_paths_yaml

#: The pack's node ids (a public contract: saved in users' workflows).
NODE_IDS = [
    "ImgEditGrowMask", "ImgEditFeatherMask", "ImgEditMaskFromImage", "ImgEditCropToMask", "ImgEditStitch",
    "ImgEditCropLike", "ImgEditFillMasked", "ImgEditExtendCanvas",
    "ImgEditDezgo", "ImgEditSDAPI", "ImgEditModelsLab", "ImgEditImagePipeline", "ImgEditLocalDiffusers",
    "ImgEditComfyModel", "ImgEditImg2Img", "ImgEditInpaint",
]

KEY_ENV = ("DEZGO_API_KEY", "MODELSLAB_API_KEY", "IMAGEPIPELINE_API_KEY")
#: The key the browser test types into the settings (the leak test looks for it too).
BROWSER_TEST_KEY = "imgedit-browser-" + uuid.uuid4().hex[:24]
#: Names the example workflows' LoadImage nodes use (see nodes/assets.py).
SAMPLE_INPUTS = {"sample.png": "imgedit_sample.png", "sample_mask.png": "imgedit_sample_mask.png"}


def _load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def write_standin_samples(folder: Path) -> dict[str, Path]:
    """Generated stand-ins for ``assets/sample*.png`` (used only while the pack ships none)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (160, 120), (40, 90, 160))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 80, 160, 120), fill=(60, 140, 60))
    draw.ellipse((60, 30, 100, 70), fill=(230, 200, 60))
    img.save(folder / SAMPLE_INPUTS["sample.png"])
    mask = Image.new("L", (160, 120), 0)
    ImageDraw.Draw(mask).ellipse((55, 25, 105, 75), fill=255)
    mask.save(folder / SAMPLE_INPUTS["sample_mask.png"])
    return {k: folder / v for k, v in SAMPLE_INPUTS.items()}


@dataclass
class ComfySession:
    server: ComfyServer
    client: ComfyClient
    object_info: dict
    test_key: str
    samples: dict  # "sample.png" / "sample_mask.png" -> path in ComfyUI's input folder
    shipped_samples: bool  # True: the pack copied assets/ itself at load
    models: dict = field(default_factory=dict)
    sandbox: Any = None
    work: Optional[Path] = None

    def log(self) -> str:
        return self.server.log_text()


def _start_sandbox(key: str):
    """The pack's offline provider simulator, if importable: ``(sandbox or None, IMGEDIT_*_URL env)``."""
    try:
        from comfyui_imgedit.sandbox import SandboxServer  # type: ignore
    except Exception:
        return None, {}
    sandbox = SandboxServer(key=key)
    sandbox.size_window = True  # ModelsLab's documented 256-1024 rule: crops must be fitted into it
    sandbox.__enter__()
    environ = sandbox.environ() if hasattr(sandbox, "environ") else {}
    return sandbox, {k: v for k, v in environ.items() if k.startswith("IMGEDIT_")}


def build_tiny_checkpoints(comfy_dir: Path, folder: Path, python: Optional[str] = None) -> dict[str, Path]:
    """The tiny SD1.5 checkpoints of ``tiny_checkpoint.py``, built by ComfyUI's python with its own classes."""
    script = Path(__file__).resolve().parent / "tiny_checkpoint.py"
    env = {**os.environ, "COMFYUI_DIR": str(comfy_dir)}
    done = subprocess.run([python or sys.executable, str(script), str(folder)], cwd=comfy_dir, env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise ComfyError(f"building the tiny checkpoints failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    paths = [Path(line) for line in done.stdout.split() if line.endswith(".safetensors")]
    return {f"checkpoint_{path.stem}": path for path in paths}


#: Test-only nodes (tiny model families, stand-in CLIP/VAE); never in the pack's node list.
TEST_NODES = Path(__file__).resolve().parent / "tiny_families"


def link_test_nodes(base: Path) -> None:
    """``custom_nodes/imgedit-test-tiny-families`` in the test ComfyUI's base directory -> ``TEST_NODES``."""
    link = base / "custom_nodes" / "imgedit-test-tiny-families"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(TEST_NODES, target_is_directory=True)


@contextlib.contextmanager
def comfy_session(work: Path, comfy_dir: Path, python: Optional[str] = None, test_key: Optional[str] = None,
                  extra_args: Iterable[str] = ()) -> Iterator[ComfySession]:
    """Tiny models, the sandbox and a ComfyUI process under ``work``; everything stopped on exit."""
    work = Path(work)
    test_key = test_key or "imgedit-itest-" + uuid.uuid4().hex
    base = work / "base"
    models: dict = {}
    models_root = work / "models"
    tiny = PACK_ROOT / "tests" / "tiny_models.py"
    if tiny.is_file():
        models = _load_module("imgedit_tiny_models", tiny).build_tiny_models(models_root) or {}
    models_root.mkdir(parents=True, exist_ok=True)
    models.update(build_tiny_checkpoints(comfy_dir, models_root / "checkpoints", python))
    (models_root / "diffusion_models").mkdir(exist_ok=True)  # UNETLoader's folder (test_comfyui_9_model_families)
    config = extra_model_paths_yaml(models_root, work / "extra_model_paths.yaml")
    link_test_nodes(base)

    shipped = all((PACK_ROOT / "assets" / name).is_file() for name in SAMPLE_INPUTS)
    if not shipped:
        write_standin_samples(base / "input")
    samples = {k: base / "input" / v for k, v in SAMPLE_INPUTS.items()}

    sandbox, sandbox_env = _start_sandbox(test_key)
    env = {k: v for k, v in os.environ.items()
           if not (k in KEY_ENV or k.startswith("IMGEDIT_") or k == "COMFYUI_DIR")}
    env.update({name: test_key for name in KEY_ENV})
    env.update(sandbox_env)
    server = ComfyServer(comfy_dir, base, python=python, env=env,
                         # step previews as the frontend gets them (latent2rgb: cheap, no TAESD files)
                         extra_args=["--extra-model-paths-config", str(config), "--preview-method", "latent2rgb",
                                     *extra_args])
    try:
        server.start()
        client = server.client(timeout=120)
        yield ComfySession(server=server, client=client, object_info=client.object_info(), test_key=test_key,
                           samples=samples, shipped_samples=shipped, models=models, sandbox=sandbox, work=work)
    finally:
        server.stop()
        if sandbox is not None:
            with contextlib.suppress(Exception):
                sandbox.__exit__(None, None, None)
