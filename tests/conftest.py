"""Shared pytest setup: keep the developer's real keys and service URLs out of every test."""

import os

import pytest

_SECRET_ENV = (
    "DEZGO_API_KEY", "MODELSLAB_API_KEY", "IMAGEPIPELINE_API_KEY",
    "IMGEDIT_DEZGO_URL", "IMGEDIT_SDAPI_URL", "IMGEDIT_MODELSLAB_URL", "IMGEDIT_IMAGEPIPELINE_URL",
)


@pytest.fixture(autouse=True)
def _no_real_keys_or_hosts(monkeypatch):
    """A test that needs a key or a URL sets a fake one itself; real ones never leak in."""
    for name in _SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
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
