"""The stacked segmenter (rules' output as features of the learned trees): features, shipped
models, and the recorded held-out figures."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from gliocore.segment import get_segmenter
from gliocore.segment.learned import Decision, file_sha256, load_manifest, load_models
from gliocore.segment.learned_features import FEATURES, compute_features
from gliocore.segment.rule_features import (RULE_FEATURES, SD_CLIP_MM, rule_feature_volume,
                                            signed_distance)
from gliocore.segment.stacked import MODEL_DIR, STACKED, segment_arrays, with_rules

from test_segment_learned import _phantom, _subject, _volumes

REPO = Path(__file__).resolve().parents[2]


def test_signed_distance_is_in_mm_negative_inside_and_clipped():
    mask = np.zeros((40, 40, 40), dtype=bool)
    mask[10:30, 10:30, 10:30] = True
    sd = signed_distance(mask, (2.0, 1.0, 1.0))
    assert sd[20, 20, 20] < 0 < sd[20, 20, 35]
    assert sd[20, 20, 35] == pytest.approx(6.0)  # 6 voxels of 1 mm past the face at k = 29
    assert sd[35, 20, 20] == pytest.approx(12.0)  # 6 voxels of 2 mm along axis 0
    assert sd.max() <= SD_CLIP_MM and sd.min() >= -SD_CLIP_MM
    empty = signed_distance(np.zeros_like(mask), (1.0, 1.0, 1.0))
    assert (empty == SD_CLIP_MM).all(), "no rule tumour: everything 'far outside'"


def test_rule_channels_follow_the_rules_classes_and_are_zero_outside_the_brain():
    labels = np.zeros((30, 30, 30), dtype=np.uint8)
    labels[10:20, 10:20, 10:20] = 2
    labels[12:16, 12:16, 12:16] = 1
    brain = np.zeros(labels.shape, dtype=bool)
    brain[2:28, 2:28, 2:28] = True
    vol = rule_feature_volume(labels, brain, (1.0, 1.0, 1.0))
    assert vol.shape == (len(RULE_FEATURES),) + labels.shape
    ce, ne, sd, wt3, ce3 = vol
    assert ce[13, 13, 13] == 1 and ne[13, 13, 13] == 0 and ne[18, 18, 18] == 1
    assert sd[15, 15, 15] < 0 < sd[25, 25, 25]
    assert 0 < wt3[20, 15, 15] < 1 and ce3[14, 14, 14] > ce3[18, 18, 18]
    assert not vol[:, ~brain].any()


def test_with_rules_appends_the_rule_channels_to_the_intensity_features(rng):
    arrays = _phantom(rng, (40, 44, 36))
    fv = compute_features(arrays, (1.0, 1.0, 1.0), 0)
    rules = np.zeros(arrays[0].shape, dtype=np.uint8)
    rules[18:26, 18:26, 14:22] = 2
    st = with_rules(fv, rules, (1.0, 1.0, 1.0))
    assert st.names == STACKED == FEATURES + RULE_FEATURES
    assert st.values.shape[0] == len(STACKED)
    np.testing.assert_array_equal(st.values[:len(FEATURES)], fv.values)
    where = st.brain.copy()
    assert st.columns(["rule_ne"], where).max() == 1.0
    np.testing.assert_array_equal(st.columns(["t1_g1"], where), fv.columns(["t1_g1"], where))


def test_model_checksums_enter_the_cache_key_and_a_changed_file_is_refused(tmp_path):
    manifest = load_manifest(MODEL_DIR)
    assert manifest["features"] == list(STACKED)
    for name, digest in manifest["files"].items():
        assert file_sha256(MODEL_DIR / name) == digest
    size = sum((MODEL_DIR / n).stat().st_size for n in manifest["files"])
    assert size <= 20 * 2 ** 20
    final, fold = get_segmenter("stacked"), get_segmenter("stacked", model="fold0")
    learned = get_segmenter("learned")
    assert final.weights_checksum in final.cache_token()
    assert len({final.cache_token(), fold.cache_token(), learned.cache_token()}) == 3
    copy = tmp_path / "stacked"
    shutil.copytree(MODEL_DIR, copy)
    (copy / "final_full.joblib").write_bytes(b"not the model")
    with pytest.raises(ValueError, match="checksum"):
        load_models("final", copy)


@pytest.mark.shared
def test_a_fold_model_reproduces_the_recorded_held_out_dice(shared_dir):
    """Re-run a stacked fold model (rules included) on a case it never saw: cv.json's Dice."""
    sys.path.insert(0, str(REPO / "scripts"))
    from train_learned_segmenter import load_case

    from gliocore.segment.qc import dice

    cv = json.loads((MODEL_DIR / "cv.json").read_text())
    manifest = load_manifest(MODEL_DIR)
    for r in cv["cases"]:
        assert r["case"] in manifest["folds"][r["fold"]]
    row = cv["cases"][-1]
    folder = next(p for sub in ("brats18-dev", "brats18-train")
                  for p in (shared_dir / "cases" / sub).glob(row["case"]))
    arrays, ref, spacing, lr_axis = load_case(folder)
    decision = Decision(**row.get("decision", {}))  # chosen without this case (nested)
    pred, _ = segment_arrays(arrays, spacing, lr_axis, load_models(row["fold"], MODEL_DIR),
                             decision=decision)
    assert dice(pred > 0, ref > 0) == pytest.approx(row["dice_WT"], abs=1e-4)
    assert dice(pred == 1, ref == 1) == pytest.approx(row["dice_CE"], abs=1e-4)
    assert dice(pred == 2, ref == 2) == pytest.approx(row["dice_NE"], abs=1e-4)


def test_the_shipped_decision_is_recorded_and_enters_the_cache_key(tmp_path, monkeypatch):
    """The CE decision the manifest records is the one the segmenter applies, and changing it
    changes the cache key (labels change, so cached masks must not be reused)."""
    manifest = load_manifest(MODEL_DIR)
    chosen = Decision.from_manifest(manifest)
    if "decision" in manifest:
        assert set(manifest["decision"]["chosen"]) == {"ce_share", "min_ce_mm3"}
    seg = get_segmenter("stacked")
    token = seg.weights_checksum
    copy = tmp_path / "stacked"
    shutil.copytree(MODEL_DIR, copy)
    other = dict(manifest, decision={"chosen": {"ce_share": chosen.ce_share + 0.05,
                                                "min_ce_mm3": chosen.min_ce_mm3}})
    (copy / "manifest.json").write_text(json.dumps(other))
    monkeypatch.setattr(type(seg), "model_dir", copy)
    assert get_segmenter("stacked").weights_checksum != token


def test_the_ce_decision_is_chosen_without_the_case_it_scores():
    """``tune_stacked_decision.choose`` picks the grid entry meeting most enhancement targets
    on the cases it is given (then mean CE Dice), so a case's own figures cannot pick it."""
    sys.path.insert(0, str(REPO / "scripts"))
    import tune_stacked_decision as tune

    n = len(tune.GRID)

    def row(dice_ce, pred, ref):
        return {"dice_CE": dice_ce, "pred_CE_cm3": pred, "ref_CE_cm3": ref}

    # case a (small enhancement) is met only by entry 3; case b (large) by every entry but 3,
    # best at entry 5; case c has no target (2-5 cm³) and prefers entry 7.
    table = {"a": [row(0.2, 1.5 if i == 3 else 5.0, 1.0) for i in range(n)],
             "b": [row(0.9 if i == 5 else 0.6 if i == 3 else 0.8, 30, 30) for i in range(n)],
             "c": [row(0.9 if i == 7 else 0.5, 3.0, 3.0) for i in range(n)]}
    assert tune.meets(table["a"][3]) and not tune.meets(table["a"][0])
    assert tune.meets(table["c"][0]) is None
    assert tune.choose(table, ["b"]) == 5
    assert tune.choose(table, ["a"]) == 3
    assert tune.choose(table, ["b", "c"]) == 7  # b's target met by both: best mean CE Dice
    assert tune.choose(table, ["a", "b"]) == 5  # one target either way: mean CE Dice decides


def test_on_a_partial_flair_scan_the_rules_see_only_the_covered_part(rng, monkeypatch):
    """Where FLAIR covers only part of the brain, the rules run on the part all four sequences
    cover (3.0 ran them on the scan as given, zero slab included, and lost 0.15 WT Dice on
    such scans); the trees predict it, the FLAIR-free twin the rest, and the scan says so."""
    from gliocore.segment import degrade, stacked

    seen = []
    real_rules = stacked.rule_arrays

    def spy(*arrays, **kwargs):
        seen.append([np.array(a) for a in arrays])
        return real_rules(*arrays, **kwargs)

    monkeypatch.setattr(stacked, "rule_arrays", spy)
    full = _phantom(rng)
    cut = degrade.partial_coverage(full, 3, 2 / 3, 2)
    gone = (full[3] > 0) & (cut[3] == 0)
    assert gone.any()
    seg = get_segmenter("stacked")
    with seg:
        mask = seg.segment(_subject("cut"), _volumes(cut))
    assert any(w.startswith("FLAIR does not cover") for w in seg.input_warnings_["cut"])
    assert set(np.unique(mask)) <= {0, 1, 2} and (mask > 0).any()
    (given,) = seen
    for a in given:  # every sequence blanked where FLAIR is missing, kept where it is not
        assert not a[gone].any()
    np.testing.assert_array_equal(given[0][cut[3] > 0], full[0][cut[3] > 0])
    seen.clear()
    segment_arrays(full, (1.0, 1.0, 1.0), 0, load_models("final", MODEL_DIR))
    np.testing.assert_array_equal(seen[0][3], full[3])  # a complete scan goes in as it is
