"""What users and the Comfy Registry rely on: dependencies, light imports, node ids in examples."""

import json
import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
COMFYUI_ARCHIVE = ROOT.parent / "shared" / "comfyui" / "ComfyUI-v0.3.64.tar.gz"


def _requirements(name: str = "requirements.txt") -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", requirement)[0]).lower()


def test_requirements_txt_is_identical_to_project_dependencies():
    assert _requirements() == PYPROJECT["project"]["dependencies"]


def test_requirements_diffusers_txt_is_identical_to_the_diffusers_extra():
    assert _requirements("requirements-diffusers.txt") == PYPROJECT["project"]["optional-dependencies"]["diffusers"]


def test_every_requirement_has_a_floor_and_no_pin():
    extras = PYPROJECT["project"]["optional-dependencies"]
    for requirement in PYPROJECT["project"]["dependencies"] + extras["diffusers"] + extras["standalone"]:
        assert ">=" in requirement and "==" not in requirement and "<" not in requirement.replace(">=", ""), requirement


def test_requirements_list_nothing_comfyui_already_installs():
    """ComfyUI-Manager runs requirements.txt in the user's ComfyUI: anything ComfyUI lists there would only
    risk moving the versions ComfyUI and every other pack run on. (The real-ComfyUI suite checks the same
    with pip's dry run in ComfyUI's environment.)"""
    if not COMFYUI_ARCHIVE.is_file():
        pytest.skip(f"{COMFYUI_ARCHIVE} is not beside the checkout")
    with tarfile.open(COMFYUI_ARCHIVE) as archive:
        text = archive.extractfile("ComfyUI/requirements.txt").read().decode()
    comfy = {_name(line) for line in text.splitlines() if line.strip() and not line.startswith("#")}
    assert comfy >= {"numpy", "pillow", "scipy", "safetensors", "transformers"}  # the archive is the one we think
    ours = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert not ours & comfy and ours <= {"requests", "urllib3"}
    assert {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["standalone"]} <= comfy


def test_every_python_package_folder_is_packaged():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {"comfyui_imgedit." + ".".join(p.parent.relative_to(ROOT).parts) if p.parent != ROOT else "comfyui_imgedit"
             for p in ROOT.glob("**/__init__.py")
             if not {"tests", "bench", ".venv", ".pypath", "build"} & set(p.relative_to(ROOT).parts)}
    assert found == listed


def test_torch_is_never_a_dependency():
    names = [re.split(r"[<>=!~\[; ]", dep)[0].lower() for dep in PYPROJECT["project"]["dependencies"]]
    assert not {"torch", "torchvision", "torchaudio"} & set(names)


def test_registry_metadata_is_present():
    comfy = PYPROJECT["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"]
    assert comfy["includes"] and all((ROOT / folder).is_dir() for folder in comfy["includes"])
    assert re.fullmatch(r">=\d+\.\d+\.\d+", comfy["requires-comfyui"])
    assert PYPROJECT["project"]["urls"]["Repository"].startswith("https://github.com/")
    assert (ROOT / PYPROJECT["project"]["license"]["file"]).is_file() and PYPROJECT["project"]["requires-python"]


def test_changelog_has_the_current_version():
    version = PYPROJECT["project"]["version"]
    assert re.search(rf"^## {re.escape(version)}\b", (ROOT / "CHANGELOG.md").read_text(), re.M), version
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
    for source in (ROOT / "nodes").glob("**/*.py"):
        ids |= set(re.findall(r'node_id="(ImgEdit\w+)"', source.read_text()))
    assert len(ids) == 16
    workflows = sorted((ROOT / "example_workflows").glob("*.json"))
    assert {w.stem for w in workflows} >= {"img2img_local", "inpaint_local", "img2img_checkpoint", "inpaint_checkpoint", "img2img_remote",
                                           "inpaint_crop_stitch_remote", "mask_prep", "edit_kontext", "inpaint_flux_fill",
                                           "outpaint_remote", "regions_two_prompts_remote"}
    for workflow in workflows:
        data = json.loads(workflow.read_text())
        used = {node["type"] for node in data["nodes"] if node["type"].startswith("ImgEdit")}
        assert used and used <= ids, workflow.name
        assert (workflow.with_suffix(".jpg")).is_file()
