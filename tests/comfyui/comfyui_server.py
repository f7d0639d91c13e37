"""A real ComfyUI process on 127.0.0.1 with a private base directory, always stopped.

:class:`ComfyServer` starts ``main.py --cpu --listen 127.0.0.1 --port <free>`` in its own process
group; :func:`import_times` parses ComfyUI's "Import times for custom nodes" block.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Optional

from comfyui_client import ComfyClient, ComfyError

PACK_ROOT = Path(__file__).resolve().parents[2]
PACK_FOLDER_NAME = "comfyui-imgedit"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_IMPORT_LINE = re.compile(r"^\s*(?P<secs>\d+(?:\.\d+)?) seconds(?P<failed> \(IMPORT FAILED\))?: (?P<path>.+?)\s*$")


def import_times(log_text: str) -> dict[str, tuple[float, bool]]:
    """``{path: (seconds, import_ok)}`` from the "Import times for custom nodes" block(s)."""
    found: dict[str, tuple[float, bool]] = {}
    in_block = False
    for line in log_text.splitlines():
        if "Import times for custom nodes" in line:
            in_block = True
            continue
        if in_block:
            match = _IMPORT_LINE.match(line)
            if match:
                found[match["path"]] = (float(match["secs"]), not match["failed"])
            elif line.strip() == "" and found:
                in_block = False
    return found


class ComfyServer:
    """A ComfyUI process on 127.0.0.1 with a private base directory; use as a context manager.

    ``base`` gets ``custom_nodes/comfyui-imgedit`` (a symlink to the pack), ``input``, ``output``,
    ``user``, ``temp`` and ``models``; the user's checkout is never written to.
    """

    def __init__(self, comfy_dir: Path, base: Path, python: Optional[str] = None,
                 env: Optional[dict] = None, extra_args: Iterable[str] = (),
                 pack_root: Path = PACK_ROOT, port: Optional[int] = None, startup_timeout: float = 240.0):
        self.comfy_dir = Path(comfy_dir)
        self.base = Path(base)
        self.python = python or sys.executable
        self.env = dict(os.environ if env is None else env)
        self.extra_args = list(extra_args)
        self.pack_root = Path(pack_root)
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.log_path = self.base / "comfyui.log"
        self.proc: Optional[subprocess.Popen] = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def input_dir(self) -> Path:
        return self.base / "input"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def user_dir(self) -> Path:
        return self.base / "user"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> "ComfyServer":
        for sub in ("custom_nodes", "input", "output", "user", "temp", "models"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        link = self.base / "custom_nodes" / PACK_FOLDER_NAME
        if not link.exists():
            link.symlink_to(self.pack_root, target_is_directory=True)
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base), *self.extra_args]
        env = dict(self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=self.comfy_dir, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        client = ComfyClient(self.url, timeout=5)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise ComfyError(f"ComfyUI exited with {self.proc.returncode} during start; log tail:\n"
                                 + self.log_text()[-4000:])
            try:
                client.get("/system_stats")
                return self
            except (OSError, ComfyError):
                time.sleep(0.5)
        self.stop()
        raise ComfyError(f"ComfyUI did not answer within {self.startup_timeout:.0f} s; log tail:\n"
                         + self.log_text()[-4000:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def client(self, timeout: float = 60.0) -> ComfyClient:
        return ComfyClient(self.url, timeout=timeout)

    def __enter__(self) -> "ComfyServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def extra_model_paths_yaml(models_root: Path, path: Path, name: str = "imgedit_tiny") -> Path:
    """Write an ``--extra-model-paths-config`` file mapping ComfyUI's folders into ``models_root``."""
    folders = ["checkpoints", "loras", "diffusers", "vae", "embeddings", "diffusion_models"]
    lines = [f"{name}:", f"    base_path: {json.dumps(str(models_root))}"]
    lines += [f"    {folder}: {folder}" for folder in folders]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
