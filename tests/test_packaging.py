"""What users and the Comfy Registry rely on: dependencies, light imports, node ids in examples."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_requirements_txt_is_identical_to_project_dependencies():
    assert _requirements() == PYPROJECT["project"]["dependencies"]


def test_torch_is_never_a_dependency():
    names = [re.split(r"[<>=!~\[; ]", dep)[0].lower() for dep in PYPROJECT["project"]["dependencies"]]
    assert not {"torch", "torchvision", "torchaudio"} & set(names)


def test_registry_metadata_is_present():
    comfy = PYPROJECT["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"]
    assert "comfyui" not in PYPROJECT["project"]["name"].replace("comfyui-imgedit", "")
    assert re.fullmatch(r"\d+\.\d+\.\d+", PYPROJECT["project"]["version"])


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    return set(out.stdout.split())


def test_package_root_and_mask_and_remote_code_import_without_heavy_packages():
    loaded = _imported_after(
        "import comfyui_imgedit, comfyui_imgedit.nodes.core.masks, comfyui_imgedit.nodes.core.edit, "
        "comfyui_imgedit.nodes.core.providers.dezgo, comfyui_imgedit.nodes.core.providers.modelslab, "
        "comfyui_imgedit.nodes.core.providers.local_models, comfyui_imgedit.nodes.core.providers.local_schedulers")
    assert not {"diffusers", "transformers", "accelerate", "peft", "comfy_api"} & loaded


def test_example_workflows_use_only_existing_node_ids():
    ids = set()
    for source in (ROOT / "nodes").glob("*.py"):
        ids |= set(re.findall(r'node_id="(ImgEdit\w+)"', source.read_text()))
    assert len(ids) == 16
    workflows = sorted((ROOT / "example_workflows").glob("*.json"))
    assert {w.stem for w in workflows} >= {"img2img_local", "inpaint_local", "img2img_checkpoint", "inpaint_checkpoint", "img2img_remote",
                                           "inpaint_crop_stitch_remote", "mask_prep", "outpaint_remote", "regions_two_prompts_remote"}
    for workflow in workflows:
        data = json.loads(workflow.read_text())
        used = {node["type"] for node in data["nodes"] if node["type"].startswith("ImgEdit")}
        assert used and used <= ids, workflow.name
        assert (workflow.with_suffix(".jpg")).is_file()
