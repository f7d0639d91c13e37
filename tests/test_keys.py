"""nodes.core.keys: env first, then the key file (atomic, 0600); missing key -> one sentence; redact."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from comfyui_imgedit.nodes.core import keys
from comfyui_imgedit.nodes.core.errors import AuthError, InputError

KEY = "test-key-not-real-abc123"


def test_env_wins_over_file(tmp_path, monkeypatch):
    keys.save_key("dezgo", "file-key-not-real", tmp_path)
    assert keys.resolve_key("dezgo", tmp_path) == "file-key-not-real"
    monkeypatch.setenv("DEZGO_API_KEY", KEY)
    assert keys.resolve_key("dezgo", tmp_path) == KEY


def test_sdapi_uses_the_modelslab_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSLAB_API_KEY", KEY)
    assert keys.resolve_key("sdapi") == KEY
    monkeypatch.delenv("MODELSLAB_API_KEY")
    keys.save_key("sdapi", "stored-not-real", tmp_path)
    assert keys.resolve_key("modelslab", tmp_path) == "stored-not-real"
    assert json.loads(keys.key_file(tmp_path).read_text()) == {"modelslab": "stored-not-real"}


@pytest.mark.parametrize("service,env", [("dezgo", "DEZGO_API_KEY"), ("modelslab", "MODELSLAB_API_KEY"),
                                         ("sdapi", "MODELSLAB_API_KEY"), ("imagepipeline", "IMAGEPIPELINE_API_KEY")])
def test_missing_key_says_how_to_set_it(tmp_path, service, env):
    with pytest.raises(AuthError) as caught:
        keys.resolve_key(service, tmp_path)
    message = str(caught.value)
    assert env in message and "Settings -> ImgEdit" in message
    assert message.count(".") <= 2  # one sentence


def test_key_file_location_and_permissions(tmp_path):
    keys.save_key("imagepipeline", KEY, tmp_path)
    path = keys.key_file(tmp_path)
    assert path == tmp_path / "imgedit" / "keys.json"
    if sys.platform != "win32":
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    # atomic write: no temp files left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["keys.json"]


def test_save_clear_and_services_with_keys(tmp_path, monkeypatch):
    assert keys.services_with_keys(tmp_path) == {"dezgo": False, "modelslab": False, "imagepipeline": False}
    keys.save_key("dezgo", KEY, tmp_path)
    keys.save_key("modelslab", "other-not-real", tmp_path)
    status = keys.services_with_keys(tmp_path)
    assert status == {"dezgo": True, "modelslab": True, "imagepipeline": False}
    assert KEY not in repr(status)
    keys.clear_key("dezgo", tmp_path)
    assert keys.services_with_keys(tmp_path)["dezgo"] is False
    assert keys.resolve_key("modelslab", tmp_path) == "other-not-real"
    monkeypatch.setenv("IMAGEPIPELINE_API_KEY", KEY)
    assert keys.services_with_keys(None)["imagepipeline"] is True


@pytest.mark.parametrize("bad", ["", "   ", "abc\ndef", "a\x00b", "x" * 600])
def test_save_rejects_bad_keys(tmp_path, bad):
    with pytest.raises(InputError):
        keys.save_key("dezgo", bad, tmp_path)
    assert not keys.key_file(tmp_path).exists()


def test_unknown_service(tmp_path):
    with pytest.raises(InputError):
        keys.resolve_key("openai", tmp_path)


def test_corrupt_key_file_is_not_echoed(tmp_path):
    path = keys.key_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"dezgo": "half-written-secret-not-real"')
    with pytest.raises(AuthError) as caught:
        keys.resolve_key("dezgo", tmp_path)
    assert "half-written" not in str(caught.value)


def test_redact_every_form():
    secret = "k3y/with+odd chars&\"q"
    text = f"raw {secret} quoted {'k3y%2Fwith%2Bodd%20chars%26%22q'} quoted-plus " \
           f"{'k3y%2Fwith%2Bodd+chars%26%22q'} json {json.dumps(secret)}"
    out = keys.redact(text, secret, None, "")
    assert "k3y" not in out
    assert out.count("[redacted]") >= 3
    assert keys.redact("nothing here", "") == "nothing here"
