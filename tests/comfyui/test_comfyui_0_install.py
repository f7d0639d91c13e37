"""Installing the pack as ComfyUI-Manager does changes none of ComfyUI's packages, and the pack starts
without its optional diffusers extra.

- ``pip install --dry-run --report`` of ``requirements.txt`` with ComfyUI's Python (what the Manager
  runs) would install nothing beyond ``requests`` and its own dependencies, and upgrade nothing.
- A ComfyUI whose Python cannot import diffusers (hidden by a shadow package first on ``PYTHONPATH``,
  so this holds whether or not the test environment has it) loads the pack with no import failure,
  prints its import time, lists ``ImgEditLocalDiffusers``, and running that node answers with one
  sentence naming what to install.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from comfyui_client import ComfyError
from comfyui_server import PACK_FOLDER_NAME, PACK_ROOT, ComfyServer, import_times
from comfyui_workflow import api_node, output_index

pytestmark = pytest.mark.comfyui

#: What a Manager install may add to a ComfyUI: requests and what requests itself needs.
REQUESTS_AND_ITS_NEEDS = {"requests", "urllib3", "idna", "charset-normalizer", "certifi"}
HIDDEN = ("diffusers", "accelerate", "peft")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dry_run_report(python: str) -> list[dict]:
    """pip's ``--report`` of what ``pip install -r requirements.txt`` would install in ``python``'s env."""
    done = subprocess.run(
        [python, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", "-r",
         str(PACK_ROOT / "requirements.txt")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)["install"]


def test_requirements_install_nothing_beyond_requests(comfy_python):
    would = {_canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in dry_run_report(comfy_python)}
    print(f"\npip install --dry-run -r requirements.txt in ComfyUI's Python would install: {would or 'nothing'}")
    assert set(would) <= REQUESTS_AND_ITS_NEEDS, f"the pack's requirements would change ComfyUI's packages: {would}"


def _shadow_packages(folder) -> str:
    for name in HIDDEN:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} is hidden by the install test')\n")
    return str(folder)


def test_comfyui_starts_without_the_diffusers_extra(comfy, comfy_python, tmp_path):
    env = {k: v for k, v in comfy.server.env.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = _shadow_packages(tmp_path / "shadow")
    config = comfy.work / "extra_model_paths.yaml"
    with ComfyServer(comfy.server.comfy_dir, tmp_path / "base", python=comfy_python, env=env,
                     extra_args=["--extra-model-paths-config", str(config)]) as server:
        client = server.client(timeout=120)
        log = server.log_text()
        times = {path: value for path, value in import_times(log).items()
                 if path.rstrip("/").endswith("/" + PACK_FOLDER_NAME)}
        assert times, "ComfyUI printed no import time for the pack; log tail:\n" + log[-3000:]
        (seconds, ok), = times.values()
        print(f"\nwithout diffusers: ComfyUI printed {seconds} s for the pack's import")
        assert ok and seconds < 0.5

        info = client.object_info()
        assert "ImgEditLocalDiffusers" in info and "ImgEditComfyModel" in info
        models = info["ImgEditLocalDiffusers"]["input"]["required"]["model"]
        options = models[0] if isinstance(models[0], list) else models[1]["options"]
        model = next(name for name in options if name == "tiny-sd")
        prompt = {
            "1": {"class_type": "LoadImage", "inputs": {"image": comfy.samples["sample.png"].name}},
            "2": api_node(info, "ImgEditLocalDiffusers", model=model),
            "3": api_node(info, "ImgEditImg2Img", provider=["2", 0], image=["1", 0], prompt="a cat", steps=2),
        }
        server.input_dir.mkdir(parents=True, exist_ok=True)
        (server.input_dir / comfy.samples["sample.png"].name).write_bytes(comfy.samples["sample.png"].read_bytes())
        prompt["4"] = {"class_type": "PreviewImage",
                       "inputs": {"images": ["3", output_index(info, "ImgEditImg2Img", "image")]}}
        with pytest.raises(ComfyError) as err:
            client.run(prompt, timeout=120)
        message = str(err.value)
        assert "comfyui-imgedit[diffusers]" in message and "requirements-diffusers.txt" in message, message


@pytest.fixture(scope="module")
def comfy_python() -> str:
    return os.environ.get("COMFYUI_PYTHON") or sys.executable


def test_comfyui_reads_the_registry_metadata(comfy_python):
    """ComfyUI's own parser of a pack's pyproject.toml (comfy_config, shared with comfy-cli's publish)."""
    code = ("import json, sys; from comfy_config import config_parser; "
            "c = config_parser.extract_node_configuration(sys.argv[1]); "
            "print(json.dumps({'project': c.project.model_dump(by_alias=True), 'comfy': c.tool_comfy.model_dump()}))")
    done = subprocess.run([comfy_python, "-c", code, str(PACK_ROOT)], cwd=os.environ["COMFYUI_DIR"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads(done.stdout.strip().splitlines()[-1])
    project, comfy = config["project"], config["comfy"]
    assert project["name"] == "comfyui-imgedit" and re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["license"]["file"] == "LICENSE" and project["requires-python"].startswith(">=")
    assert project["urls"]["Repository"].startswith("https://github.com/")
    assert project["supported_comfyui_version"].startswith(">=") and "OS Independent" in project["supported_os"]
    assert comfy["publisher_id"] and comfy["display_name"] and comfy["includes"]
