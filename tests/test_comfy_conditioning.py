"""The reference checks of ImgEditComfyModel (ComfyUI-free part): one clear sentence per bad combination.

What each family's conditioning gives is compared with the core graphs in a real ComfyUI
(tests/comfyui/test_comfyui_9_model_families.py).
"""

from __future__ import annotations

import pytest
import torch

from comfyui_imgedit.nodes.runtime.conditioning import check_reference_inputs
from comfyui_imgedit.nodes.runtime.families import INSTRUCT_PIX2PIX, QWEN_EDIT, REFERENCE_LATENT, ModelTraits
from comfyui_imgedit.nodes.core.errors import InputError


def _traits(reference, config="Flux"):
    return ModelTraits(config=config, concat_inpaint=False, guidance_embed=False, reference=reference)


def _pictures(count):
    return torch.zeros((count, 16, 16, 3))


def test_reference_off_without_references_is_a_plain_edit():
    check_reference_inputs(_traits(None, "SD15"), False, None)  # no error: today's img2img / inpaint


@pytest.mark.parametrize("kind", [REFERENCE_LATENT, QWEN_EDIT, INSTRUCT_PIX2PIX])
def test_reference_on_a_model_with_a_reference_path_is_accepted(kind):
    check_reference_inputs(_traits(kind), True, None)


def test_reference_on_a_model_without_one_names_the_model_and_the_fix():
    with pytest.raises(InputError) as raised:
        check_reference_inputs(_traits(None, "SDXL"), True, None)
    text = str(raised.value)
    assert "SDXL" in text and "no reference path" in text and "turn reference off" in text


def test_references_with_reference_off_ask_to_turn_it_on():
    with pytest.raises(InputError, match="reference is off"):
        check_reference_inputs(_traits(REFERENCE_LATENT), False, _pictures(1))


def test_qwen_takes_at_most_two_more_pictures():
    check_reference_inputs(_traits(QWEN_EDIT, "QwenImage"), True, _pictures(2))
    with pytest.raises(InputError, match="at most 2 more"):
        check_reference_inputs(_traits(QWEN_EDIT, "QwenImage"), True, _pictures(3))


def test_kontext_takes_any_number_of_references():
    check_reference_inputs(_traits(REFERENCE_LATENT), True, _pictures(5))


def test_instruct_pix2pix_takes_no_extra_references():
    with pytest.raises(InputError, match="only the edited picture"):
        check_reference_inputs(_traits(INSTRUCT_PIX2PIX, "SD15_instructpix2pix"), True, _pictures(1))
