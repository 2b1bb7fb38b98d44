"""Write a SimpleITK volume as a classic single-frame MR DICOM series with realistic headers.

Used by the preprocessing tests to turn real BraTS volumes into a scanner-like study (four
sequences plus decoy series), with a fake patient name that must never leak.
"""
from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from gliocore.preprocess.dicom import keep_locale

FAKE_PATIENT = "DOE^JANE"
FAKE_PATIENT_ID = "MRN-99817"

#: Headers per sequence: description, TR, TE, TI, ScanningSequence, MRAcquisitionType, contrast.
PROTOCOLS = {
    "t1": ("AX T1 SE", 550.0, 12.0, None, "SE", "2D", None),
    "t1c": ("AX T1 POST GD", 550.0, 12.0, None, "SE", "2D", "GADOVIST"),
    "t2": ("AX T2 TSE", 4500.0, 95.0, None, "SE", "2D", None),
    "flair": ("AX FLAIR", 9000.0, 120.0, 2500.0, "SE\\IR", "2D", None),
}

_UID_ROOT = "1.2.826.0.1.3680043.10.1234."


def uid(n: int) -> str:
    return _UID_ROOT + str(n)


def write_series(image: sitk.Image, folder: Path, series_uid: str, number: int, description: str,
                 tr: float | None = None, te: float | None = None, ti: float | None = None,
                 scanning: str | None = None, acquisition: str = "2D", contrast: str | None = None,
                 image_type: str = "ORIGINAL\\PRIMARY\\M\\ND", study_uid: str = uid(1),
                 date: str = "20190314", prefix: str = "IM") -> list[Path]:
    """Write ``image`` (3-D) as one file per slice into ``folder``; return the files."""
    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.Cast(sitk.RescaleIntensity(image, 0, 4000), sitk.sitkInt16)
    direction = img.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetImageIO("GDCMImageIO")
    tags = {"0010|0010": FAKE_PATIENT, "0010|0020": FAKE_PATIENT_ID, "0010|0030": "19700101",
            "0008|0080": "ST ELSEWHERE HOSPITAL", "0008|0060": "MR",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.4", "0020|000d": study_uid,
            "0020|000e": series_uid, "0020|0011": str(number), "0008|103e": description,
            "0008|0020": date, "0008|0021": date, "0008|0008": image_type,
            "0020|0037": "\\".join(f"{v:.6f}" for v in (*direction[0:7:3], *direction[1:8:3])),
            "0018|0050": f"{img.GetSpacing()[2]:.4f}", "0018|0023": acquisition}
    for tag, value in (("0018|0080", tr), ("0018|0081", te), ("0018|0082", ti),
                       ("0018|0020", scanning), ("0018|0010", contrast)):
        if value is not None:
            tags[tag] = f"{value:g}" if isinstance(value, float) else value
    files = []
    for k in range(img.GetDepth()):
        sl = img[:, :, k]
        for tag, value in tags.items():
            sl.SetMetaData(tag, value)
        pos = img.TransformIndexToPhysicalPoint((0, 0, k))
        sl.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in pos))
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")
        path = folder / f"{prefix}{number:03d}_{k:04d}"
        writer.SetFileName(str(path))
        with keep_locale():  # GDCM's writer leaves the C locale at "C"
            writer.Execute(sl)
        files.append(path)
    return files


def write_study(volumes: dict[str, sitk.Image], folder: Path, decoys: bool = True) -> None:
    """The four sequences plus decoys (3-plane localiser, 2-b-value DWI, a coronal reformat)."""
    for i, (seq, img) in enumerate(volumes.items()):
        desc, tr, te, ti, scanning, acq, contrast = PROTOCOLS[seq]
        write_series(img, folder / f"s{i}", uid(100 + i), 3 + i, desc, tr, te, ti, scanning, acq,
                     contrast)
    if not decoys:
        return
    t1 = volumes["t1"]
    mid = t1.GetSize()[2] // 2
    loc = uid(200)
    for j, d in enumerate(((1, 0, 0, 0, 1, 0, 0, 0, 1), (1, 0, 0, 0, 0, -1, 0, 1, 0),
                           (0, 0, 1, 1, 0, 0, 0, 1, 0))):
        sl = sitk.Image(t1[:, :, mid - 1:mid + 1])
        sl.SetDirection(d)
        write_series(sl, folder / "loc", loc, 1, "3-PLANE LOC",
                     8.0, 3.0, None, "GR", "2D", image_type="ORIGINAL\\PRIMARY\\LOCALIZER",
                     prefix=f"L{j}_")
    dwi = uid(201)
    for b in (0, 1000):
        write_series(t1, folder / "dwi", dwi, 9, "AX DWI b0 b1000", 5000.0, 80.0, None, "EP",
                     "2D", prefix=f"B{b}_")
    cor = sitk.PermuteAxes(t1[:, ::8, :], (0, 2, 1))  # a coronal reformat, every 8th row
    write_series(cor, folder / "mpr", uid(202), 12, "T1 COR MPR", 550.0, 12.0, None, "SE", "2D",
                 image_type="DERIVED\\SECONDARY\\MPR")


def crop(image: sitk.Image, keep_slices: tuple[int, int] | None = None) -> sitk.Image:
    """A slab of ``image`` (fewer files to write and read in tests)."""
    if keep_slices is None:
        return image
    return image[:, :, keep_slices[0]:keep_slices[1]]


def ambiguous_study(folder: Path, rng, shape: tuple[int, int, int] = (6, 16, 16)) -> None:
    """A study the rules cannot settle: two T1 series with the same description and no contrast
    tag (series 3 and 4), a T2 (5) and a FLAIR (6), each a small random volume."""
    import numpy as np
    for number, desc, tr, te, ti, scanning in ((3, "AX T1 SE", 500.0, 10.0, None, "SE"),
                                              (4, "AX T1 SE", 500.0, 10.0, None, "SE"),
                                              (5, "AX T2 TSE", 5000.0, 100.0, None, "SE"),
                                              (6, "AX FLAIR", 9000.0, 110.0, 2500.0, "SE\\IR")):
        img = sitk.GetImageFromArray(rng.integers(0, 1000, size=shape).astype(np.int16))
        img.SetSpacing((1.0, 1.0, 3.0))
        write_series(img, folder / f"s{number}", uid(700 + number), number, desc, tr=tr, te=te,
                     ti=ti, scanning=scanning)
