"""What the sandbox records and is scripted with: canned answers, received requests, queued jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class Canned:
    """One scripted answer. ``passthrough``: wait ``delay`` then answer normally (a slow answer);
    ``close``: drop the connection without answering; ``charged``: do the work and bill it (Dezgo's
    charge, a queued job), then answer this instead (a gateway error hiding a paid job)."""

    status: int = 200
    json: Any = None
    body: Optional[bytes] = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    passthrough: bool = False
    close: bool = False
    charged: bool = False
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
class Job:
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


class Stopped(Exception):
    pass


class BadInput(Exception):
    def __init__(self, field_name: str, problem: str):
        super().__init__(problem)
        self.field = field_name
        self.problem = problem


__all__ = ["Canned", "Recorded", "Job", "Stopped", "BadInput"]
