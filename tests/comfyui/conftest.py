"""Fixtures for the integration tests that run the pack inside a real ComfyUI.

They run only when ``COMFYUI_DIR`` names a ComfyUI checkout (a folder with ``main.py``); every test
here is skipped with that reason otherwise (CI has no checkout). ``COMFYUI_PYTHON`` is the
interpreter that runs ComfyUI (default: the one running pytest).

One ComfyUI process serves the whole session (see :func:`comfyui_session.comfy_session`):
``--cpu --listen 127.0.0.1 --port <free>`` with ``--base-directory`` a temp folder whose
``custom_nodes/comfyui-imgedit`` links to this checkout (nothing is written into the user's ComfyUI),
tiny random-weight models under a temp folder named by ``--extra-model-paths-config``, and every
``IMGEDIT_*_URL`` pointed at the pack's offline sandbox with a fake key. The process is always
stopped at the end of the session. ``IMGEDIT_KEEP_COMFY_LOG=path`` keeps a copy of its log.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from comfyui_session import ComfySession, comfy_session  # noqa: E402


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


@pytest.fixture(scope="session")
def comfy(tmp_path_factory) -> ComfySession:
    root = comfyui_dir()
    if root is None:
        pytest.skip("COMFYUI_DIR does not name a ComfyUI checkout")
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    work = tmp_path_factory.mktemp("comfyui")
    log_path = None
    try:
        with comfy_session(work, root, python=python) as session:
            log_path = session.server.log_path
            yield session
    finally:
        keep = os.environ.get("IMGEDIT_KEEP_COMFY_LOG")
        if keep and log_path is not None and log_path.is_file():
            shutil.copyfile(log_path, keep)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With ``IMGEDIT_REQUIRE_COMFYUI=1`` (CI) a skipped real-ComfyUI test is a failure: CI builds the
    ComfyUI, the browser and selenium, so a skip there means something it needs went missing."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("IMGEDIT_REQUIRE_COMFYUI") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped where every real-ComfyUI test must run (IMGEDIT_REQUIRE_COMFYUI=1): {reason}"
