"""gliocore.features.radiomics (extraction), .params and .pyradiomics_bridge: feature keys, identity with
plain PyRadiomics, failures, parameters."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from radiomics.featureextractor import RadiomicsFeatureExtractor

from gliocore.features import params as gp
from gliocore.features import pyradiomics_bridge as gb
from gliocore.features import radiomics as gr
from gliocore.errors import GeometryMismatchError
from gliocore.imaging.io import load_volume
from gliocore.imaging.nrrd import volume_from_sitk
from gliocore.imaging.volume import Volume
from gliocore.types import SEQUENCES, TumourClass

SHAPE = {"original_shape_MeshVolume", "original_shape_Maximum3DDiameter"}
PER_SEQ = {"original_firstorder_Mean", "original_firstorder_Variance",
           "original_gldm_GrayLevelNonUniformity"}

# An anisotropic, axis-flipped affine with an offset: exercises spacing, RAS->LPS and origin.
AFFINE = np.array([[-0.9, 0.0, 0.0, 30.0],
                   [0.0, 1.1, 0.0, -12.5],
                   [0.0, 0.0, 2.5, 7.0],
                   [0.0, 0.0, 0.0, 1.0]])

YAML_PARAMS = """\
imageType:
  Original: {}
  LoG:
    sigma: [1.0]
featureClass:
  shape: [MeshVolume, Sphericity]
  firstorder: [Mean, Kurtosis]
  glcm: [Contrast, Idmn]
  glszm:
setting:
  binWidth: 10
"""


def make_case(rng: np.random.Generator, shape=(28, 26, 18)) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Four int16 sequences with a two-class 'tumour' (CE shell around NE core) and noise."""
    grid = np.indices(shape).astype(float)
    centre = np.array([13.0, 12.0, 8.0])[:, None, None, None]
    r = np.sqrt((((grid - centre) * np.array([0.9, 1.1, 2.5])[:, None, None, None]) ** 2).sum(0))
    mask = np.zeros(shape, np.uint8)
    mask[r < 9] = 1
    mask[r < 5.5] = 2
    images = {}
    for n, seq in enumerate(SEQUENCES):
        img = 200 + 40 * n + 150 * (mask == 1) + 60 * (mask == 2) + rng.normal(0, 30, shape)
        images[seq] = np.clip(img, 0, None).astype(np.int16)
    return images, mask


def write_case(tmp_path: Path, images: dict[str, np.ndarray], mask: np.ndarray,
               affine=AFFINE) -> tuple[dict[str, Path], Path]:
    paths = {}
    for seq, arr in images.items():
        paths[seq] = tmp_path / f"{seq}.nii.gz"
        nib.save(nib.Nifti1Image(arr, affine), paths[seq])
    mpath = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask, affine), mpath)
    return paths, mpath


def reference(paths: dict[str, Path], mpath: Path, params: dict) -> dict[tuple[int, str], dict]:
    """Plain PyRadiomics on the files: one execute per sequence and label (as the seed did)."""
    ex = RadiomicsFeatureExtractor(params)
    out = {}
    for label in (1, 2):
        for seq, p in paths.items():
            res = ex.execute(str(p), str(mpath), label=label)
            out[(label, seq)] = {k: float(v) for k, v in res.items()
                                 if not k.startswith("diagnostics_")}
    return out


def assert_identical(rows: list[gr.FeatureValue], ref: dict, rtol: float = 1e-9) -> int:
    n = 0
    first_seq = next(iter(dict.fromkeys(k[1] for k in ref)))
    expected_keys = {(lab, seq, k) for (lab, seq), feats in ref.items() for k in feats
                     if not k.startswith("original_shape_")}
    expected_keys |= {(lab, "", k) for (lab, seq), feats in ref.items() for k in feats
                      if k.startswith("original_shape_")}
    got_keys = {(r.tumour_class.canonical_label, r.sequence, r.feature) for r in rows}
    assert got_keys == expected_keys
    for r in rows:
        label = r.tumour_class.canonical_label
        expected = ref[(label, r.sequence or first_seq)][r.feature]
        assert r.reason is None, r
        assert r.value is not None
        assert np.isclose(r.value, expected, rtol=rtol, atol=0), (r, expected)
        n += 1
    # Shape features are the same whichever sequence PyRadiomics was given.
    for (label, seq), feats in ref.items():
        for k, v in feats.items():
            if k.startswith("original_shape_"):
                assert v == ref[(label, first_seq)][k]
    return n


@pytest.fixture
def case(tmp_path, rng):
    images, mask = make_case(rng)
    paths, mpath = write_case(tmp_path, images, mask)
    vols = {seq: load_volume(p) for seq, p in paths.items()}  # float32, as the pipeline loads
    return images, mask, paths, mpath, vols


def disk_affine(vols: dict[str, Volume]) -> np.ndarray:
    """The affine as read back from disk (float32 sform): what SimpleITK sees too."""
    return next(iter(vols.values())).affine


class TestDefaultSet:
    def test_keys(self, case):
        _, mask, _, _, vols = case
        rows = gr.extract_features(vols, mask, disk_affine(vols))
        for cls in TumourClass:
            mine = [r for r in rows if r.tumour_class is cls]
            shape_rows = [r for r in mine if r.sequence == ""]
            assert {r.feature for r in shape_rows} == SHAPE and len(shape_rows) == 2
            for seq in SEQUENCES:
                seq_rows = [r for r in mine if r.sequence == seq]
                assert {r.feature for r in seq_rows} == PER_SEQ and len(seq_rows) == 3
            assert len(mine) == 2 + 3 * len(SEQUENCES)
        assert all(r.value is not None and r.reason is None for r in rows)

    def test_identical_to_plain_pyradiomics(self, case):
        _, mask, paths, mpath, vols = case
        rows = gr.extract_features(vols, mask, disk_affine(vols))
        ref = reference(paths, mpath, gp.DEFAULT_PARAMS)
        assert assert_identical(rows, ref, rtol=0) == 28  # bit-identical

    def test_stored_dtype_and_margin_do_not_matter(self, case):
        _, mask, paths, mpath, _ = case
        vols16 = {seq: load_volume(p, dtype=None) for seq, p in paths.items()}
        a = gr.extract_features(vols16, mask, disk_affine(vols16), margin=0)
        b = gr.extract_features(vols16, mask, disk_affine(vols16), margin=40)
        assert [(r.feature, r.value) for r in a] == [(r.feature, r.value) for r in b]
        assert_identical(a, reference(paths, mpath, gp.DEFAULT_PARAMS), rtol=0)


def test_yaml_params_with_log_filter(case, tmp_path):
    _, mask, paths, mpath, vols = case
    yaml_path = tmp_path / "params.yaml"
    yaml_path.write_text(YAML_PARAMS)
    params = gp.load_params(yaml_path)
    assert gp.crop_is_exact(params)[0] is False  # LoG: whole image is used
    images2 = {k: vols[k] for k in ("t1c", "flair")}
    rows = gr.extract_features(images2, mask, disk_affine(vols), params)
    ref = reference({k: paths[k] for k in images2}, mpath, params)
    n = assert_identical(rows, ref, rtol=1e-9)
    features = {r.feature for r in rows}
    assert "log-sigma-1-0-mm-3D_glcm_Contrast" in features
    assert "original_glszm_ZoneEntropy" in features
    assert {f for f in features if "shape" in f} == {"original_shape_MeshVolume",
                                                      "original_shape_Sphericity"}
    assert n == 2 * (2 + 2 * (2 * 2 + 2 * 2 + 16 * 2))


def test_cropped_path_with_extra_classes_matches(case):
    """Original-only parameters with several classes and 2-D/resegmentation settings: crop exact."""
    _, mask, paths, mpath, vols = case
    params = gp.load_params({"imageType": {"Original": {}},
                             "featureClass": {"glcm": [], "glrlm": [], "ngtdm": [], "gldm": [],
                                              "firstorder": []},
                             "setting": {"binWidth": 15, "resegmentRange": [-2, 2],
                                         "resegmentMode": "sigma", "voxelArrayShift": 100}})
    assert gp.crop_is_exact(params)[0]
    images1 = {"t2": vols["t2"]}
    rows = gr.extract_features(images1, mask, disk_affine(vols), params)
    assert_identical(rows, reference({"t2": paths["t2"]}, mpath, params), rtol=1e-12)


class TestFailures:
    def test_empty_label(self, case):
        images, mask, _, _, vols = case
        mask = mask.copy()
        mask[mask == 1] = 0
        rows = gr.extract_features(vols, mask, disk_affine(vols))
        ce = [r for r in rows if r.tumour_class is TumourClass.ENHANCING]
        ne = [r for r in rows if r.tumour_class is TumourClass.NON_ENHANCING]
        assert len(ce) == 14 and all(r.value is None and r.reason == "label empty" for r in ce)
        assert {r.feature for r in ce if r.sequence == ""} == SHAPE
        assert {r.feature for r in ce if r.sequence == "t1"} == PER_SEQ
        assert len(ne) == 14 and all(r.value is not None and r.reason is None for r in ne)

    def test_one_voxel_label(self, case):
        _, mask, _, _, vols = case
        mask = mask.copy()
        mask[mask == 2] = 1
        mask[0, 0, 0] = 2
        rows = gr.extract_features(vols, mask, disk_affine(vols))
        ne = [r for r in rows if r.tumour_class is TumourClass.NON_ENHANCING]
        assert len(ne) == 14
        assert all(r.value is None and r.reason == "label has 1 voxel" for r in ne)
        ce = [r for r in rows if r.tumour_class is TumourClass.ENHANCING]
        assert all(r.value is not None for r in ce)

    def test_empty_label_with_arbitrary_params_uses_their_names(self, case, tmp_path):
        _, mask, _, _, vols = case
        yaml_path = tmp_path / "params.yaml"
        yaml_path.write_text(YAML_PARAMS)
        params = gp.load_params(yaml_path)
        empty = np.where(mask == 2, 0, mask).astype(np.uint8)
        rows = gr.extract_features({"t1": vols["t1"]}, empty, disk_affine(vols), params)
        ne = [r for r in rows if r.tumour_class is TumourClass.NON_ENHANCING]
        ce = [r for r in rows if r.tumour_class is TumourClass.ENHANCING]
        assert [(r.sequence, r.feature) for r in ne] == [(r.sequence, r.feature) for r in ce]
        assert all(r.value is None and r.reason == "label empty" for r in ne)

    def test_pyradiomics_error_becomes_reason(self, case):
        """A flat (one-slice) label with minimumROIDimensions 3 makes PyRadiomics raise."""
        _, mask, _, _, vols = case
        flat = np.zeros_like(mask)
        flat[10:14, 10:14, 5] = 1
        flat[mask == 2] = 2
        params = gp.load_params(None)
        params["setting"]["minimumROIDimensions"] = 3
        rows = gr.extract_features({"t1": vols["t1"]}, flat, disk_affine(vols), params)
        ce = [r for r in rows if r.tumour_class is TumourClass.ENHANCING]
        assert ce and all(r.value is None and "ValueError" in r.reason for r in ce)
        ne = [r for r in rows if r.tumour_class is TumourClass.NON_ENHANCING]
        assert all(r.value is not None for r in ne)

    def test_grid_mismatch(self, case):
        _, mask, _, _, vols = case
        with pytest.raises(GeometryMismatchError, match="resample the mask"):
            gr.extract_features(vols, mask[:-1], disk_affine(vols))
        shifted = disk_affine(vols).copy()
        shifted[0, 3] += 1
        with pytest.raises(GeometryMismatchError, match="affine"):
            gr.extract_features(vols, mask, shifted)


class TestParams:
    def test_default_is_a_copy(self):
        p = gp.load_params(None)
        assert p == gp.DEFAULT_PARAMS and p is not gp.DEFAULT_PARAMS
        p["featureClass"]["shape"].append("Sphericity")
        assert "Sphericity" not in gp.DEFAULT_PARAMS["featureClass"]["shape"]

    @pytest.mark.parametrize("text, match", [
        ("", "is empty"),
        ("imageType: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("featureClas:\n  glcm:\n", "unknown top-level key"),
        ("setting:\n  binWidth: -3\n", "schema"),
        ("featureClass:\n  glcm: [NoSuchFeature]\n", "no feature 'NoSuchFeature'"),
        ("featureClass:\n  texture: []\n", "unknown feature class"),
    ])
    def test_bad_yaml(self, tmp_path, text, match):
        p = tmp_path / "bad.yaml"
        p.write_text(text)
        with pytest.raises(ValueError, match=match) as info:
            gp.load_params(p)
        assert str(p) in str(info.value)

    def test_missing_file(self, tmp_path):
        with pytest.raises(ValueError, match="does not exist"):
            gp.load_params(tmp_path / "nope.yaml")

    def test_fingerprint(self):
        a = gp.load_params(None)
        b = gp.load_params(None)
        assert gp.params_fingerprint(a) == gp.params_fingerprint(b)
        assert len(gp.params_fingerprint(a)) == 64
        reordered = {"setting": a["setting"], "featureClass": a["featureClass"],
                     "imageType": a["imageType"]}
        assert gp.params_fingerprint(reordered) == gp.params_fingerprint(a)
        b["setting"]["binWidth"] = 10
        assert gp.params_fingerprint(b) != gp.params_fingerprint(a)
        c = gp.load_params(None)
        c["featureClass"]["firstorder"].append("Median")
        assert gp.params_fingerprint(c) != gp.params_fingerprint(a)


def test_volume_from_sitk_roundtrip(case):
    import SimpleITK as sitk

    _, _, paths, _, vols = case
    vol = volume_from_sitk(sitk.ReadImage(str(paths["t1"])))
    assert np.array_equal(vol.data, vols["t1"].data)
    assert np.allclose(vol.affine, AFFINE, atol=1e-6)


def test_extract_features_from_files_matches(case):
    _, _, paths, mpath, _ = case
    got = gr.extract_features_from_files(paths["flair"], mpath, None, label=2)
    ref = reference({"flair": paths["flair"]}, mpath, gp.DEFAULT_PARAMS)[(2, "flair")]
    assert got == ref


@pytest.mark.slow
def test_real_case_identical(shared_dir, tmp_path):
    from gliocore.imaging.labels import BRATS

    base = shared_dir / "cases" / "TCGA-DU-7294"
    files = {"t1": "t1", "t1c": "t1c", "t2": "t2", "flair": "fla"}
    paths = {seq: base / f"TCGA-DU-7294_{tag}_bet.nii.gz" for seq, tag in files.items()}
    seg = load_volume(base / "algorithm_segmentations" / "hnfnetv1-20.nii.gz", dtype=None)
    mask = BRATS.to_canonical(seg.data)
    assert (mask == 1).sum() > 1 and (mask == 2).sum() > 1
    mpath = tmp_path / "canonical.nii.gz"
    nib.save(nib.Nifti1Image(mask, seg.affine), mpath)
    vols = {seq: load_volume(p) for seq, p in paths.items()}
    rows = gr.extract_features(vols, mask, seg.affine)
    # Speed is measured by benchmarks/bench_radiomics.py, not asserted here.
    assert assert_identical(rows, reference(paths, mpath, gp.DEFAULT_PARAMS), rtol=0) == 28


def test_extract_features_from_files_empty_label_raises(case):
    from gliocore.errors import FeatureExtractionError

    _, _, paths, mpath, _ = case
    with pytest.raises(FeatureExtractionError, match="label empty"):
        gr.extract_features_from_files(paths["t1"], mpath, None, label=7)


class TestIssue8:
    """Issue 8 points 6, 8 and 9: stored types, margin, feature-code version in the cache key."""

    FILTERED = {
        "resampling": {"imageType": {"Original": {}},
                       "featureClass": {"firstorder": [], "glcm": []},
                       "setting": {"binWidth": 25, "resampledPixelSpacing": [1, 1, 1],
                                   "interpolator": "sitkBSpline"}},
        "log": {"imageType": {"LoG": {"sigma": [1.0, 2.0]}},
                "featureClass": {"firstorder": [], "glcm": []}, "setting": {"binWidth": 5}},
        "wavelet": {"imageType": {"Wavelet": {}},
                    "featureClass": {"firstorder": [], "glcm": []}, "setting": {"binWidth": 5}},
    }

    @pytest.mark.parametrize("kind", sorted(FILTERED))
    def test_filtered_int16_files_identical(self, case, kind):
        """Volumes loaded as float32 (as the pipeline does) still reach PyRadiomics as int16."""
        _, mask, paths, mpath, vols = case
        params = gp.load_params(self.FILTERED[kind])
        assert gp.crop_is_exact(params)[0] is False
        assert vols["t2"].data.dtype == np.float32 and gb.stored_dtype(paths["t2"]) == np.int16
        rows = gr.extract_features({"t2": vols["t2"]}, mask, disk_affine(vols), params)
        assert assert_identical(rows, reference({"t2": paths["t2"]}, mpath, params), rtol=0) > 0

    def test_label_filling_its_box(self, case):
        """margin=0 on a label that fills its bounding box returns values, whatever the margin."""
        _, _, paths, _, vols = case
        box = np.zeros(vols["t1"].shape, np.uint8)
        box[4:12, 5:14, 3:9] = 1
        box[15:20, 6:12, 4:10] = 2
        runs = [gr.extract_features(vols, box, disk_affine(vols), margin=m) for m in (0, 1, 3, 50)]
        assert all(r.value is not None and r.reason is None for r in runs[0])
        for other in runs[1:]:
            assert [(r.feature, r.value) for r in other] == [(r.feature, r.value) for r in runs[0]]
        mpath = paths["t1"].parent / "box.nii.gz"
        nib.save(nib.Nifti1Image(box, AFFINE), mpath)
        assert_identical(runs[0], reference(paths, mpath, gp.DEFAULT_PARAMS), rtol=0)

    def test_code_version_in_cache_key(self, monkeypatch):
        params = gp.load_params(None)
        before = gp.params_fingerprint(params)
        monkeypatch.setattr(gp, "FEATURE_CODE_VERSION", gp.FEATURE_CODE_VERSION + "-changed")
        assert gp.params_fingerprint(params) != before


class TestFilterCrop:
    """Filters on a crop with a margin covering their support (issue 11): wavelet exact, LoG ≤ 1e-9."""

    @staticmethod
    def big_case(tmp_path: Path, rng: np.random.Generator, touch_edge: bool = False):
        shape = (46, 40, 30)
        grid = np.indices(shape).astype(float)
        centre = np.array([14.0 if touch_edge else 23.0, 20.0, 2.0 if touch_edge else 15.0])
        r = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
        mask = np.zeros(shape, np.uint8)
        mask[r < 5] = 2
        mask[(r >= 3) & (r < 5) & (rng.random(shape) > 0.3)] = 1  # speckled shell: holes
        image = (300 + 120 * (mask == 1) + 50 * (mask == 2) + rng.normal(0, 40, shape)
                 + 0.5 * grid[0] * grid[1]).astype(np.int16)
        paths, mpath = write_case(tmp_path, {"t1": image}, mask)
        return mask, paths, mpath, {"t1": load_volume(paths["t1"])}

    @pytest.mark.parametrize("wavelet, touch_edge", [({}, False), ({}, True),
                                                     ({"wavelet": "db2", "level": 2}, False),
                                                     ({"start_level": 1}, True)],
                             ids=["coif1", "coif1-edge", "db2-2levels", "start1-edge"])
    def test_wavelet_crop_identical(self, tmp_path, rng, wavelet, touch_edge):
        mask, paths, mpath, vols = self.big_case(tmp_path, rng, touch_edge)
        params = gp.load_params({"imageType": {"Original": {}, "Wavelet": wavelet},
                                 "featureClass": {"firstorder": [], "glcm": ["Contrast", "Idmn"],
                                                  "glszm": ["ZoneEntropy"]},
                                 "setting": {"binWidth": 10}})
        need = gp.crop_margin(params, (0.9, 1.1, 2.5))
        import pywt

        w = pywt.Wavelet(wavelet.get("wavelet", "coif1"))
        levels = wavelet.get("start_level", 0) + wavelet.get("level", 1)
        assert list(need) == [w.dec_len * levels] * 3
        # the crop really is smaller than the image along some axis
        assert 2 * need[0] + 11 < mask.shape[0]
        rows = gr.extract_features(vols, mask, disk_affine(vols), params)
        assert assert_identical(rows, reference(paths, mpath, params), rtol=0) > 100

    @pytest.mark.parametrize("touch_edge", [False, True], ids=["interior", "edge"])
    def test_log_crop_within_bound(self, tmp_path, rng, touch_edge):
        mask, paths, mpath, vols = self.big_case(tmp_path, rng, touch_edge)
        params = gp.load_params({"imageType": {"LoG": {"sigma": [0.5, 1.0]}},
                                 "featureClass": {"firstorder": [], "glcm": ["Contrast", "Idmn"],
                                                  "gldm": []},
                                 "setting": {"binWidth": 5}})
        need = gp.crop_margin(params, (0.9, 1.1, 2.5))
        assert list(need) == [int(np.ceil(gp.LOG_MARGIN_SIGMAS * 1.0 / s)) for s in (0.9, 1.1, 2.5)]
        rows = gr.extract_features(vols, mask, disk_affine(vols), params)
        assert assert_identical(rows, reference(paths, mpath, params), rtol=1e-9) > 50
        # the sigma-0.5 pass really was cropped (margin 10 < 46 - 10 voxels along the first axis)
        assert int(np.ceil(gp.LOG_MARGIN_SIGMAS * 0.5 / 0.9)) * 2 + 10 < mask.shape[0]

    def test_no_crop_when_not_covered(self):
        for params in ({"setting": {"normalize": True}},
                       {"imageType": {"Square": {}}},
                       {"setting": {"resampledPixelSpacing": [1, 1, 1]}}):
            assert gp.crop_margin(gp.load_params(params), (1.0, 1.0, 1.0)) is None
        assert list(gp.crop_margin(gp.load_params(None), (1.0, 1.0, 1.0))) == [0, 0, 0]


@pytest.mark.shared
@pytest.mark.slow
def test_real_cases_filters_within_bound(shared_dir, tmp_path):
    """LoG (sigma 1, 3) + Wavelet + Original, all classes, on real FLAIR: ≤ 1e-9 relative (LoG crop
    bound) and wavelet/original bit-identical, against PyRadiomics on the files."""
    from gliocore.imaging.labels import BRATS

    for name in ("Brats18_TCIA01_378_1", "Brats18_TCIA13_623_1"):
        base = shared_dir / "cases" / "brats18-dev" / name
        seg = nib.load(base / f"{name}_seg.nii.gz")
        mask = BRATS.to_canonical(np.asanyarray(seg.dataobj))
        mpath = tmp_path / f"{name}_mask.nii.gz"
        nib.save(nib.Nifti1Image(mask, seg.affine, seg.header), mpath)
        flair = base / f"{name}_flair.nii.gz"
        params = gp.load_params({"imageType": {"Original": {}, "LoG": {"sigma": [1.0, 3.0]},
                                               "Wavelet": {}}})
        vols = {"flair": load_volume(flair)}
        mvol = load_volume(mpath, dtype=None)
        rows = gr.extract_features(vols, mvol.data, mvol.affine, params)
        ref = reference({"flair": flair}, mpath, params)
        assert assert_identical(rows, ref, rtol=1e-9) > 1000
        exact = [r for r in rows if not r.feature.startswith("log-")]
        assert_identical_subset = {(r.tumour_class.canonical_label, r.feature): r.value for r in exact}
        for (label, feature), value in assert_identical_subset.items():
            assert value == ref[(label, "flair")][feature], (name, label, feature)
