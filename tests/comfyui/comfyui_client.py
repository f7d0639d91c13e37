"""HTTP and websocket client for a real ComfyUI server (standard library only, urllib).

* :class:`ComfyClient` wraps the HTTP API: ``/object_info``, ``/prompt``, ``/history/{id}``, ``/view``,
  ``/upload/image``, ``/settings``;
* :class:`ComfySocket` listens on ``/ws`` (JSON messages and binary preview frames).

The server process is :mod:`comfyui_server`, a whole test session :mod:`comfyui_session`, the
UI -> API workflow converter :mod:`comfyui_workflow`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Optional


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
