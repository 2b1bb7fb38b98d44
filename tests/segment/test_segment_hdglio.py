"""HD-GLIO backend, end to end, on a checkpoint in HD-GLIO's exact on-disk format.

The real parameters cannot be downloaded here. :func:`build_hdglio_params` writes a parameter
folder the way HD-GLIO ships it (``plans.pkl``, ``fold_0/model_final_checkpoint.model`` and
``.model.pkl``, ``version``), using nnU-Net v1's own ``nnUNetTrainerV2.save_checkpoint``, so the
``.pkl`` holds the trainer's init arguments, its class name and the plans, and the ``.model``
holds the ``Generic_UNet`` state dict that ``nnUNetTrainerV2.initialize_network`` builds from
those plans, with random weights. The plans are tiny (16^3 patch, 2 poolings, 4 base
features) so everything runs on a CPU in seconds.
"""
from __future__ import annotations

import contextlib
import io
import os
import pickle
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nnunet")

from gliocore.cohort.subjects import Subject, load_subject_images  # noqa: E402
from gliocore.errors import SegmenterUnavailableError  # noqa: E402
from gliocore.imaging.labels import HDGLIO_V2  # noqa: E402
from gliocore.segment import available_segmenters, get_segmenter  # noqa: E402
from gliocore.segment.checks import DLInputWarning, check_dl_inputs  # noqa: E402
from gliocore.segment.hdglio import WEIGHTS_ENV, HDGlioSegmenter, weights_sha256  # noqa: E402
from gliocore.types import SEQUENCES  # noqa: E402

SHAPE = (32, 32, 24)


# -- fixtures: a parameter folder in HD-GLIO's format ----------------------------------------
def nnunet_v1_plans(patch_size=(16, 16, 16), num_pool=2, base_features=4,
                    spacing=(1.0, 1.0, 1.0), num_classes=2, num_modalities=4) -> dict:
    """A 3d_fullres nnU-Net v1 plans dict (the keys ``process_plans`` reads), one stage."""
    modalities = {0: "T1", 1: "T1c", 2: "T2", 3: "FLAIR"}
    return {
        "num_stages": 1, "num_modalities": num_modalities,
        "modalities": {i: modalities.get(i, f"ch{i}") for i in range(num_modalities)},
        "normalization_schemes": {i: "nonCT" for i in range(num_modalities)},
        "use_mask_for_norm": {i: True for i in range(num_modalities)},
        "dataset_properties": {"intensityproperties": None},
        "num_classes": num_classes, "all_classes": list(range(1, num_classes + 1)),
        "base_num_features": base_features, "conv_per_stage": 2,
        "keep_only_largest_region": None, "min_region_size_per_class": None,
        "min_size_per_class": None, "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "data_identifier": "nnUNetData_plans_v2.1", "preprocessor_name": "GenericPreprocessor",
        "list_of_npz_files": [], "original_spacings": [np.array(spacing)],
        "original_sizes": [np.array(patch_size)],
        "plans_per_stage": {0: {
            "batch_size": 2, "num_pool_per_axis": [num_pool] * 3,
            "patch_size": np.array(patch_size), "median_patient_size_in_voxels": np.array(patch_size),
            "current_spacing": np.array(spacing), "original_spacing": np.array(spacing),
            "do_dummy_2D_data_aug": False,
            "pool_op_kernel_sizes": [[2, 2, 2]] * num_pool,
            "conv_kernel_sizes": [[3, 3, 3]] * (num_pool + 1)}},
    }


def build_hdglio_params(folder: Path, *, force_class: int | None = None, seed: int = 0,
                        **plan_kwargs) -> Path:
    """Write an HD-GLIO-format parameter folder with random weights; return it.

    ``force_class`` makes the network predict that raw class everywhere (the last decoder
    norm outputs a constant and the 1x1 output convolution favours one channel), so the
    label map's effect can be checked exactly.
    """
    from nnunet.training.network_training.nnUNetTrainerV2 import nnUNetTrainerV2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plans = nnunet_v1_plans(**plan_kwargs)
    with open(folder / "plans.pkl", "wb") as fh:
        pickle.dump(plans, fh)
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = nnUNetTrainerV2(str(folder / "plans.pkl"), 0, output_folder=str(folder),
                             dataset_directory=str(folder / "preprocessed"), batch_dice=True,
                             stage=0, unpack_data=True, deterministic=False, fp16=True)
        tr.initialize(False)
        torch.manual_seed(seed)
        for m in tr.network.modules():  # fresh random weights, seeded
            if isinstance(m, torch.nn.Conv3d):
                torch.nn.init.kaiming_normal_(m.weight, a=1e-2)
            if isinstance(m, torch.nn.InstanceNorm3d) and m.affine:
                torch.nn.init.uniform_(m.weight, 0.5, 1.5)
                torch.nn.init.uniform_(m.bias, -0.2, 0.2)
        if force_class is not None:
            last = tr.network.conv_blocks_localization[-1][-1].blocks[-1]
            last.instnorm.weight.data.zero_()
            last.instnorm.bias.data.fill_(1.0)
            w = tr.network.seg_outputs[-1].weight.data
            w.zero_()
            w[force_class] = 1.0
        # Training history as nnU-Net keeps it: numpy scalars, which torch's weights_only
        # loader refuses (exactly HD-GLIO's problem with torch >= 2.6).
        tr.epoch = 0
        tr.all_tr_losses = [np.float64(-0.5)]
        tr.all_val_losses = [np.float64(-0.4)]
        tr.all_val_losses_tr_mode = [np.float64(-0.45)]
        tr.all_val_eval_metrics = [np.float64(0.8)]
        tr.save_checkpoint(str(folder / "fold_0" / "model_final_checkpoint.model"),
                           save_optimizer=False)
    # The released .pkl names paths on its authors' machines; make ours point nowhere too.
    pkl = folder / "fold_0" / "model_final_checkpoint.model.pkl"
    with open(pkl, "rb") as fh:
        info = pickle.load(fh)
    init = list(info["init"])
    init[0], init[2], init[3] = "/nonexistent/plans.pkl", "/nonexistent/out", "/nonexistent/pre"
    info["init"] = tuple(init)
    with open(pkl, "wb") as fh:
        pickle.dump(info, fh)
    for log in (folder / "fold_0").glob("training_log*"):
        log.unlink()
    (folder / "version").write_text("2")
    return folder


def write_subject(root: Path, sid: str, rng: np.random.Generator, shape=SHAPE,
                  affine=None, skull_stripped=True) -> Subject:
    """Four co-registered synthetic sequences: a zero background around an ellipsoidal 'brain'."""
    affine = np.eye(4) if affine is None else affine
    folder = root / sid
    folder.mkdir(parents=True, exist_ok=True)
    grid = np.indices(shape).astype(float)
    c = [(s - 1) / 2 for s in shape]
    r = [s * 0.38 for s in shape]
    brain = sum(((grid[i] - c[i]) / r[i]) ** 2 for i in range(3)) <= 1
    lesion = sum(((grid[i] - c[i] - 2) / (r[i] / 3)) ** 2 for i in range(3)) <= 1
    paths = {}
    for k, seq in enumerate(SEQUENCES):
        img = (100 + 20 * k + 10 * rng.standard_normal(shape)).astype(np.float32)
        img[lesion] += 60
        if skull_stripped:
            img[~brain] = 0
        p = folder / f"{sid}_{seq}.nii.gz"
        nib.save(nib.Nifti1Image(img, affine), str(p))
        paths[seq] = p
    return Subject(sid, paths, folder)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny networks run fastest on one thread, above all on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def forced_params(tmp_path_factory):
    """Parameter folders whose network predicts one raw class everywhere, built once each."""
    root = tmp_path_factory.mktemp("forced")
    cache: dict[int, Path] = {}

    def get(raw: int) -> Path:
        if raw not in cache:
            cache[raw] = build_hdglio_params(root / f"class{raw}", force_class=raw)
        return cache[raw]
    return get


@pytest.fixture(scope="module")
def params_random(tmp_path_factory) -> Path:
    return build_hdglio_params(tmp_path_factory.mktemp("hdglio") / "hd_glio_params", seed=1)


@pytest.fixture(scope="module")
def subjects(tmp_path_factory) -> list[Subject]:
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("cohort")
    aniso = np.diag([1.0, 1.0, 1.5, 1.0])
    return [write_subject(root, "S1", rng), write_subject(root, "S2", rng),
            write_subject(root, "S3", rng, affine=aniso)]


def run_backend(seg, subjects):
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DLInputWarning)
        for s in subjects:
            images = load_subject_images(s)
            out[s.subject_id] = (seg.segment(s, images), images)
    return out


# -- tests -----------------------------------------------------------------------------------
class TestAvailability:
    def test_registered(self):
        assert "hdglio" in available_segmenters()
        assert isinstance(get_segmenter("hdglio", weights_dir="/nowhere"), HDGlioSegmenter)

    def test_missing_weights_message(self, tmp_path, monkeypatch):
        monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "absent"))
        reason = HDGlioSegmenter.unavailable_reason()
        assert reason and "absent" in reason
        assert "hd_glio_predict" in reason and WEIGHTS_ENV in reason and "hd_glio_params" in reason
        with pytest.raises(SegmenterUnavailableError, match="does not exist"):
            HDGlioSegmenter().load()

    def test_incomplete_folder(self, tmp_path):
        (tmp_path / "fold_0").mkdir()
        with pytest.raises(SegmenterUnavailableError, match="model_final_checkpoint.model"):
            HDGlioSegmenter(weights_dir=tmp_path).load()

    def test_env_var_found(self, params_random, monkeypatch):
        monkeypatch.setenv(WEIGHTS_ENV, str(params_random))
        assert HDGlioSegmenter.unavailable_reason() is None
        assert HDGlioSegmenter().weights_dir == params_random


class TestIdentity:
    def test_cache_token(self, params_random):
        a = HDGlioSegmenter(weights_dir=params_random)
        tok = a.cache_token()
        assert a.weights_checksum == weights_sha256(params_random) and len(a.weights_checksum) == 64
        assert '"hdglio"' in tok and a.weights_checksum in tok and "hd-glio 2.0" in tok
        assert '"mirroring": true' in tok and '"hdglio-v2"' in tok
        assert HDGlioSegmenter(weights_dir=params_random, mirroring=False).cache_token() != tok
        assert HDGlioSegmenter(weights_dir=params_random, label_map="seed").cache_token() != tok
        # Runtime-only settings leave the key alone.
        assert HDGlioSegmenter(weights_dir=params_random, device="cpu", verbose=True,
                               mixed_precision=True).cache_token() == tok
        assert a.parallel_safe is False
        assert a.label_map is HDGLIO_V2
        assert a.device in ("cpu", "cuda")

    def test_checksum_changes_with_weights(self, params_random, tmp_path):
        other = build_hdglio_params(tmp_path / "p", seed=2)
        assert weights_sha256(other) != weights_sha256(params_random)


class TestCheckpointFormat:
    def test_weights_only_load_refuses_it(self, params_random):
        # The reason the backend passes weights_only=False: torch >= 2.6's default refuses.
        with pytest.raises(Exception):
            torch.load(params_random / "fold_0" / "model_final_checkpoint.model",
                       map_location="cpu", weights_only=True)

    def test_pkl_is_what_restore_model_reads(self, params_random):
        with open(params_random / "fold_0" / "model_final_checkpoint.model.pkl", "rb") as fh:
            info = pickle.load(fh)
        assert info["name"] == "nnUNetTrainerV2" and len(info["init"]) == 9
        assert "plans_per_stage" in info["plans"]

    def test_env_var_not_set_globally(self, params_random, subjects):
        seg = HDGlioSegmenter(weights_dir=params_random, mirroring=False)
        seg.load()
        seg.close()
        assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ


class TestEndToEnd:
    def test_restored_once_for_many_subjects(self, params_random, subjects, monkeypatch):
        from nnunet.training import model_restore
        calls = {"restore": 0, "torch_load": 0}
        real_restore, real_load = model_restore.restore_model, torch.load

        def counting_restore(*a, **k):
            calls["restore"] += 1
            return real_restore(*a, **k)

        def counting_load(*a, **k):
            calls["torch_load"] += 1
            return real_load(*a, **k)

        monkeypatch.setattr(model_restore, "restore_model", counting_restore)
        monkeypatch.setattr(torch, "load", counting_load)
        seg = HDGlioSegmenter(weights_dir=params_random, mirroring=False, device="cpu")
        with seg:
            results = run_backend(seg, subjects)
        assert calls == {"restore": 1, "torch_load": 1}
        for sid, (mask, images) in results.items():
            assert mask.shape == images["t1"].shape, sid
            assert mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 1, 2}
            brain = images["t1"].data != 0
            assert not mask[~_bbox(brain)].any(), "labels outside the cropped brain region"
        assert seg.trainer_ is None  # closed

    @pytest.mark.parametrize("raw,label_map,canonical", [(2, "hdglio-v2", 1), (1, "hdglio-v2", 2),
                                                         (1, "seed", 1), (2, "seed", 2)])
    def test_label_map_applied(self, forced_params, subjects, raw, label_map, canonical):
        params = forced_params(raw)
        seg = HDGlioSegmenter(weights_dir=params, label_map=label_map, mirroring=False)
        with seg:
            (mask, images), = run_backend(seg, subjects[2:]).values()  # the anisotropic one
        box = _bbox(images["t1"].data != 0)
        assert mask.shape == images["t1"].shape
        assert (mask[box] == canonical).all()
        assert (mask[~box] == 0).all()

    def test_mirroring_runs_and_differs_little(self, params_random, subjects):
        masks = {}
        for mirroring in (False, True):
            with HDGlioSegmenter(weights_dir=params_random, mirroring=mirroring) as seg:
                masks[mirroring] = run_backend(seg, subjects[:1])["S1"][0]
        assert masks[True].shape == masks[False].shape
        assert set(np.unique(masks[True])) <= {0, 1, 2}

    def test_preprocessing_matches_preprocess_patient(self, params_random, subjects):
        """Our in-memory preparation equals nnU-Net's file-based ``preprocess_patient``."""
        seg = HDGlioSegmenter(weights_dir=params_random)
        seg.load()
        try:
            for s in (subjects[0], subjects[2]):
                images = load_subject_images(s)
                data = np.stack([images[q].data.transpose(2, 1, 0) for q in SEQUENCES])
                ours, props = seg.preprocess_array(data, np.array(images["t1"].spacing[::-1]))
                with contextlib.redirect_stdout(io.StringIO()):
                    theirs, _, props2 = seg.trainer_.preprocess_patient(
                        [str(s.path(q)) for q in SEQUENCES])
                np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
                assert props["crop_bbox"] == props2["crop_bbox"]
        finally:
            seg.close()

    @pytest.mark.slow
    def test_same_result_as_predict_cases(self, params_random, subjects, tmp_path, monkeypatch):
        """Bit-for-bit what hd_glio_predict's own call (predict_cases) writes, on the CPU."""
        from nnunet.inference.predict import predict_cases
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # upstream path needs it
        s = subjects[2]
        out = tmp_path / "out.nii.gz"
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predict_cases(str(params_random), [[str(s.path(q)) for q in SEQUENCES]], [str(out)],
                          (0,), False, 1, 1, None, True, None, True,
                          checkpoint_name="model_final_checkpoint")
        theirs = np.asarray(nib.load(str(out)).dataobj)
        with HDGlioSegmenter(weights_dir=params_random, mirroring=True) as seg:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DLInputWarning)
                ours = seg.segment_images(s, load_subject_images(s))
        assert ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)

    def test_input_warnings_recorded(self, params_random, tmp_path):
        s = write_subject(tmp_path, "RAW", np.random.default_rng(3), skull_stripped=False)
        with HDGlioSegmenter(weights_dir=params_random, mirroring=False) as seg:
            with pytest.warns(DLInputWarning, match="skull-stripped"):
                mask = seg.segment(s, load_subject_images(s))
            assert seg.input_warnings_["RAW"]
        assert mask.shape == SHAPE


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
class TestGPU:
    @pytest.mark.parametrize("mirroring", [False, True])
    def test_end_to_end_cuda(self, params_random, subjects, mirroring):
        seg = HDGlioSegmenter(weights_dir=params_random, device="cuda", mirroring=mirroring)
        assert seg.device == "cuda"
        with seg:
            assert next(seg.trainer_.network.parameters()).is_cuda
            results = run_backend(seg, subjects)
        for mask, images in results.values():
            assert mask.shape == images["t1"].shape
            assert set(np.unique(mask)) <= {0, 1, 2}

    def test_cuda_agrees_with_cpu(self, params_random, subjects):
        masks = {}
        for device in ("cpu", "cuda"):
            with HDGlioSegmenter(weights_dir=params_random, device=device, mirroring=False) as seg:
                masks[device] = run_backend(seg, subjects[:1])["S1"][0]
        assert (masks["cpu"] == masks["cuda"]).mean() > 0.99

    def test_forced_cpu_on_cuda_machine(self, params_random, subjects):
        with HDGlioSegmenter(weights_dir=params_random, device="cpu", mirroring=False) as seg:
            assert seg.device == "cpu"
            (mask, images), = run_backend(seg, subjects[:1]).values()
        assert torch.cuda.is_available()  # the patch was undone
        assert mask.shape == images["t1"].shape


def _bbox(mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    box = np.zeros(mask.shape, bool)
    box[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return box


def test_check_dl_inputs_clean_and_dirty(subjects, tmp_path):
    images = load_subject_images(subjects[0])
    assert check_dl_inputs(subjects[0], images) == []
    raw = write_subject(tmp_path, "R", np.random.default_rng(0), skull_stripped=False)
    msgs = check_dl_inputs(raw, load_subject_images(raw))
    assert any("not skull-stripped" in m and "HD-BET" in m for m in msgs)
