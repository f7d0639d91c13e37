"""What the four remote clients share: option validation, the ``extra`` dict, key handling, repr.

``extra`` policy (documented in docs/providers.md): a JSON object merged into the provider's
request after validation. Documented parameters are type- and range-checked; parameters this pack
does not know are passed through unchanged with a warning in ``info`` (the vendors' documents are
incomplete, so refusing them would hide real features). It can never set the key, the images, or
the fields the Img2Img / Inpaint node owns (prompt, strength, steps, seed, size...): those raise
:class:`InputError`.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any, Callable, Mapping, Optional

from .. import keys
from ..errors import InputError
from ..request import EditRequest, Provider
from ..services import SERVICES
from .http import ProviderHttp

Validator = Callable[[str, Any], Any]

#: Fields no ``extra`` may set: keys, hosts and images are ImgEdit's own business ...
RESERVED = frozenset({
    "key", "api_key", "apikey", "api-key", "x-api-key", "x-dezgo-key", "token", "authorization",
    "init_image", "mask_image", "image", "images", "input_image", "base_url", "url", "host",
})
#: ... and these belong to the Img2Img / Inpaint node.
NODE_OWNED = frozenset({
    "prompt", "negative_prompt", "strength", "steps", "num_inference_steps", "guidance", "guidance_scale",
    "seed", "samples", "width", "height",
})
ALWAYS_FORBIDDEN = RESERVED | NODE_OWNED


# --------------------------------------------------------------------------------------------
# Validators: each takes (name, value) and returns the value to send or raises InputError.


def v_text(max_len: int = 2000) -> Validator:
    def check(name: str, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise InputError(f"{name} must be text.")
        value = str(value)
        if len(value) > max_len:
            raise InputError(f"{name} is longer than {max_len} characters; shorten it.")
        return value

    return check


def v_int(lo: int, hi: int) -> Validator:
    def check(name: str, value: Any) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{name} must be a whole number from {lo} to {hi}.") from None
        if isinstance(value, bool) or not math.isfinite(number) or number != int(number) or not lo <= number <= hi:
            raise InputError(f"{name} is {value!r}; use a whole number from {lo} to {hi}.")
        return int(number)

    return check


def v_float(lo: float, hi: float) -> Validator:
    def check(name: str, value: Any) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{name} must be a number from {lo:g} to {hi:g}.") from None
        if isinstance(value, bool) or not math.isfinite(number) or not lo <= number <= hi:
            raise InputError(f"{name} is {value!r}; use a number from {lo:g} to {hi:g}.")
        return number

    return check


def v_choice(*choices: str) -> Validator:
    def check(name: str, value: Any) -> Any:
        if value not in choices:
            raise InputError(f"{name} is {value!r}; use one of {', '.join(choices)}.")
        return value

    return check


def v_yesno(name: str, value: Any) -> Any:
    """ModelsLab / SD API flags: bools or yes/no strings -> "yes" / "no"."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value.strip().lower() in ("yes", "no", "true", "false"):
        return "yes" if value.strip().lower() in ("yes", "true") else "no"
    raise InputError(f"{name} is {value!r}; use true/false (sent as \"yes\"/\"no\").")


def v_bool(name: str, value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("yes", "no", "true", "false"):
        return value.strip().lower() in ("yes", "true")
    raise InputError(f"{name} is {value!r}; use true or false.")


def v_url(name: str, value: Any) -> Any:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.strip().lower().startswith(("http://", "https://")):
        raise InputError(f"{name} must be an http(s) link.")
    return value.strip()


def v_any(name: str, value: Any) -> Any:
    return value


def clamp_to_range(value: float, lo: float, hi: float, what: str, label: str, warnings: list[str]) -> float:
    """``value`` clamped to ``lo..hi``; a warning in ``info`` says so when it changed.

    The node's ranges are wider than some services accept; sending a value the service rejects
    would fail the whole job, so it is clamped and the user told.
    """
    clamped = min(hi, max(lo, value))
    if clamped != value:
        warnings.append(f"{label} takes {what} {lo:g}-{hi:g}; {value:g} was sent as {clamped:g}.")
    return clamped


def parse_extra(extra: Any) -> dict[str, Any]:
    """``extra`` as a dict: a dict, a JSON object string, or empty/None."""
    if extra is None:
        return {}
    if isinstance(extra, Mapping):
        return dict(extra)
    if isinstance(extra, str):
        text = extra.strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as error:
            raise InputError(f"extra is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
                             f"write an object like {{\"upscale\": 2}}.") from None
        if not isinstance(value, dict):
            raise InputError("extra must be a JSON object like {\"upscale\": 2}, not a list or a single value.")
        return value
    raise InputError("extra must be a JSON object like {\"upscale\": 2}.")


class RemoteProvider(Provider):
    """Base of the remote clients. Never stores a key: it is resolved at call time.

    A subclass names its row of :data:`..services.SERVICES` in ``service``; its label, key,
    samples per call, concurrency limit, deadline range and size window come from that row.
    """

    service = ""
    remote = True
    #: documented parameters reachable through ``extra`` (and the explicit options), name -> validator
    PARAMS: dict[str, Validator] = {}
    #: extra fields refused for this provider (on top of :data:`ALWAYS_FORBIDDEN`)
    FORBIDDEN: frozenset = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        row = SERVICES.get(cls.__dict__.get("service", ""))
        if row is not None:
            cls.row = row
            cls.name = cls.key_service = row.name
            cls.label = row.label
            cls.size_rule = row.size
            cls.max_samples_per_call = row.samples_per_call

    def __init__(
        self,
        *,
        user_dir: Optional[str] = None,
        deadline_s: float = 600.0,
        max_concurrency: int = 4,
        fail_on_nsfw: bool = False,
        extra: Any = None,
        http: Optional[ProviderHttp] = None,
    ):
        self._user_dir = None if user_dir is None else str(user_dir)
        low, _, high = self.row.deadline_s
        self.deadline_s = float(v_float(low, high)("deadline_s", deadline_s))
        self.max_concurrency = int(v_int(1, self.row.max_concurrency)("max_concurrency", max_concurrency))
        self.fail_on_nsfw = bool(fail_on_nsfw)
        self.extra, self.option_warnings = self.validate_extra(extra)
        self.http = http or ProviderHttp(self.service)

    # -- options -----------------------------------------------------------------------------

    def check_option(self, name: str, value: Any) -> Any:
        validator = self.PARAMS.get(name)
        return value if validator is None else validator(name, value)

    def validate_extra(self, extra: Any) -> tuple[dict[str, Any], list[str]]:
        """Validated ``extra`` and the warnings about passed-through unknown fields."""
        data = parse_extra(extra)
        out: dict[str, Any] = {}
        warnings: list[str] = []
        forbidden = ALWAYS_FORBIDDEN | self.FORBIDDEN
        for raw_name, value in data.items():
            name = str(raw_name)
            low = name.strip().lower()
            reserved = (low in RESERVED or any(w in low for w in ("key", "token", "secret", "password", "auth"))
                        or (low.endswith("_url") and name not in self.PARAMS))
            if reserved or low in forbidden:
                where = ("set it on the Img2Img / Inpaint node" if low in NODE_OWNED and not reserved
                         else "keys, hosts and images are set by ImgEdit itself")
                raise InputError(f"extra cannot set {name!r} ({where}); allowed: {', '.join(sorted(self.PARAMS))}.")
            if name in self.PARAMS:
                out[name] = self.PARAMS[name](f"extra.{name}", value)
            else:
                if not _jsonable(value):
                    raise InputError(f"extra.{name} must be a JSON value.")
                out[name] = value
                warnings.append(f"extra: {name!r} is not a documented {self.label} parameter; it was sent as-is.")
        return out, warnings

    def merged_options(self, request: EditRequest) -> tuple[dict[str, Any], list[str]]:
        """``extra`` plus any provider options carried by the request (validated the same way)."""
        options = dict(self.extra)
        warnings = list(self.option_warnings)
        if request.options:
            more, notes = self.validate_extra({k: v for k, v in request.options.items() if v is not None})
            options.update(more)
            warnings.extend(n for n in notes if n not in warnings)
        return options, warnings

    # -- keys --------------------------------------------------------------------------------

    def resolve_key(self) -> str:
        return keys.resolve_key(self.key_service, self._user_dir)

    # -- info --------------------------------------------------------------------------------

    def public_options(self) -> dict[str, Any]:
        """Non-secret settings for ``describe`` and ``repr`` (subclasses add theirs)."""
        return {}

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"provider": self.name}
        info.update({k: v for k, v in self.public_options().items() if v not in (None, "")})
        if self.extra:
            info["extra"] = dict(self.extra)
        info["deadline_s"] = self.deadline_s
        info["max_concurrency"] = self.max_concurrency
        return info

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "provider")
        return f"{type(self).__name__}({fields})"

    __str__ = __repr__


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def png_bytes(image: Any) -> bytes:
    """An ``[H,W,3]`` tensor as PNG bytes (images.encode_png)."""
    from .. import images as img

    return img.encode_png(image)


def mask_png(mask: Any, rgb: bool = False) -> bytes:
    """A ``[H,W]`` mask (1 = change) as a PNG where white = change (grayscale, or RGB)."""
    from .. import images as img

    picture = img.mask_to_pil(mask)
    if picture.mode != ("RGB" if rgb else "L"):
        picture = picture.convert("RGB" if rgb else "L")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


__all__ = [
    "RemoteProvider",
    "ALWAYS_FORBIDDEN",
    "parse_extra",
    "png_bytes",
    "mask_png",
    "data_uri",
    "v_text",
    "v_int",
    "v_float",
    "v_choice",
    "v_yesno",
    "v_bool",
    "v_url",
    "v_any",
    "clamp_to_range",
]
