"""Fixtures for the integration tests that run the pack inside a real ComfyUI.

They run only when ``COMFYUI_DIR`` names a ComfyUI checkout (a folder with ``main.py``); every test
here is skipped with that reason otherwise (CI has no checkout). ``COMFYUI_PYTHON`` is the
interpreter that runs ComfyUI (default: the one running pytest).

One ComfyUI process serves the whole session: ``--cpu --listen 127.0.0.1 --port <free>`` with
``--base-directory`` a temp folder whose ``custom_nodes/comfyui-imgedit`` links to this checkout
(nothing is written into the user's ComfyUI), tiny random-weight models under a temp folder named
by ``--extra-model-paths-config``, and every ``IMGEDIT_*_URL`` pointed at the pack's offline
sandbox with a fake key. The process is always stopped at the end of the session.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from comfyui_client import (  # noqa: E402
    NODE_IDS,
    PACK_ROOT,
    ComfyClient,
    ComfyServer,
    extra_model_paths_yaml,
)

#: The fake key every remote service gets; the leak test searches for it everywhere.
TEST_KEY = "imgedit-itest-" + uuid.uuid4().hex
KEY_ENV = ("DEZGO_API_KEY", "MODELSLAB_API_KEY", "IMAGEPIPELINE_API_KEY")
URL_ENV = {
    "dezgo": "IMGEDIT_DEZGO_URL",
    "sdapi": "IMGEDIT_SDAPI_URL",
    "modelslab": "IMGEDIT_MODELSLAB_URL",
    "imagepipeline": "IMGEDIT_IMAGEPIPELINE_URL",
}


def comfyui_dir() -> Optional[Path]:
    value = os.environ.get("COMFYUI_DIR", "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    return path if (path / "main.py").is_file() else None


def pytest_collection_modifyitems(config, items):
    reason = None
    if not os.environ.get("COMFYUI_DIR", "").strip():
        reason = "COMFYUI_DIR is not set: these tests need a ComfyUI checkout (see docs/integration-tests.md)"
    elif comfyui_dir() is None:
        reason = f"COMFYUI_DIR={os.environ['COMFYUI_DIR']} has no main.py: not a ComfyUI checkout"
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.comfyui)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def _load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def sample_images(folder: Path) -> dict[str, Path]:
    """The pack's sample pictures (``assets/``), or generated stand-ins while they do not exist yet."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("sample.png", "sample_mask.png"):
        shipped = PACK_ROOT / "assets" / name
        target = folder / name
        if shipped.is_file():
            shutil.copyfile(shipped, target)
        elif name == "sample.png":
            img = Image.new("RGB", (160, 120), (40, 90, 160))
            draw = ImageDraw.Draw(img)
            draw.rectangle((0, 80, 160, 120), fill=(60, 140, 60))
            draw.ellipse((60, 30, 100, 70), fill=(230, 200, 60))
            img.save(target)
        else:
            img = Image.new("L", (160, 120), 0)
            ImageDraw.Draw(img).ellipse((55, 25, 105, 75), fill=255)
            img.save(target)
        out[name] = target
    return out


@dataclass
class ComfySession:
    server: ComfyServer
    client: ComfyClient
    object_info: dict
    test_key: str
    samples: dict[str, Path]
    models: dict = field(default_factory=dict)
    sandbox: Any = None
    extras: dict = field(default_factory=dict)

    def log(self) -> str:
        return self.server.log_text()


def _start_sandbox(key: str):
    """The pack's offline provider simulator, when it exists; returns (sandbox or None, env)."""
    try:
        from comfyui_imgedit.sandbox import SandboxServer  # type: ignore
    except Exception:
        return None, {}
    sandbox = SandboxServer(key=key)
    sandbox.__enter__()
    env = {}
    urls = getattr(sandbox, "urls", None)
    if callable(urls):
        urls = urls()
    env_fn = getattr(sandbox, "env", None)
    if callable(env_fn):
        env.update({k: v for k, v in env_fn().items() if k.startswith("IMGEDIT_")})
    elif isinstance(urls, dict):
        for service, var in URL_ENV.items():
            if service in urls:
                env[var] = urls[service]
    else:
        base = getattr(sandbox, "url", None) or getattr(sandbox, "base_url", None)
        if base:
            for service, var in URL_ENV.items():
                env[var] = f"{str(base).rstrip('/')}/{service}"
    return sandbox, env


@pytest.fixture(scope="session")
def comfy(tmp_path_factory) -> ComfySession:
    comfy_root = comfyui_dir()
    if comfy_root is None:
        pytest.skip("COMFYUI_DIR does not name a ComfyUI checkout")
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    work = tmp_path_factory.mktemp("comfyui")
    base = work / "base"

    models: dict = {}
    models_root = work / "models"
    tiny = PACK_ROOT / "tests" / "tiny_models.py"
    if tiny.is_file():
        models = _load_module("imgedit_tiny_models", tiny).build_tiny_models(models_root) or {}
    models_root.mkdir(parents=True, exist_ok=True)
    config = extra_model_paths_yaml(models_root, work / "extra_model_paths.yaml")

    sandbox, sandbox_env = _start_sandbox(TEST_KEY)
    env = {k: v for k, v in os.environ.items()
           if not (k in KEY_ENV or k.startswith("IMGEDIT_") or k in ("COMFYUI_DIR",))}
    env.update({name: TEST_KEY for name in KEY_ENV})
    env.update(sandbox_env)

    server = ComfyServer(comfy_root, base, python=python, env=env,
                         extra_args=["--extra-model-paths-config", str(config)])
    samples = sample_images(base / "input")
    server.start()
    try:
        client = server.client(timeout=120)
        session = ComfySession(server=server, client=client, object_info=client.object_info(),
                               test_key=TEST_KEY, samples=samples, models=models, sandbox=sandbox,
                               extras={"work": work, "models_root": models_root, "sandbox_env": sandbox_env})
        yield session
    finally:
        server.stop()
        if sandbox is not None:
            try:
                sandbox.__exit__(None, None, None)
            except Exception:
                pass
        keep = os.environ.get("IMGEDIT_KEEP_COMFY_LOG")
        if keep:
            shutil.copyfile(server.log_path, keep)
