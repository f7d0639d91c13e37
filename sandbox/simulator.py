"""A loopback server that speaks Dezgo, Stable Diffusion API v3, ModelsLab v6 and ImagePipeline (legacy).

It makes a deterministic, clearly visible edit (img2img: the picture tinted toward a colour derived
from the seed; inpaint: the masked region inverted and tinted, the rest kept), checks the key the
way each service does, and can be scripted to misbehave for tests::

    with SandboxServer(key="test-key-not-real", job_delay=0.3) as sb:
        with sb.patch_env():            # IMGEDIT_*_URL and *_API_KEY point here
            ...
        sb.script("modelslab.img2img", Canned(429, {"status": "error", "message": "Rate limit exceeded", "retry_after": 1}))

Only stdlib, numpy and Pillow; it never makes an outbound request (an ``init_image`` link is
served from its own uploads/outputs, a data: URI or raw base64; anything else is "Unable to fetch").

Endpoints (logical names for :meth:`SandboxServer.script`), each also under a ``/dezgo``,
``/sdapi``, ``/modelslab`` or ``/imagepipeline`` prefix (what :meth:`environ` hands out):

- ``dezgo.image2image`` ``POST /image2image``; ``dezgo.inpainting`` ``POST /inpainting``
- ``modelslab.img2img`` / ``modelslab.inpaint`` ``POST /api/v6/images/img2img|inpaint``;
  ``modelslab.fetch`` ``POST /api/v6/images/fetch[/{id}]``; ``modelslab.upload`` ``POST /api/v6/base64_to_url``
- ``sdapi.img2img`` / ``sdapi.inpaint`` ``POST /api/v3/img2img|inpaint``; ``sdapi.fetch`` ``POST /api/v3/fetch[/{id}]``
- ``imagepipeline.submit`` ``POST /{sdxl,sd}/{image2image,inpainting}/v1``;
  ``imagepipeline.status`` ``GET .../status/{id}``
- ``files`` ``GET /files/{name}`` (outputs), ``uploads`` ``GET /uploads/{name}``
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import itertools
import json
import os
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

from ..nodes.core.services import KEY_ENV, SERVICES

DEFAULT_KEY = "sandbox-key-not-real"
PREFIXES = tuple(SERVICES)
URL_ENV = {name: row.url_env for name, row in SERVICES.items()}
SD_V3_STEPS = (21, 31, 41, 51)


@dataclass
class Canned:
    """One scripted answer. ``passthrough``: wait ``delay`` then answer normally (a slow answer);
    ``close``: drop the connection without answering."""

    status: int = 200
    json: Any = None
    body: Optional[bytes] = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    passthrough: bool = False
    close: bool = False
    content_type: Optional[str] = None


@dataclass
class Recorded:
    """One request as the sandbox saw it (for assertions)."""

    method: str
    path: str
    endpoint: str
    host: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    time: float = 0.0

    def text(self) -> str:
        """Everything sent, as text (headers, path and body), to search for leaked secrets."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}\n{head}\n\n{self.body.decode('latin-1')}"


@dataclass
class _Job:
    id: int
    service: str
    ready_at: float
    files: list[str]
    seed: int
    nsfw: bool
    width: int
    height: int
    steps: int
    prompt: str


class _Stopped(Exception):
    pass


# --------------------------------------------------------------------------------------------
# The visible edit


def seed_colour(seed: int) -> np.ndarray:
    digest = hashlib.sha256(str(int(seed)).encode()).digest()
    return np.array([digest[0], digest[1], digest[2]], dtype=np.float32)


def render(image: Image.Image, mask: Optional[Image.Image], seed: int, strength: float) -> Image.Image:
    """img2img: tint toward the seed colour by 0.25 + 0.5 * strength; inpaint: invert + tint inside the mask."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    colour = seed_colour(seed)
    if mask is None:
        amount = 0.25 + 0.5 * max(0.0, min(1.0, float(strength)))
        out = pixels * (1.0 - amount) + colour * amount
    else:
        weight = np.asarray(mask.convert("L"), dtype=np.float32)[..., None] / 255.0
        edited = 0.5 * (255.0 - pixels) + 0.5 * colour
        out = pixels * (1.0 - weight) + edited * weight
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")


def encode(picture: Image.Image, fmt: str = "png") -> tuple[bytes, str]:
    buffer = io.BytesIO()
    fmt = fmt.lower()
    if fmt in ("jpg", "jpeg"):
        picture.save(buffer, format="JPEG", quality=95)
        return buffer.getvalue(), "image/jpeg"
    if fmt == "webp":
        picture.save(buffer, format="WEBP", lossless=True)
        return buffer.getvalue(), "image/webp"
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), "image/png"


class _BadInput(Exception):
    def __init__(self, field_name: str, problem: str):
        super().__init__(problem)
        self.field = field_name
        self.problem = problem


# --------------------------------------------------------------------------------------------
# The server


class SandboxServer:
    """The sandbox. ``key`` is accepted for every service (``keys`` maps service -> key to differ).

    Behaviour knobs (attributes, change them any time):

    - ``sync_delay``: seconds Dezgo takes to answer.
    - ``job_delay``: seconds a queued job (ModelsLab, SD API v3, ImagePipeline) runs; 0 = answers
      ``success`` at once. ``eta``: the eta reported (None = the true remaining time).
    - ``processing_forever``: jobs never finish.
    - ``nsfw``: results are blacked out and flagged ``nsfw_content_detected``.
    - ``not_ready_gets``: each output file answers 404 that many times after the job is done (output
      files always answer 404 before it is).
    - ``output_empty_string``: processing answers carry ``"output": ""``; ``numbers_as_strings``:
      ``id``, ``eta`` and ``meta.seed`` are strings; ``use_messege``: processing answers spell it ``messege``.
    - ``output_scale``: results are resized by this factor (a provider ignoring the size).
    - ``base64_output``: ModelsLab/v3 outputs are links whose body is base64 text.
    """

    def __init__(
        self,
        key: str = DEFAULT_KEY,
        *,
        keys: Optional[dict[str, str]] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        job_delay: float = 0.0,
        eta: Optional[float] = None,
        sync_delay: float = 0.0,
        balance_usd: float = 10.0,
    ):
        self.keys = {"dezgo": key, "modelslab": key, "imagepipeline": key}
        self.keys.update(keys or {})
        self.host = host
        self._port = int(port)
        self.job_delay = float(job_delay)
        self.eta = eta
        self.sync_delay = float(sync_delay)
        self.balance_usd = float(balance_usd)
        self.processing_forever = False
        self.nsfw = False
        self.not_ready_gets = 0
        self.output_empty_string = False
        self.numbers_as_strings = False
        self.use_messege = True
        self.output_scale = 1.0
        self.base64_output = False
        self.requests: list[Recorded] = []
        self._scripts: dict[str, deque] = {}
        self._files: dict[str, tuple[bytes, str]] = {}
        self._file_gets: dict[str, int] = {}
        self._file_ready: dict[str, int] = {}
        self._jobs: dict[int, _Job] = {}
        self._ids = itertools.count(1000)
        self._rng = random.Random(1234)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "SandboxServer":
        if self._httpd is not None:
            return self
        handler = type("SandboxHandler", (_Handler,), {"sandbox": self})
        httpd = _Server((self.host, self._port), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="imgedit-sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the sandbox is not running; call start() or use it as a context manager")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def service_url(self, service: str) -> str:
        """The base URL to give ``IMGEDIT_<SERVICE>_URL`` (a per-service prefix of :attr:`url`)."""
        if service not in PREFIXES:
            raise ValueError(f"unknown service {service!r}")
        return f"{self.url}/{service}"

    def urls(self) -> dict[str, str]:
        """``{service: base URL}`` for the four services."""
        return {s: self.service_url(s) for s in PREFIXES}

    def environ(self) -> dict[str, str]:
        """``IMGEDIT_*_URL`` and fake ``*_API_KEY`` values pointing every client at this sandbox."""
        env = {URL_ENV[s]: self.service_url(s) for s in PREFIXES}
        env.update({KEY_ENV[s]: self.keys[s] for s in KEY_ENV})
        return env

    env = environ

    @contextlib.contextmanager
    def patch_env(self) -> Iterator[dict[str, str]]:
        """Set :meth:`environ` in ``os.environ`` for the duration of the block."""
        env = self.environ()
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def exports(self) -> str:
        """Shell lines to paste."""
        return "\n".join(f"export {name}={value}" for name, value in self.environ().items())

    # -- scripting and inspection ------------------------------------------------------------

    def script(self, endpoint: str, *answers: Canned) -> None:
        """Queue canned answers for ``endpoint`` (used in order, one per request, then normal)."""
        with self._lock:
            self._scripts.setdefault(endpoint, deque()).extend(answers)

    def add_file(self, data: bytes, content_type: str = "image/png") -> str:
        """Serve ``data`` at a link of this sandbox (a stand-in for a public image URL)."""
        name = self._store(data, content_type, "upload")
        return f"{self.url}/uploads/{name}"

    def finish_jobs(self) -> None:
        """Every queued job, ``processing_forever`` ones too, finishes now."""
        with self._lock:
            now = time.monotonic()
            for job in self._jobs.values():
                job.ready_at = min(job.ready_at, now)
                for name in job.files:
                    self._file_ready[name] = min(self._file_ready.get(name, now), now)

    def forget_jobs(self) -> None:
        """Forget every queued job (a service that purged them): fetching one answers 404."""
        with self._lock:
            self._jobs.clear()

    def clear(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests.clear()

    def requests_to(self, endpoint: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint or r.endpoint.startswith(endpoint + ".")]

    def count(self, endpoint: str) -> int:
        return len(self.requests_to(endpoint))

    def all_text(self) -> str:
        with self._lock:
            return "\n".join(r.text() for r in self.requests)

    # -- internals ---------------------------------------------------------------------------

    def _next_script(self, endpoint: str) -> Optional[Canned]:
        with self._lock:
            queue = self._scripts.get(endpoint)
            if queue:
                return queue.popleft()
        return None

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            if self._stopping.wait(min(0.05, left)):
                raise _Stopped()

    def _store(self, data: bytes, ctype: str, prefix: str, ready_at: float = 0.0) -> str:
        with self._lock:
            name = f"{prefix}-{next(self._ids)}{'.png' if ctype == 'image/png' else '.jpg' if 'jpeg' in ctype else '.webp' if 'webp' in ctype else '.txt'}"
            self._files[name] = (data, ctype)
            self._file_ready[name] = ready_at
            self._file_gets[name] = 0
        return name

    def _new_seed(self) -> int:
        with self._lock:
            return self._rng.randrange(0, 2**32)

    def _charge(self, width: int, height: int, steps: int) -> float:
        pixels = max(width * height, 512 * 512)
        usd = (pixels * 6.849e-6 - 1.133) * max(steps, 10) / 10000
        with self._lock:
            self.balance_usd = round(self.balance_usd - usd, 6)
        return round(usd, 6)

    def _load_image(self, value: Any, field_name: str) -> Image.Image:
        """An input image from bytes, a data: URI, raw base64, or a link to this sandbox."""
        if isinstance(value, (bytes, bytearray)):
            data = bytes(value)
        elif isinstance(value, str) and value.strip():
            text = value.strip()
            if text.startswith(("http://", "https://")):
                path = urlsplit(text).path
                name = path.rsplit("/", 1)[-1]
                parts = urlsplit(text)
                own = parts.port == self.port and parts.hostname in ("127.0.0.1", "localhost", self.host)
                with self._lock:
                    stored = self._files.get(name) if own else None
                if stored is None:
                    raise _BadInput(field_name, "Unable to fetch image from provided URL")
                data = stored[0]
            else:
                if text.startswith("data:"):
                    text = text.partition(",")[2]
                try:
                    data = base64.b64decode(text, validate=False)
                except (binascii.Error, ValueError):
                    raise _BadInput(field_name, "is not a link, a data URI or base64") from None
        else:
            raise _BadInput(field_name, f"The {field_name.replace('_', ' ')} field is required.")
        try:
            picture = Image.open(io.BytesIO(data))
            picture.load()
        except Exception:
            raise _BadInput(field_name, "is not an image") from None
        return picture

    def _results(self, image: Image.Image, mask: Optional[Image.Image], seed: int, strength: float,
                 samples: int, fmt: str = "png") -> list[tuple[bytes, str]]:
        out = []
        for index in range(samples):
            picture = render(image, mask, (seed + index) % 2**32, strength)
            if self.nsfw:
                picture = Image.new("RGB", picture.size, (0, 0, 0))
            if self.output_scale != 1.0:
                picture = picture.resize((max(8, int(picture.width * self.output_scale)),
                                          max(8, int(picture.height * self.output_scale))))
            out.append(encode(picture, fmt))
        return out


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many concurrent clients must not wait on a full listen backlog
    daemon_threads = True
    block_on_close = False


class _Handler(BaseHTTPRequestHandler):
    sandbox: SandboxServer
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
                record.form, record.files = _parse_multipart(ctype, body)
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
                if not canned.passthrough:
                    self._send_canned(canned)
                    return
            if route is None:
                self._send_json(404, {"status": "error", "message": f"no such endpoint: {method} {raw_path}"})
                return
            route(self, record, **params)
        except _Stopped:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, method: str, path: str):
        h = _Handler
        if method == "POST":
            if path in ("/image2image", "/inpainting"):
                return f"dezgo.{path[1:]}", h._dezgo, {"inpaint": path == "/inpainting"}
            m = re.fullmatch(r"/api/v6/images/(img2img|inpaint)", path)
            if m:
                return f"modelslab.{m.group(1)}", h._queued_submit, {"service": "modelslab", "inpaint": m.group(1) == "inpaint"}
            m = re.fullmatch(r"/api/v6/images/fetch(?:/([^/]+))?", path)
            if m:
                return "modelslab.fetch", h._queued_fetch, {"service": "modelslab", "job_id": m.group(1)}
            if path == "/api/v6/base64_to_url":
                return "modelslab.upload", h._upload, {}
            m = re.fullmatch(r"/api/v3/(img2img|inpaint)", path)
            if m:
                return f"sdapi.{m.group(1)}", h._queued_submit, {"service": "sdapi", "inpaint": m.group(1) == "inpaint"}
            m = re.fullmatch(r"/api/v3/fetch(?:/([^/]+))?", path)
            if m:
                return "sdapi.fetch", h._queued_fetch, {"service": "sdapi", "job_id": m.group(1)}
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

    def _send(self, status: int, body: bytes, ctype: str, headers: Optional[dict[str, str]] = None) -> None:
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
                raise _BadInput("prompt", "The prompt field is required.")
            image = sb._load_image(images.get("init_image"), "init_image")  # noqa: SLF001
            mask = sb._load_image(images.get("mask_image"), "mask_image") if inpaint else None  # noqa: SLF001
            if mask is not None and mask.size != image.size:
                raise _BadInput("mask_image", "must have the same size as init_image")
            strength = float(fields.get("strength", 0.75))
            if not 0.0 <= strength <= 1.0:
                raise _BadInput("strength", "must be between 0 and 1")
            steps = int(float(fields.get("steps", 30)))
            if not 10 <= steps <= 150:
                raise _BadInput("steps", "must be between 10 and 150")
            fmt = str(fields.get("format", "png"))
            if fmt not in ("png", "jpg", "webp"):
                raise _BadInput("format", "must be png, jpg or webp")
        except _BadInput as bad:
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

    # -- ModelsLab v6 / SD API v3 / ImagePipeline --------------------------------------------

    def _key_ok(self, service: str, record: Recorded) -> bool:
        sb = self.sandbox
        if service == "imagepipeline":
            return self.headers.get("API-Key") == sb.keys["imagepipeline"]
        body = record.json if isinstance(record.json, dict) else {}
        return body.get("key") == sb.keys["modelslab"]

    def _error(self, service: str, status: int, message: Any, **extra: Any) -> None:
        """How each service reports an error: v3 mostly with HTTP 200, ImagePipeline FastAPI-like."""
        if service == "sdapi":
            self._send_json(200, {"status": "error", "message": message, **extra})
        elif service == "imagepipeline":
            if isinstance(message, dict):
                detail = [{"loc": ["body", k], "msg": " ".join(v) if isinstance(v, list) else str(v),
                           "type": "value_error"} for k, v in message.items()]
                self._send_json(422, {"detail": detail})
            else:
                self._send_json(status, {"status": "FAILURE", "error": message, **extra})
        else:
            self._send_json(status, {"status": "error", "message": message, **extra})

    def _upload(self, record: Recorded) -> None:
        sb = self.sandbox
        if not self._key_ok("modelslab", record):
            self._send_json(401, {"status": "error", "message": "Invalid Api Key"})
            return
        body = record.json if isinstance(record.json, dict) else {}
        value = body.get("base64_string", "")
        if not isinstance(value, str) or not value.startswith("data:image/"):
            self._send_json(400, {"status": "error", "message": {"base64_string": ["must be a data:image/...;base64 URI"]}})
            return
        try:
            picture = sb._load_image(value, "base64_string")  # noqa: SLF001
        except _BadInput as bad:
            self._send_json(400, {"status": "error", "message": {bad.field: [bad.problem]}})
            return
        data, ctype = encode(picture.convert("RGB"), "png")
        name = sb._store(data, ctype, "upload")  # noqa: SLF001
        self._send_json(200, {"status": "success", "message": "Image uploaded", "output": [f"{sb.url}/uploads/{name}"]})

    def _queued_submit(self, record: Recorded, service: str, inpaint: bool) -> None:
        sb = self.sandbox
        if not self._key_ok(service, record):
            if service == "imagepipeline":
                self._send_json(401, {"detail": "Invalid API-Key"})
            else:
                self._error(service, 401, "Invalid Api Key", tip="Get your key from modelslab.com")
            return
        body = record.json if isinstance(record.json, dict) else None
        if body is None:
            self._error(service, 400, "the body must be JSON")
            return
        try:
            if not str(body.get("prompt") or "").strip():
                raise _BadInput("prompt", "The prompt field is required.")
            if service in ("modelslab", "imagepipeline") and not str(body.get("model_id") or "").strip():
                raise _BadInput("model_id", "The model id field is required.")
            if service == "modelslab" and str(body["model_id"]).startswith("missing"):
                self._error(service, 400, f"Model not found: {body['model_id']}")
                return
            samples = int(float(body.get("samples", 1)))
            if not 1 <= samples <= 4:
                raise _BadInput("samples", "samples must be between 1 and 4")
            guidance = float(body.get("guidance_scale", 7.5))
            if not 1 <= guidance <= 20:
                raise _BadInput("guidance_scale", "guidance_scale must be between 1 and 20")
            steps = int(float(body.get("num_inference_steps", 31 if service == "sdapi" else 30)))
            if service == "sdapi" and steps not in SD_V3_STEPS:
                raise _BadInput("num_inference_steps", "The selected num inference steps is invalid.")
            strength = float(body.get("strength") if body.get("strength") is not None else 0.7)
            if not 0 <= strength <= 1:
                raise _BadInput("strength", "strength must be between 0 and 1")
            image = sb._load_image(body.get("init_image"), "init_image")  # noqa: SLF001
            mask = sb._load_image(body.get("mask_image"), "mask_image") if inpaint else None  # noqa: SLF001
            if mask is not None and mask.size != image.size:
                mask = mask.resize(image.size)
        except _BadInput as bad:
            if bad.problem == "Unable to fetch image from provided URL":
                self._error(service, 400, bad.problem)
            else:
                self._error(service, 400, {bad.field: [bad.problem]})
            return
        except (TypeError, ValueError):
            self._error(service, 400, "a numeric field is not a number")
            return
        seed_value = body.get("seed")
        seed = int(float(seed_value)) if seed_value not in (None, "", -1, "-1") else sb._new_seed()  # noqa: SLF001
        now = time.monotonic()
        ready_at = float("inf") if sb.processing_forever else now + sb.job_delay
        results = sb._results(image.convert("RGB"), mask, seed, strength, samples)  # noqa: SLF001
        files = []
        for data, ctype in results:
            if sb.base64_output and service != "imagepipeline":
                data, ctype = base64.b64encode(data), "text/plain"
            files.append(sb._store(data, ctype, "out", ready_at))  # noqa: SLF001
        with sb._lock:  # noqa: SLF001
            job = _Job(id=next(sb._ids), service=service, ready_at=ready_at, files=files, seed=seed,  # noqa: SLF001
                       nsfw=sb.nsfw, width=image.width, height=image.height, steps=steps,
                       prompt=str(body.get("prompt")))
            sb._jobs[job.id] = job  # noqa: SLF001
        self._job_answer(job)

    def _queued_fetch(self, record: Recorded, service: str, job_id: Optional[str]) -> None:
        sb = self.sandbox
        if not self._key_ok(service, record):
            if service == "imagepipeline":
                self._send_json(401, {"detail": "Invalid API-Key"})
            else:
                self._error(service, 401, "Invalid Api Key")
            return
        if job_id is None and isinstance(record.json, dict):
            job_id = record.json.get("request_id")
        try:
            job = sb._jobs.get(int(str(job_id)))  # noqa: SLF001
        except (TypeError, ValueError):
            job = None
        if job is None or job.service != service:
            self._error(service, 404, "Request not found")
            return
        self._job_answer(job)

    def _job_answer(self, job: _Job) -> None:
        sb = self.sandbox
        links = [f"{sb.url}/files/{name}" for name in job.files]
        left = job.ready_at - time.monotonic()
        if job.service == "imagepipeline":
            if left > 0:
                self._send_json(200, {"status": "PENDING", "id": str(job.id)})
            else:
                self._send_json(200, {"status": "SUCCESS", "id": str(job.id), "download_urls": links,
                                      "nsfw_content_detected": job.nsfw, "seed": job.seed})
            return
        if left > 0:
            eta = sb.eta if sb.eta is not None else (round(left, 3) if left != float("inf") else 5.0)
            api = "v3" if job.service == "sdapi" else "v6/images"
            answer = {
                "status": "processing",
                "tip": "Your request is queued; use the fetch API.",
                "eta": self._num(eta),
                "webhook_status": "",
                "fetch_result": f"{sb.url}/{job.service}/api/{api}/fetch/{job.id}",
                "id": self._num(job.id),
                "output": "" if sb.output_empty_string else [],
                "future_links": links,
                "meta": {},
            }
            answer["messege" if sb.use_messege else "message"] = "Try to fetch request after seconds estimated"
            self._send_json(200, answer)
            return
        self._send_json(200, {
            "status": "success",
            "generationTime": 0.42,
            "id": self._num(job.id),
            "output": links,
            "proxy_links": "",
            "nsfw_content_detected": job.nsfw,
            "webhook_status": "",
            "meta": {"seed": self._num(job.seed), "W": job.width, "H": job.height, "steps": job.steps,
                     "prompt": job.prompt, "n_samples": len(links)},
        })

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


def _parse_multipart(ctype: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
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


__all__ = ["SandboxServer", "Canned", "Recorded", "render", "seed_colour", "DEFAULT_KEY"]
