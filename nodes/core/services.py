"""The one table of remote services: one :class:`Service` row per provider.

Everything that needs a service's label, key variable, host variable, default host or limits reads
it here: the HTTP layer (hosts, error sentences), the key store (which variable holds which key),
the provider clients and nodes (samples per call, concurrency, deadline range, size window) and the
web panel (through ``GET /imgedit/keys``). Adding a fifth provider is one client module plus one
row. Where a limit comes from is said in docs/providers.md and shared/providers/PROVIDERS.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .request import SizeRule


@dataclass(frozen=True)
class Service:
    """One remote service. ``key_owner`` is the service whose key it uses (same vendor)."""

    name: str
    label: str
    node_id: str
    key_owner: str
    key_env: str
    url_env: str
    default_url: str
    #: where a user sees what was charged (named in "may have been charged" errors)
    account: str
    samples_per_call: int
    max_concurrency: int
    size: SizeRule
    #: the service's answer says which results its safety checker replaced
    nsfw_flag: bool
    default_concurrency: int = 4
    #: (min, default, max) seconds for ``deadline_s``
    deadline_s: tuple[int, int, int] = (1, 600, 3600)

    @property
    def owns_key(self) -> bool:
        return self.key_owner == self.name

    def public(self, has_key: Optional[bool] = None) -> dict:
        """What the browser may know (never a key): for the settings panel and the node badges."""
        row = {"service": self.name, "label": self.label, "node_id": self.node_id, "key_owner": self.key_owner,
               "key_env": self.key_env, "url_env": self.url_env, "default_url": self.default_url}
        if has_key is not None:
            row["has_key"] = bool(has_key)
        return row


# Size windows: every document caps the longest edge at 1024 and wants multiples of 8; ModelsLab's
# validation also rejects an edge under 256 (its error-codes page: "width 256-1024").
_WINDOW_1024 = SizeRule(max_edge=1024, multiple=8, mode="resize")

SERVICES: dict[str, Service] = {
    service.name: service
    for service in (
        Service("dezgo", "Dezgo", "ImgEditDezgo", "dezgo", "DEZGO_API_KEY", "IMGEDIT_DEZGO_URL",
                "https://api.dezgo.com", "your Dezgo account's transactions (dezgo.com)",
                samples_per_call=1, max_concurrency=8, size=_WINDOW_1024, nsfw_flag=False),
        Service("sdapi", "Stable Diffusion API", "ImgEditSDAPI", "modelslab", "MODELSLAB_API_KEY",
                "IMGEDIT_SDAPI_URL", "https://stablediffusionapi.com",
                "your ModelsLab / Stable Diffusion API dashboard's request history",
                samples_per_call=4, max_concurrency=15, size=_WINDOW_1024, nsfw_flag=False),
        Service("modelslab", "ModelsLab", "ImgEditModelsLab", "modelslab", "MODELSLAB_API_KEY",
                "IMGEDIT_MODELSLAB_URL", "https://modelslab.com", "your ModelsLab dashboard's request history",
                samples_per_call=4, max_concurrency=15,
                size=SizeRule(max_edge=1024, multiple=8, mode="resize", min_edge=256), nsfw_flag=True),
        Service("imagepipeline", "ImagePipeline", "ImgEditImagePipeline", "imagepipeline",
                "IMAGEPIPELINE_API_KEY", "IMGEDIT_IMAGEPIPELINE_URL", "https://api.imagepipeline.io",
                "your ImagePipeline dashboard's job history", samples_per_call=4, max_concurrency=8,
                size=_WINDOW_1024, nsfw_flag=False),
    )
}

#: key-owning service -> its environment variable
KEY_ENV: dict[str, str] = {s.name: s.key_env for s in SERVICES.values() if s.owns_key}
#: service -> the service whose key it uses, for those that share one
KEY_ALIASES: dict[str, str] = {s.name: s.key_owner for s in SERVICES.values() if not s.owns_key}


def seed_per_sample_services() -> list[str]:
    """Labels of the services where "sample k uses seed + k" holds (one sample per call)."""
    return [s.label for s in SERVICES.values() if s.samples_per_call == 1]


__all__ = ["Service", "SERVICES", "KEY_ENV", "KEY_ALIASES", "seed_per_sample_services"]
