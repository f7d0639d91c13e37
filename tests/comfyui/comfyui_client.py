"""A small client for a real ComfyUI server, used by the integration tests and tools.

Standard library only (urllib), so it runs in any Python that runs pytest:

* :class:`ComfyServer` starts ``main.py --cpu --listen 127.0.0.1 --port <free>`` in its own process
  group with a private base directory (custom_nodes, input, output, user, temp) and always stops it;
* :class:`ComfyClient` wraps the HTTP API: ``/object_info``, ``/prompt``, ``/history/{id}``, ``/view``,
  ``/upload/image``, ``/settings``;
* :class:`ComfySocket` listens on ``/ws`` (JSON messages and binary preview frames);
* :func:`ui_to_api` converts a UI-format workflow (what the frontend saves) into the API format
  ``/prompt`` takes, using ``/object_info`` for each node's widget order;
* :func:`import_times` parses ComfyUI's "Import times for custom nodes" block.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

PACK_ROOT = Path(__file__).resolve().parents[2]
PACK_FOLDER_NAME = "comfyui-imgedit"
#: The pack's node ids (a public contract: saved in users' workflows).
NODE_IDS = [
    "ImgEditGrowMask", "ImgEditFeatherMask", "ImgEditMaskFromImage", "ImgEditCropToMask", "ImgEditStitch",
    "ImgEditCropLike", "ImgEditFillMasked",
    "ImgEditDezgo", "ImgEditSDAPI", "ImgEditModelsLab", "ImgEditImagePipeline", "ImgEditLocalDiffusers",
    "ImgEditComfyModel", "ImgEditImg2Img", "ImgEditInpaint",
]

#: Input types the frontend shows as widgets (anything else is a link-only socket).
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
#: UI-only node types that never reach the API prompt.
UI_ONLY_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyError(RuntimeError):
    """ComfyUI answered with an error (validation, execution) or did not answer in time."""


# --------------------------------------------------------------------------------------------------
# HTTP client


class ComfyClient:
    def __init__(self, base_url: str, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    # raw requests ---------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[dict] = None) -> tuple[int, bytes, dict]:
        req = urllib.request.Request(self.base_url + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers or {})

    def get(self, path: str) -> bytes:
        status, data, _ = self.request("GET", path)
        if status != 200:
            raise ComfyError(f"GET {path} -> HTTP {status}: {data[:500]!r}")
        return data

    def get_json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def post_json(self, path: str, payload: Any) -> tuple[int, Any]:
        status, data, _ = self.request("POST", path, json.dumps(payload).encode(),
                                       {"Content-Type": "application/json"})
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data.decode("utf-8", "replace")

    # API ------------------------------------------------------------------------------------------
    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def queue_prompt(self, prompt: dict, extra_data: Optional[dict] = None) -> str:
        payload = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            payload["extra_data"] = extra_data
        status, answer = self.post_json("/prompt", payload)
        if status != 200 or not isinstance(answer, dict) or "prompt_id" not in answer:
            raise ComfyError(f"/prompt refused the workflow (HTTP {status}): {json.dumps(answer)[:3000]}")
        if answer.get("node_errors"):
            raise ComfyError(f"/prompt node errors: {json.dumps(answer['node_errors'])[:3000]}")
        return answer["prompt_id"]

    def history(self, prompt_id: Optional[str] = None) -> dict:
        return self.get_json(f"/history/{prompt_id}" if prompt_id else "/history")

    def wait(self, prompt_id: str, timeout: float = 300.0, poll: float = 0.25) -> dict:
        """Poll ``/history/{id}`` until the prompt finished; return its history entry.

        Raises :class:`ComfyError` with ComfyUI's own message when execution failed.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.history(prompt_id).get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                status = entry["status"]
                if status.get("status_str") == "error" or not status.get("completed"):
                    raise ComfyError(f"prompt {prompt_id} failed: {json.dumps(status.get('messages'))[:4000]}")
                return entry
            time.sleep(poll)
        raise ComfyError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")

    def run(self, prompt: dict, timeout: float = 300.0) -> dict:
        """Queue ``prompt``, wait for it, return its history entry."""
        return self.wait(self.queue_prompt(prompt), timeout=timeout)

    def view(self, filename: str, subfolder: str = "", folder_type: str = "output") -> bytes:
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": folder_type})
        return self.get(f"/view?{query}")

    def output_images(self, entry: dict) -> list[dict]:
        """Every ``{"filename", "subfolder", "type", "node"}`` an executed prompt reported."""
        found = []
        for node_id, out in (entry.get("outputs") or {}).items():
            for image in out.get("images", []) or []:
                found.append({**image, "node": node_id})
        return found

    def socket(self) -> "ComfySocket":
        """Listen on ``/ws`` as this client (previews of its prompts come only to it)."""
        return ComfySocket(self.base_url, self.client_id)

    def upload_image(self, path: Path, name: Optional[str] = None, overwrite: bool = True) -> str:
        """POST ``/upload/image`` (multipart) and return the name ComfyUI stored it under."""
        boundary = uuid.uuid4().hex
        name = name or Path(path).name
        parts = [
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + Path(path).read_bytes() + b"\r\n",
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\n"
            f"{'true' if overwrite else 'false'}\r\n".encode(),
            f"--{boundary}--\r\n".encode(),
        ]
        status, data, _ = self.request("POST", "/upload/image", b"".join(parts),
                                       {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 200:
            raise ComfyError(f"/upload/image -> HTTP {status}: {data[:300]!r}")
        return json.loads(data)["name"]


class ComfySocket:
    """A listener on ComfyUI's ``/ws?clientId=...`` (RFC 6455 client, standard library only).

    A thread collects every message: :attr:`messages` the JSON ones, :attr:`binary` the binary
    frames (``>I`` event type + payload; 1 is a preview image: ``>I`` image type, 1 = JPEG, then
    the image). Use as a context manager; it closes the connection on exit.
    """

    PREVIEW_IMAGE = 1

    def __init__(self, base_url: str, client_id: str, timeout: float = 10.0):
        url = urllib.parse.urlparse(base_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ComfyError("ComfyUI closed /ws during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ComfyError(f"/ws refused the upgrade: {head[:200]!r}")
        self.sock.settimeout(None)
        self.messages: list[dict] = []
        self.binary: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_all, name="comfy-ws", daemon=True)
        self._reader.start()

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _read_all(self) -> None:
        try:
            while True:
                first, second = self._exact(2)
                opcode, length = first & 0x0F, second & 0x7F
                if length == 126:
                    (length,) = struct.unpack(">H", self._exact(2))
                elif length == 127:
                    (length,) = struct.unpack(">Q", self._exact(8))
                payload = self._exact(length)  # server frames are never masked
                with self._lock:
                    if opcode == 1:
                        self.messages.append(json.loads(payload))
                    elif opcode == 2:
                        self.binary.append((struct.unpack(">I", payload[:4])[0], payload[4:]))
                    elif opcode == 8:
                        return
        except (OSError, EOFError, ValueError):
            return

    def previews(self) -> list[bytes]:
        """The images of the preview frames received so far (JPEG or PNG bytes, image type dropped)."""
        with self._lock:
            return [data[4:] for kind, data in self.binary if kind == self.PREVIEW_IMAGE]

    def of_type(self, kind: str) -> list[dict]:
        with self._lock:
            return [m.get("data", {}) for m in self.messages if m.get("type") == kind]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\x88\x80" + os.urandom(4))  # a masked, empty close frame
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._reader.join(timeout=5)

    def __enter__(self) -> "ComfySocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------
# UI workflow -> API prompt


def _input_specs(info: dict) -> list[tuple[str, Any, dict]]:
    """``(name, type, options)`` for every declared input, in the order the frontend builds widgets."""
    inputs = info.get("input", {})
    order = info.get("input_order") or {k: list(v) for k, v in inputs.items()}
    specs = []
    for group in ("required", "optional"):
        for name in order.get(group, []):
            spec = inputs.get(group, {}).get(name)
            if spec is None:
                continue
            kind = spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs.append((name, kind, options))
    return specs


def _is_widget(kind: Any, options: dict) -> bool:
    if options.get("forceInput") or options.get("rawLink"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _has_control(name: str, kind: Any, options: dict) -> bool:
    """The frontend adds a ``control_after_generate`` widget (saved, never sent) after these."""
    if options.get("control_after_generate"):
        return True
    return kind == "INT" and name in ("seed", "noise_seed")


def widget_slots(info: dict) -> list[tuple[str, str]]:
    """The positional layout of a node's ``widgets_values``: ``(input name, "value"|"control"|"upload")``."""
    slots = []
    for name, kind, options in _input_specs(info):
        if not _is_widget(kind, options):
            continue
        slots.append((name, "value"))
        if _has_control(name, kind, options):
            slots.append((name, "control"))
        if options.get("image_upload") or options.get("video_upload") or options.get("animated_image_upload"):
            slots.append((name, "upload"))
    return slots


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow into the API format of ``POST /prompt``.

    ``widgets_values`` are positional, one per widget in ``/object_info`` input order (required,
    then optional), including the ``control_after_generate`` value after seed-like INTs and the
    upload button's value after image-upload combos; a linked input takes no widget value. Links
    ``[id, from_node, from_slot, to_node, to_slot, type]`` become ``[str(from_node), from_slot]``.
    Muted (mode 2) and UI-only nodes are dropped; bypassed nodes (mode 4) are not supported.
    """
    links = {link[0]: link for link in workflow.get("links", [])}
    nodes = {node["id"]: node for node in workflow.get("nodes", [])}
    prompt: dict[str, dict] = {}
    for node in workflow.get("nodes", []):
        kind = node["type"]
        if kind in UI_ONLY_TYPES or node.get("mode", 0) == 2:
            continue
        if node.get("mode", 0) == 4:
            raise ValueError(f"node {node['id']} ({kind}) is bypassed; the converter does not support bypass")
        if kind not in object_info:
            raise ValueError(f"node {node['id']} has type {kind!r}, which this ComfyUI does not know")
        info = object_info[kind]
        inputs: dict[str, Any] = {}

        linked = {}
        for slot in node.get("inputs", []) or []:
            if slot.get("link") is not None:
                linked[slot["name"]] = slot["link"]

        values = node.get("widgets_values", [])
        slots = widget_slots(info)
        if isinstance(values, dict):  # some DOM widgets save a name -> value map
            for name, _ in slots:
                if name in values:
                    inputs[name] = values[name]
        else:
            # the upload button's value is optional in older saves: drop those slots if counts say so
            if len(values) != len(slots):
                no_upload = [s for s in slots if s[1] != "upload"]
                if len(values) == len(no_upload):
                    slots = no_upload
                else:
                    raise ValueError(
                        f"node {node['id']} ({kind}) has {len(values)} widget values, expected {len(slots)}: "
                        f"{[f'{n}:{k}' for n, k in slots]}")
            for (name, role), value in zip(slots, values):
                if role == "value":
                    inputs[name] = value

        for name, link_id in linked.items():
            link = links.get(link_id)
            if link is None:
                raise ValueError(f"node {node['id']} input {name!r} names missing link {link_id}")
            _, origin, origin_slot, target, _target_slot, _type = link[:6]
            if target != node["id"]:
                raise ValueError(f"link {link_id} ends at node {target}, not {node['id']}")
            source = nodes.get(origin)
            if source is None or source.get("mode", 0) == 2 or source["type"] in UI_ONLY_TYPES:
                raise ValueError(f"node {node['id']} input {name!r} comes from an unsupported node {origin}")
            inputs[name] = [str(origin), origin_slot]

        prompt[str(node["id"])] = {
            "class_type": kind,
            "inputs": inputs,
            "_meta": {"title": node.get("title") or info.get("display_name") or kind},
        }
    return prompt


def api_node(object_info: dict, class_type: str, **inputs) -> dict:
    """An API-format node with every required widget input not given filled from its default."""
    info = object_info[class_type]
    filled = {}
    for name, spec in info.get("input", {}).get("required", {}).items():
        if name in inputs:
            continue
        kind, options = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
        if isinstance(kind, list):
            filled[name] = options.get("default", kind[0] if kind else None)
        elif kind == "COMBO":
            filled[name] = options.get("default", (options.get("options") or [None])[0])
        elif "default" in options:
            filled[name] = options["default"]
    filled.update(inputs)
    return {"class_type": class_type, "inputs": filled}


# --------------------------------------------------------------------------------------------------
# Server process

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
    folders = ["checkpoints", "loras", "diffusers", "vae", "embeddings"]
    lines = [f"{name}:", f"    base_path: {json.dumps(str(models_root))}"]
    lines += [f"    {folder}: {folder}" for folder in folders]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def output_index(object_info: dict, class_type: str, name: str) -> int:
    """The slot of output ``name`` (its ``output_name``, case-insensitive) on ``class_type``."""
    names = [str(n).lower() for n in object_info[class_type].get("output_name", [])]
    try:
        return names.index(name.lower())
    except ValueError:
        raise KeyError(f"{class_type} has no output {name!r}; it has {names}") from None


# --------------------------------------------------------------------------------------------------
# A whole test session: tiny models + sandbox + ComfyUI

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
    config = extra_model_paths_yaml(models_root, work / "extra_model_paths.yaml")

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


def adapt_for_test(prompt: dict, object_info: dict) -> dict:
    """Swap COMBO values this ComfyUI lacks (the examples name real models) for what it has:
    ``tiny-sd-inpaint`` for a model whose name says inpaint, ``tiny-sd`` otherwise (for ``ckpt_name``:
    ``tiny-sd15-inpaint.safetensors`` / ``tiny-sd15.safetensors``), else the first option."""
    out = json.loads(json.dumps(prompt))
    for node in out.values():
        info = object_info.get(node["class_type"], {})
        specs = {**info.get("input", {}).get("required", {}), **info.get("input", {}).get("optional", {})}
        for name, value in list(node["inputs"].items()):
            spec = specs.get(name)
            if spec is None or isinstance(value, list):
                continue
            options = spec[0] if isinstance(spec[0], list) else (
                spec[1].get("options") if spec[0] == "COMBO" and len(spec) > 1 else None)
            if not options or value in options:
                continue
            wanted = "tiny-sd-inpaint" if "inpaint" in str(value).lower() else "tiny-sd"
            if name == "ckpt_name":  # ComfyUI's own loaders get the tiny SD1.5 checkpoints
                wanted = wanted.replace("tiny-sd", "tiny-sd15") + ".safetensors"
            node["inputs"][name] = wanted if wanted in options else options[0]
    return out
