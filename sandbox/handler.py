"""The sandbox's HTTP plumbing: routing, scripted answers, Dezgo, output files (queued jobs: :mod:`.queued`)."""

from __future__ import annotations

import json
import re
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import parse_qs, urlsplit

from ..nodes.core.services import SERVICES
from .queued import QueuedJobs
from .records import BadInput, Canned, Recorded, Stopped

if TYPE_CHECKING:
    from .simulator import SandboxServer

PREFIXES = tuple(SERVICES)


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # many concurrent clients must not wait on a full listen backlog
    daemon_threads = True
    block_on_close = False


class Handler(QueuedJobs, BaseHTTPRequestHandler):
    sandbox: "SandboxServer"
    protocol_version = "HTTP/1.1"
    server_version = "ImgEditSandbox/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    # -- plumbing ----------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        sb = self.sandbox
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        raw_path = urlsplit(self.path).path
        path = raw_path
        segments = [s for s in path.split("/") if s]
        if segments and segments[0] in PREFIXES:
            path = "/" + "/".join(segments[1:])
        endpoint, route, params = self._route(method, path)
        record = Recorded(method=method, path=self.path, endpoint=endpoint, host=self.headers.get("Host", ""),
                          headers={k: v for k, v in self.headers.items()}, body=body, time=time.time())
        ctype = self.headers.get("Content-Type", "")
        try:
            if "json" in ctype and body:
                record.json = json.loads(body)
            elif ctype.startswith("multipart/form-data"):
                record.form, record.files = parse_multipart(ctype, body)
            elif ctype.startswith("application/x-www-form-urlencoded"):
                record.form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        except ValueError:
            record.json = None
        with sb._lock:  # noqa: SLF001
            sb.requests.append(record)
        try:
            canned = sb._next_script(endpoint)  # noqa: SLF001
            if canned is not None:
                if canned.delay:
                    sb._sleep(canned.delay)  # noqa: SLF001
                if canned.close:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(2)
                    except OSError:
                        pass
                    return
                if canned.charged and route is not None:
                    self._discard_answer = True  # the work happens, its answer is replaced
                    route(self, record, **params)
                    self._discard_answer = False
                if not canned.passthrough:
                    self._send_canned(canned)
                    return
            if route is None:
                self._send_json(404, {"status": "error", "message": f"no such endpoint: {method} {raw_path}"})
                return
            route(self, record, **params)
        except Stopped:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, method: str, path: str):
        h = Handler
        if method == "POST":
            if path in ("/image2image", "/inpainting"):
                return f"dezgo.{path[1:]}", h._dezgo, {"inpaint": path == "/inpainting"}
            if path == "/api/v6/base64_to_url":
                return "modelslab.upload", h._upload, {}
            for service, api in (("modelslab", "/api/v6/images"), ("sdapi", "/api/v3")):
                m = re.fullmatch(api + r"/(img2img|inpaint)", path)
                if m:
                    return f"{service}.{m.group(1)}", h._queued_submit, {"service": service,
                                                                         "inpaint": m.group(1) == "inpaint"}
                m = re.fullmatch(api + r"/fetch(?:/([^/]+))?", path)
                if m:
                    return f"{service}.fetch", h._queued_fetch, {"service": service, "job_id": m.group(1)}
            m = re.fullmatch(r"/(sdxl|sd)/(image2image|inpainting)/v1", path)
            if m:
                return "imagepipeline.submit", h._queued_submit, {"service": "imagepipeline",
                                                                   "inpaint": m.group(2) == "inpainting"}
        if method == "GET":
            m = re.fullmatch(r"/(sdxl|sd)/(image2image|inpainting)/v1/status/([^/]+)", path)
            if m:
                return "imagepipeline.status", h._queued_fetch, {"service": "imagepipeline", "job_id": m.group(3)}
            m = re.fullmatch(r"/(files|uploads)/([^/]+)", path)
            if m:
                return m.group(1), h._file, {"name": m.group(2)}
        return "unknown", None, {}

    _discard_answer = False

    def _send(self, status: int, body: bytes, ctype: str, headers: Optional[dict[str, str]] = None) -> None:
        if self._discard_answer:
            return
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, data: Any, headers: Optional[dict[str, str]] = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", headers)

    def _send_canned(self, canned: Canned) -> None:
        if canned.body is not None:
            self._send(canned.status, canned.body, canned.content_type or "application/octet-stream", canned.headers)
        else:
            self._send_json(canned.status, canned.json if canned.json is not None else {}, canned.headers)

    def _num(self, value: Any) -> Any:
        return str(value) if self.sandbox.numbers_as_strings else value

    # -- Dezgo -------------------------------------------------------------------------------

    def _dezgo(self, record: Recorded, inpaint: bool) -> None:
        sb = self.sandbox
        if self.headers.get("X-Dezgo-Key") != sb.keys["dezgo"]:
            self._send_json(401, {"message": "Invalid or missing API key (X-Dezgo-Key)"})
            return
        fields: dict[str, Any] = dict(record.form)
        images: dict[str, Any] = dict(record.files)
        if isinstance(record.json, dict):
            for name, value in record.json.items():
                (images if name in ("init_image", "mask_image") else fields)[name] = value
        try:
            if not str(fields.get("prompt", "")).strip():
                raise BadInput("prompt", "The prompt field is required.")
            image = sb._load_image(images.get("init_image"), "init_image")  # noqa: SLF001
            mask = sb._load_image(images.get("mask_image"), "mask_image") if inpaint else None  # noqa: SLF001
            if mask is not None and mask.size != image.size:
                raise BadInput("mask_image", "must have the same size as init_image")
            strength = float(fields.get("strength", 0.75))
            if not 0.0 <= strength <= 1.0:
                raise BadInput("strength", "must be between 0 and 1")
            steps = int(float(fields.get("steps", 30)))
            if not 10 <= steps <= 150:
                raise BadInput("steps", "must be between 10 and 150")
            fmt = str(fields.get("format", "png"))
            if fmt not in ("png", "jpg", "webp"):
                raise BadInput("format", "must be png, jpg or webp")
        except BadInput as bad:
            self._send_json(400, {"message": {bad.field: [bad.problem]}})
            return
        except ValueError:
            self._send_json(400, {"message": "a numeric field is not a number"})
            return
        if sb.sync_delay:
            sb._sleep(sb.sync_delay)  # noqa: SLF001
        seed = int(fields["seed"]) if str(fields.get("seed", "")).strip() else sb._new_seed()  # noqa: SLF001
        image = image.convert("RGB")
        if max(image.size) > 1024:  # Dezgo scales the longest edge to 1024 and rounds to multiples of 8
            scale = 1024 / max(image.size)
            size = (max(8, int(image.width * scale) // 8 * 8), max(8, int(image.height * scale) // 8 * 8))
            image = image.resize(size)
            mask = mask.resize(size) if mask is not None else None
        data, ctype = sb._results(image, mask, seed, strength, 1, fmt)[0]  # noqa: SLF001
        cost = sb._charge(image.width, image.height, steps)  # noqa: SLF001
        headers = {
            "x-input-seed": str(seed),
            "x-dezgo-job-id": f"dz-{next(sb._ids)}",  # noqa: SLF001
            "x-dezgo-job-amount-usd": f"{cost:.6f}",
            "x-dezgo-balance-total-usd": f"{sb.balance_usd:.6f}",
        }
        self._send(200, data, ctype, headers)

    def _file(self, record: Recorded, name: str) -> None:
        sb = self.sandbox
        with sb._lock:  # noqa: SLF001
            stored = sb._files.get(name)  # noqa: SLF001
            ready = time.monotonic() >= sb._file_ready.get(name, 0.0)  # noqa: SLF001
            if stored is not None and ready and name.startswith("out"):
                sb._file_gets[name] = sb._file_gets.get(name, 0) + 1  # noqa: SLF001
                early = sb._file_gets[name] <= sb.not_ready_gets  # noqa: SLF001
            else:
                early = False
        if stored is None or not ready or early:
            self._send(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
            return
        self._send(200, stored[0], stored[1])


def parse_multipart(ctype: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + body)
    form: dict[str, str] = {}
    files: dict[str, bytes] = {}
    if not message.is_multipart():
        raise ValueError("not multipart")
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[str(name)] = payload
        else:
            form[str(name)] = payload.decode("utf-8", "replace")
    return form, files


__all__ = ["Server", "Handler", "PREFIXES", "parse_multipart"]
