"""The four provider nodes (V3 schema): ids, no key/host inputs, execute -> a client, key file via user dir.

Needs ``comfy_api`` (ComfyUI on the path); skipped without it, except in CI (``.ci/run`` runs this
file with ComfyUI's Python and ComfyUI on the path, ``IMGEDIT_REQUIRE_COMFYUI=1``: there a failed
import is a failure).
"""

from __future__ import annotations

import os
import sys
import types

import pytest

if os.environ.get("IMGEDIT_REQUIRE_COMFYUI") == "1":
    import comfy_api.latest  # noqa: F401
else:
    pytest.importorskip("comfy_api.latest")

from comfyui_imgedit.nodes import edit_nodes as pn_edit  # noqa: E402
from comfyui_imgedit.nodes import provider_nodes as pn  # noqa: E402
from comfyui_imgedit.nodes.core import keys  # noqa: E402
from comfyui_imgedit.nodes.core.errors import AuthError, InputError  # noqa: E402
from comfyui_imgedit.nodes.core.request import MAX_SAMPLES  # noqa: E402
from comfyui_imgedit.nodes.core.services import SERVICES  # noqa: E402
from comfyui_imgedit.nodes.core.providers import (  # noqa: E402
    DezgoClient,
    ImagePipelineClient,
    ModelsLabClient,
    SDAPIClient,
)

KEY = "test-key-not-real-node"


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    fake = types.ModuleType("folder_paths")
    fake.get_user_directory = lambda: str(tmp_path)
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    return tmp_path


def schema_inputs(node) -> dict:
    info = node.INPUT_TYPES()
    return {**info.get("required", {}), **info.get("optional", {})}


def test_ids_category_and_output():
    assert [n.__name__ for n in pn.NODES] == ["ImgEditDezgo", "ImgEditSDAPI", "ImgEditModelsLab", "ImgEditImagePipeline"]
    for node in pn.NODES:
        schema = node.define_schema()
        assert schema.node_id == node.__name__ and schema.category == "ImgEdit/providers"
        assert not schema.is_api_node
        assert list(node.RETURN_TYPES) == ["IMGEDIT_PROVIDER"]


def test_no_key_or_host_inputs():
    for node in pn.NODES:
        names = set(schema_inputs(node))
        assert not {n for n in names if "key" in n.lower()}
        urls = {n for n in names if "url" in n.lower() or "host" in n.lower()}
        assert urls <= {"init_image_url", "mask_image_url"}
        assert {"deadline_s", "max_concurrency", "extra"} <= names
        assert schema_inputs(node)["deadline_s"][1]["default"] == 600


def test_modelslab_inputs():
    inputs = schema_inputs(pn.ImgEditModelsLab)
    assert len(inputs["scheduler"][1]["options"]) == 19  # default + the 18 documented
    assert inputs["enhance_prompt"][1]["default"] is False and "faithful" in inputs["enhance_prompt"][1]["tooltip"]
    for name in ("use_karras_sigmas", "clip_skip", "lora_model", "lora_strength", "vae", "safety_checker",
                 "safety_checker_type", "tomesd", "algorithm_type", "fail_on_nsfw"):
        assert name in inputs


def test_execute_builds_clients(user_dir, monkeypatch):
    for service in ("dezgo", "modelslab", "imagepipeline"):
        keys.save_key(service, KEY, user_dir)
    # upscale 2 is refused since issue 10 (paid for, then scaled back): 1 passes through
    out = pn.ImgEditDezgo.execute(model="m", sampler="default", format="webp", deadline_s=60, max_concurrency=2,
                                  extra='{"upscale": 1}')
    client = out.args[0]
    assert isinstance(client, DezgoClient) and client.sampler == "" and client.extra == {"upscale": 1}
    assert client.resolve_key() == KEY  # read from <user dir>/imgedit/keys.json at call time
    out = pn.ImgEditSDAPI.execute(enhance_prompt=False, safety_checker=True, image_transport="upload",
                                  fail_on_nsfw=True, deadline_s=600, max_concurrency=4)
    assert isinstance(out.args[0], SDAPIClient) and out.args[0].fail_on_nsfw
    out = pn.ImgEditModelsLab.execute(
        model_id="realistic-vision-51", scheduler="UniPCMultistepScheduler", use_karras_sigmas=True, clip_skip=0,
        lora_model="", lora_strength="", vae="", enhance_prompt=False, safety_checker=True,
        safety_checker_type="blur", tomesd=True, algorithm_type="none", image_transport="upload",
        fail_on_nsfw=False, deadline_s=600, max_concurrency=5, extra="")
    assert isinstance(out.args[0], ModelsLabClient) and out.args[0].max_concurrency == 5
    out = pn.ImgEditImagePipeline.execute(family="sd", model_id="", scheduler="", refiner=False,
                                          safety_checker=True, fail_on_nsfw=False, deadline_s=600, max_concurrency=4,
                                          init_image_url="https://example.org/a.png")
    assert isinstance(out.args[0], ImagePipelineClient) and out.args[0].model_id == "sd1.5"
    for made in (client, out.args[0]):
        assert KEY not in repr(made) and KEY not in str(made) and KEY not in repr(vars(made))


def test_missing_key_and_bad_extra(user_dir):
    with pytest.raises(AuthError) as caught:
        pn.ImgEditDezgo.execute(model="", sampler="default", format="png", deadline_s=600, max_concurrency=4)
    assert "DEZGO_API_KEY" in str(caught.value)
    keys.save_key("dezgo", KEY, user_dir)
    with pytest.raises(InputError):
        pn.ImgEditDezgo.execute(model="", sampler="default", format="png", deadline_s=600, max_concurrency=4,
                                extra="{not json")


def test_node_limits_are_the_table_of_services():
    nodes = {row.node_id: row for row in SERVICES.values()}
    assert set(nodes) == {n.__name__ for n in pn.NODES}
    for node in pn.NODES:
        row = nodes[node.__name__]
        inputs = schema_inputs(node)
        low, default, high = row.deadline_s
        deadline = inputs["deadline_s"][1]
        assert (deadline["min"], deadline["default"], deadline["max"]) == (low, default, high)
        concurrency = inputs["max_concurrency"][1]
        assert (concurrency["max"], concurrency["default"]) == (row.max_concurrency, row.default_concurrency)
    edit_inputs = {**pn_edit.ImgEditImg2Img.INPUT_TYPES()["required"]}
    assert edit_inputs["samples"][1]["max"] == MAX_SAMPLES


def test_nsfw_and_seed_tooltips_say_what_the_documents_say():
    for node, has_flag in ((pn.ImgEditSDAPI, False), (pn.ImgEditImagePipeline, False), (pn.ImgEditModelsLab, True)):
        tooltip = schema_inputs(node)["fail_on_nsfw"][1]["tooltip"]
        assert ("no NSFW flag" in tooltip) is (not has_flag), tooltip
    seed = pn_edit.ImgEditInpaint.INPUT_TYPES()["required"]["seed"][1]["tooltip"]
    assert "seed + k" in seed and "Dezgo" in seed and "null" in seed
