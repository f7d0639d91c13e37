"""Shared pytest setup: keep the developer's real keys, service URLs and journal out of every test;
one torch thread and the tiny local models for the local-provider tests."""

import pytest

_SECRET_ENV = (
    "DEZGO_API_KEY", "MODELSLAB_API_KEY", "IMAGEPIPELINE_API_KEY",
    "IMGEDIT_DEZGO_URL", "IMGEDIT_SDAPI_URL", "IMGEDIT_MODELSLAB_URL", "IMGEDIT_IMAGEPIPELINE_URL",
)


_JOURNAL_ENV = ("IMGEDIT_JOURNAL", "IMGEDIT_JOURNAL_MAX_GB", "IMGEDIT_JOURNAL_MAX_DAYS")


@pytest.fixture(autouse=True)
def _no_real_keys_or_hosts(monkeypatch, tmp_path):
    """A test that needs a key or a URL sets a fake one itself; real ones never leak in. The journal
    of paid calls (CLI: the user cache folder) goes to the test's own temporary folder."""
    for name in _SECRET_ENV + _JOURNAL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMGEDIT_JOURNAL_DIR", str(tmp_path / "journal"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the tiny-model tests: they gain nothing from more, and on a busy
    2-core CI machine OpenMP barriers make two threads several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict:
    """Tiny random-weight SD, SD-inpaint and SDXL models, a single-file checkpoint and a LoRA in a
    temp ``diffusers``/``checkpoints``/``loras`` tree (tests/tiny_models.py), built once for the
    local-provider modules (test_local_diffusers, test_local_models)."""
    from tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def roots(tiny):
    """The pack's model roots over :func:`tiny`'s tree."""
    from comfyui_imgedit.nodes.core.providers import local_models as lm

    return lm.ModelRoots.of([tiny["diffusers"]], [tiny["checkpoints"]], [tiny["loras"]])
