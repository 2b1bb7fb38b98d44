"""nnU-Net v2 backend, end to end, on a tiny model folder in nnU-Net v2's exact format.

:func:`build_nnunetv2_model` writes ``dataset.json``, ``plans.json`` and
``fold_0/checkpoint_final.pth`` as nnU-Net v2 training leaves them: the checkpoint holds
``network_weights`` (the state dict of the ``PlainConvUNet`` that
``nnUNetTrainer.build_network_architecture`` builds from the plans, random weights),
``trainer_name``, ``init_args`` and ``inference_allowed_mirroring_axes``.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gliocore.cohort.subjects import load_subject_images  # noqa: E402
from gliocore.errors import SegmenterUnavailableError  # noqa: E402
from gliocore.segment import available_segmenters  # noqa: E402
from gliocore.segment.checks import DLInputWarning  # noqa: E402
from gliocore.segment.nnunetv2 import (MODEL_ENV, NnUNetV2Segmenter,  # noqa: E402
                                       channels_from_dataset_json, parse_channels)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_segment_hdglio import run_backend as run, write_subject  # noqa: E402

HAVE_NNUNETV2 = True
try:
    import nnunetv2  # noqa: F401
except ImportError:
    HAVE_NNUNETV2 = False
needs_nnunetv2 = pytest.mark.skipif(not HAVE_NNUNETV2, reason="nnunetv2 not installed")

BRATS_LABELS = {"background": 0, "necrosis": 1, "edema": 2, "enhancing": 3}


def tiny_plans(patch=(16, 16, 16), n_stages=3, base=4, spacing=(1.0, 1.0, 1.0),
               reader="SimpleITKIO") -> dict:
    conv = "torch.nn.modules.conv.Conv3d"
    return {
        "dataset_name": "Dataset999_Tiny", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(spacing),
        "original_median_shape_after_transp": list(patch),
        "image_reader_writer": reader, "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2], "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(i): {"max": 200.0, "mean": 120.0, "median": 120.0, "min": 0.0,
                     "percentile_00_5": 50.0, "percentile_99_5": 190.0, "std": 20.0}
            for i in range(4)},
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": list(patch), "median_image_size_in_voxels": list(patch),
            "spacing": list(spacing), "normalization_schemes": ["ZScoreNormalization"] * 4,
            "use_mask_for_norm": [True] * 4,
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0,
                                          "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0,
                                         "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {
                    "n_stages": n_stages,
                    "features_per_stage": [base * 2 ** i for i in range(n_stages)],
                    "conv_op": conv, "kernel_sizes": [[3, 3, 3]] * n_stages,
                    "strides": [[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1),
                    "n_conv_per_stage": [2] * n_stages, "n_conv_per_stage_decoder": [2] * (n_stages - 1),
                    "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                    "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                    "nonlin_kwargs": {"inplace": True}},
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
            "batch_dice": False}},
    }


def build_nnunetv2_model(folder: Path, *, channel_names=None, labels=None, force_label=None,
                         seed=0, folds=(0,), **plan_kwargs) -> Path:
    """Write a trained-model folder nnU-Net v2 can load; ``force_label`` makes the network
    predict that label everywhere (constant logits from the output convolution's bias)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    channel_names = channel_names or {"0": "T1", "1": "T1c", "2": "T2", "3": "FLAIR"}
    labels = labels or BRATS_LABELS
    dataset = {"channel_names": channel_names, "labels": labels, "numTraining": 10,
               "file_ending": ".nii.gz"}
    plans = tiny_plans(**plan_kwargs)
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    n_in = determine_num_input_channels(pm, cm, dataset)
    n_out = pm.get_label_manager(dataset).num_segmentation_heads
    for k, fold in enumerate(folds):
        torch.manual_seed(seed + k)
        net = nnUNetTrainer.build_network_architecture(pm, cm, n_in, n_out,
                                                       enable_deep_supervision=True)
        if force_label is not None:
            for seg_layer in net.decoder.seg_layers:
                seg_layer.weight.data.zero_()
                seg_layer.bias.data.zero_()
                seg_layer.bias.data[force_label] = 5.0
        ckpt = {"network_weights": net.state_dict(), "optimizer_state": None,
                "grad_scaler_state": None,
                "logging": {"train_losses": [np.float64(0.1)]}, "_best_ema": None,
                "current_epoch": 1,
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": fold,
                              "dataset_json": dataset, "device": torch.device("cpu")},
                "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2)}
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(ckpt, folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("v2cohort")
    return [write_subject(root, "A", rng), write_subject(root, "B", rng),
            write_subject(root, "C", rng, affine=np.diag([1.0, 1.0, 1.5, 1.0]))]


@pytest.fixture(scope="module")
def model_random(tmp_path_factory):
    if not HAVE_NNUNETV2:
        pytest.skip("nnunetv2 not installed")
    return build_nnunetv2_model(tmp_path_factory.mktemp("v2") / "model", folds=(0, 1))


# -- option parsing (no nnunetv2 needed) -----------------------------------------------------
class TestOptions:
    def test_parse_channels(self):
        assert parse_channels("t1=0, t1c=1,t2=2,flair=3") == {"t1": 0, "t1c": 1, "t2": 2, "flair": 3}
        assert parse_channels({"T1C": 0, "flair": 1}) == {"t1c": 0, "flair": 1}
        with pytest.raises(ValueError, match="unknown sequence"):
            parse_channels("dwi=0")
        with pytest.raises(ValueError, match="same channel"):
            parse_channels("t1=0,t2=0")

    @pytest.mark.parametrize("names,expected", [
        ({"0": "T1", "1": "T1c", "2": "T2", "3": "FLAIR"}, {"t1": 0, "t1c": 1, "t2": 2, "flair": 3}),
        ({"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"}, {"t1": 0, "t1c": 1, "t2": 2, "flair": 3}),
        ({"0": "FLAIR", "1": "T1Gd"}, {"flair": 0, "t1c": 1}),
        ({"0": "T1-ce", "1": "T2-FLAIR"}, {"t1c": 0, "flair": 1}),
    ])
    def test_channels_from_dataset_json(self, names, expected):
        assert channels_from_dataset_json({"channel_names": names}) == expected

    def test_unknown_channel_name(self):
        with pytest.raises(ValueError, match="channels option"):
            channels_from_dataset_json({"channel_names": {"0": "DWI"}})

    def test_label_map_required(self, tmp_path):
        (tmp_path / "dataset.json").write_text(json.dumps({"labels": BRATS_LABELS}))
        with pytest.raises(ValueError, match="label_map is required.*enhancing"):
            NnUNetV2Segmenter(model_dir=tmp_path)

    def test_unavailable_without_model(self, monkeypatch, tmp_path):
        monkeypatch.delenv(MODEL_ENV, raising=False)
        reason = NnUNetV2Segmenter.unavailable_reason()
        assert reason and ("model" in reason or "not installed" in reason)
        assert "nnunetv2" in available_segmenters()
        with pytest.raises(SegmenterUnavailableError, match="does not exist"):
            NnUNetV2Segmenter(model_dir=tmp_path / "nope", label_map="brats2023").load()


# -- end to end ------------------------------------------------------------------------------
@needs_nnunetv2
class TestEndToEnd:
    def test_cache_token(self, model_random):
        a = NnUNetV2Segmenter(model_dir=model_random, label_map="3:ce,1:ne,2:ne")
        tok = a.cache_token()
        assert a.resolved_folds() == [0, 1]
        assert len(a.weights_checksum) == 64 and a.weights_checksum in tok
        assert "nnunetv2 2.8.1" in tok
        assert NnUNetV2Segmenter(model_dir=model_random, label_map="3:ce,1:ne,2:ne",
                                 mirroring=False).cache_token() != tok
        assert NnUNetV2Segmenter(model_dir=model_random, label_map="3:ce,1:ne,2:ne",
                                 folds=[0]).cache_token() != tok
        assert NnUNetV2Segmenter(model_dir=model_random, label_map="3:ce,1:ne,2:ne",
                                 channels="t1=1,t1c=0,t2=2,flair=3").cache_token() != tok
        assert NnUNetV2Segmenter(model_dir=model_random, label_map="3:ce,1:ne,2:ne",
                                 device="cpu", num_threads=1).cache_token() == tok
        assert a.parallel_safe is False

    def test_loaded_once_many_subjects(self, model_random, subjects, monkeypatch):
        from nnunetv2.inference import predict_from_raw_data as pfr
        calls = {"init": 0}
        real = pfr.nnUNetPredictor.initialize_from_trained_model_folder

        def counting(self, *a, **k):
            calls["init"] += 1
            return real(self, *a, **k)

        monkeypatch.setattr(pfr.nnUNetPredictor, "initialize_from_trained_model_folder", counting)
        seg = NnUNetV2Segmenter(model_dir=model_random, label_map="brats2023", mirroring=False)
        with seg:
            results = run(seg, subjects)
            assert seg.channels_ == {"t1": 0, "t1c": 1, "t2": 2, "flair": 3}
            assert len(seg.predictor_.list_of_parameters) == 2  # both folds
        assert calls["init"] == 1
        for sid, (mask, images) in results.items():
            assert mask.shape == images["t1"].shape, sid
            assert set(np.unique(mask)) <= {0, 1, 2}

    @pytest.mark.parametrize("force,label_map,canonical", [(3, "3:ce,1:ne,2:ne", 1),
                                                           (2, "3:ce,1:ne,2:ne", 2),
                                                           (1, "brats2023", 2)])
    def test_label_map_applied(self, tmp_path, subjects, force, label_map, canonical):
        model = build_nnunetv2_model(tmp_path / "m", force_label=force)
        with NnUNetV2Segmenter(model_dir=model, label_map=label_map, mirroring=False) as seg:
            (mask, images), = run(seg, subjects[2:]).values()
        brain = images["t1"].data != 0
        assert mask.shape == images["t1"].shape
        assert (mask[brain] == canonical).all()
        assert (mask[~_bbox(brain)] == 0).all()

    def test_two_channel_model_and_channel_order(self, tmp_path, subjects):
        model = build_nnunetv2_model(tmp_path / "two", channel_names={"0": "FLAIR", "1": "T1Gd"},
                                     force_label=3)
        plans = json.loads((model / "plans.json").read_text())
        assert plans  # four normalisation entries are ignored beyond the channel count
        with NnUNetV2Segmenter(model_dir=model, label_map="brats2023", mirroring=False) as seg:
            (mask, _), = run(seg, subjects[:1]).values()
            assert seg.channels_ == {"flair": 0, "t1c": 1}
        assert set(np.unique(mask)) == {0, 1}
        with pytest.raises(SegmenterUnavailableError, match="takes 2 channels"):
            NnUNetV2Segmenter(model_dir=model, label_map="brats2023",
                              channels="t1=0,t1c=1,t2=2,flair=3").load()

    def test_reorienting_reader(self, tmp_path):
        """A NibabelIOWithReorient model sees RAS arrays: the same anatomy stored LAS or RAS
        gives the same mask, returned on each input's own grid."""
        from gliocore.cohort.subjects import Subject
        rng = np.random.default_rng(5)
        las = np.diag([-1.0, 1.0, 2.0, 1.0])  # LAS, 2 mm slices
        s_las = write_subject(tmp_path, "LAS", rng, affine=las)
        ras_dir = tmp_path / "RAS"
        ras_dir.mkdir()
        ras_aff = np.diag([1.0, 1.0, 2.0, 1.0])
        ras_aff[0, 3] = -(load_subject_images(s_las)["t1"].shape[0] - 1)
        paths = {}
        for q, vol in load_subject_images(s_las).items():
            paths[q] = ras_dir / f"RAS_{q}.nii.gz"
            nib.save(nib.Nifti1Image(vol.data[::-1].copy(), ras_aff), str(paths[q]))
        s_ras = Subject("RAS", paths, ras_dir)
        model = build_nnunetv2_model(tmp_path / "reo", reader="NibabelIOWithReorient", seed=3)
        with NnUNetV2Segmenter(model_dir=model, label_map="brats2023", mirroring=False) as seg:
            res = run(seg, [s_las, s_ras])
        m_las, m_ras = res["LAS"][0], res["RAS"][0]
        assert m_las.shape == res["LAS"][1]["t1"].shape
        assert len(np.unique(m_ras)) > 1  # random weights give a non-trivial mask
        np.testing.assert_array_equal(m_las[::-1], m_ras)

    @pytest.mark.slow
    def test_mirroring_matches_predict_from_files(self, model_random, subjects, tmp_path):
        """Same answer as nnU-Net v2's own file-based prediction of the same case."""
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        s = subjects[2]
        inp = tmp_path / "in"
        inp.mkdir()
        for k, q in enumerate(("t1", "t1c", "t2", "flair")):
            (inp / f"case_{k:04d}.nii.gz").symlink_to(s.path(q))
        pred = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
        pred.initialize_from_trained_model_folder(str(model_random), use_folds=(0, 1))
        pred.predict_from_files(str(inp), str(tmp_path / "out"), save_probabilities=False,
                                overwrite=True, num_processes_preprocessing=1,
                                num_processes_segmentation_export=1)
        theirs = np.asarray(nib.load(str(tmp_path / "out" / "case.nii.gz")).dataobj)
        with NnUNetV2Segmenter(model_dir=model_random, label_map="brats2023") as seg:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DLInputWarning)
                ours = seg.segment_images(s, load_subject_images(s))
        np.testing.assert_array_equal(ours, theirs)


@needs_nnunetv2
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mirroring", [False, True])
def test_end_to_end_cuda(model_random, subjects, mirroring):
    seg = NnUNetV2Segmenter(model_dir=model_random, label_map="brats2023", device="cuda",
                            mirroring=mirroring)
    assert seg.device == "cuda"
    with seg:
        results = run(seg, subjects)
    for mask, images in results.values():
        assert mask.shape == images["t1"].shape
        assert set(np.unique(mask)) <= {0, 1, 2}


def _bbox(mask):
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    box = np.zeros(mask.shape, bool)
    box[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return box
