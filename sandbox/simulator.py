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
import io
import itertools
import os
import random
import threading
import time
from collections import deque
from http.server import ThreadingHTTPServer
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

from PIL import Image

from ..nodes.core.services import KEY_ENV, SERVICES
from .handler import PREFIXES, Handler, Server
from .picture import encode, render, seed_colour
from .records import BadInput, Canned, Job, Recorded, Stopped

DEFAULT_KEY = "sandbox-key-not-real"
URL_ENV = {name: row.url_env for name, row in SERVICES.items()}


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
    - ``seed_list``: ModelsLab/v3 answers give every sample's seed (``meta.seed`` as a list)
      instead of the documented single first seed.

    - ``size_window``: ModelsLab refuses ``width`` / ``height`` as its error-codes page documents
      (256-1024, multiples of 8).

    ``charges`` counts paid work however it was answered (see ``Canned(charged=True)``).
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
        self.seed_list = False
        self.size_window = False
        #: paid pieces of work done (Dezgo generations and queued jobs accepted), however answered
        self.charges = 0
        self.requests: list[Recorded] = []
        self._scripts: dict[str, deque] = {}
        self._files: dict[str, tuple[bytes, str]] = {}
        self._file_gets: dict[str, int] = {}
        self._file_ready: dict[str, int] = {}
        self._jobs: dict[int, Job] = {}
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
        handler = type("SandboxHandler", (Handler,), {"sandbox": self})
        httpd = Server((self.host, self._port), handler)
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
                raise Stopped()

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
            self.charges += 1
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
                    raise BadInput(field_name, "Unable to fetch image from provided URL")
                data = stored[0]
            else:
                if text.startswith("data:"):
                    text = text.partition(",")[2]
                try:
                    data = base64.b64decode(text, validate=False)
                except (binascii.Error, ValueError):
                    raise BadInput(field_name, "is not a link, a data URI or base64") from None
        else:
            raise BadInput(field_name, f"The {field_name.replace('_', ' ')} field is required.")
        try:
            picture = Image.open(io.BytesIO(data))
            picture.load()
        except Exception:
            raise BadInput(field_name, "is not an image") from None
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


__all__ = ["SandboxServer", "Canned", "Recorded", "render", "seed_colour", "encode", "Job", "DEFAULT_KEY"]
