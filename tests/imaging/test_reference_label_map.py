"""A reference mask's label map is declared, or unambiguous from its values and naming
(issue 18, point 7): a BraTS reference without label 4 is never read with GlioScope's map."""
from __future__ import annotations

import numpy as np
import pytest

from gliocore.imaging import labels
from gliocore.imaging.labels import infer_reference_map, reference_values


def test_brats_named_reference_without_label_4_is_read_as_brats():
    lgg = np.zeros((6, 6, 6), np.uint8)
    lgg[1:3] = 1       # necrosis / non-enhancing core
    lgg[3:5] = 2       # oedema
    m = infer_reference_map(reference_values(lgg), "BraTS18_2013_0_1_seg.nii.gz")
    assert m.name == "brats"
    assert not (m.checked_to_canonical(lgg) == 1).any()   # nothing read as enhancing


def test_values_decide_when_they_name_one_convention():
    assert infer_reference_map({1, 2, 4}, "s_ref.nii.gz").name == "brats"
    assert infer_reference_map({1, 2, 3}, "s_ref.nii.gz").name == "brats2023"
    assert infer_reference_map({1, 3}, "s_seg.nii.gz").name == "brats2023"
    assert infer_reference_map(set(), "s_ref.nii.gz").name == "glioscope"
    assert infer_reference_map({1, 2}, "s_truth.nii.gz").name == "glioscope"


@pytest.mark.parametrize("values,name", [({1, 2}, "s_ref.nii.gz"), ({1}, "s_mask.nii"),
                                         ({3, 4}, "s_seg.nii.gz"), ({1, 2, 5}, "s_ref.nii.gz")])
def test_ambiguous_reference_asks_for_the_flag(values, name):
    with pytest.raises(ValueError, match="--reference-label-map") as exc:
        infer_reference_map(values, name)
    assert name in str(exc.value)


def test_float_values_are_rounded():
    assert reference_values(np.array([0.0, 4.0000001, 1.0], np.float32)) == {1, 4}
    assert labels.AUTO == "auto"
