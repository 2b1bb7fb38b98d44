"""Validation of :mod:`gliocore.features.radiomics` against PyRadiomics' own regression baselines.

:func:`validate_pyradiomics_baselines` — PyRadiomics' own regression baselines for its MR
test cases brain1 and brain2 (NRRD). For each case the plain column, ``_normalization`` and
``_resampling`` are re-extracted with the settings stored in that column's
``diagnostics_Configuration_Settings`` row, for every feature class that has the column, and
every feature must be within PyRadiomics' own tolerance: relative difference < 3 %
(``|1 - value / baseline|``; exact match when the baseline is 0). The NRRD files are read by
:func:`gliocore.features.radiomics.extract_features_from_files`, which converts them to GlioScope's
(i, j, k)/RAS representation and runs the same per-label extraction as ``extract_features``
(normalisation and resampling make it use the whole image rather than a crop).
"""
from __future__ import annotations

import ast
import csv
import math
from dataclasses import dataclass
from pathlib import Path

from gliocore.features.radiomics import extract_features_from_files
from gliocore.validation.ibsi import need_file

__all__ = ["BASELINE_RTOL", "BaselineRow", "BaselineReport", "validate_pyradiomics_baselines"]


BASELINE_DIR = Path("reference") / "pyradiomics"
BASELINE_CASES: tuple[str, ...] = ("brain1", "brain2")
#: Column suffixes checked: plain settings, normalisation, resampling.
BASELINE_VARIANTS: tuple[str, ...] = ("", "_normalization", "_resampling")
#: Feature classes with a baseline file that GlioScope computes in 3-D.
BASELINE_CLASSES: tuple[str, ...] = ("shape", "firstorder", "glcm", "glrlm", "glszm", "ngtdm",
                                     "gldm")
#: PyRadiomics' own tolerance (tests/testUtils.py: |1 - value/baseline| < 0.03).
BASELINE_RTOL = 0.03


@dataclass(frozen=True)
class BaselineRow:
    """One feature of one baseline column."""

    column: str          # e.g. 'brain1_resampling'
    feature_class: str
    feature: str         # PyRadiomics key
    value: float | None
    baseline: float
    rel_diff: float      # |1 - value/baseline|; 0/1 when baseline == 0
    passed: bool


@dataclass(frozen=True)
class BaselineReport:
    """Result of :func:`validate_pyradiomics_baselines`."""

    rows: tuple[BaselineRow, ...]
    skipped: tuple[str, ...] = ()    # (class, column) pairs the baseline files do not have

    @property
    def n_compared(self) -> int:
        return len(self.rows)

    @property
    def n_within(self) -> int:
        return sum(r.passed for r in self.rows)

    @property
    def failures(self) -> tuple[BaselineRow, ...]:
        return tuple(r for r in self.rows if not r.passed)

    @property
    def max_rel_diff(self) -> float:
        return max((r.rel_diff for r in self.rows), default=0.0)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and not self.failures

    def columns(self) -> list[str]:
        return sorted({r.column for r in self.rows})

    def to_markdown(self) -> str:
        out = ["### PyRadiomics baselines (brain1, brain2)",
               "",
               f"{self.n_within} of {self.n_compared} features within relative difference "
               f"< {BASELINE_RTOL:.0%} (largest {self.max_rel_diff:.3g}). Verdict: "
               + ("**pass**" if self.ok else "**FAIL**") + ".",
               "",
               "| column | classes | features | within 3 % | largest relative difference |",
               "|---|---|---:|---:|---:|"]
        for col in self.columns():
            rows = [r for r in self.rows if r.column == col]
            classes = ", ".join(sorted({r.feature_class for r in rows}))
            out.append(f"| {col} | {classes} | {len(rows)} | {sum(r.passed for r in rows)} | "
                       f"{max(r.rel_diff for r in rows):.3g} |")
        if self.failures:
            out += ["", "Failures:", "", "| column | feature | value | baseline | relative difference |",
                    "|---|---|---:|---:|---:|"]
            for r in self.failures:
                value = "—" if r.value is None else f"{r.value:.6g}"
                out.append(f"| {r.column} | {r.feature} | {value} | {r.baseline:.6g} | "
                           f"{r.rel_diff:.3g} |")
        if self.skipped:
            out += ["", "Not in the baseline files: " + ", ".join(self.skipped) + "."]
        return "\n".join(out) + "\n"


def _read_baseline(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        table = {row[0]: dict(zip(header[1:], row[1:])) for row in reader if row}
    return header[1:], table


def _rel_diff(value: float | None, baseline: float) -> float:
    if value is None or not math.isfinite(value):
        return math.inf
    if baseline == 0.0:
        return 0.0 if value == 0.0 else 1.0
    return abs(1.0 - value / baseline)


def validate_pyradiomics_baselines(shared_root: Path) -> BaselineReport:
    """Re-extract PyRadiomics' brain1/brain2 baselines through GlioScope and compare.

    Parameters
    ----------
    shared_root : Path
        The ``shared`` reference folder (holding ``reference/pyradiomics``).

    Returns
    -------
    BaselineReport
    """
    base = Path(shared_root) / BASELINE_DIR
    tables = {cls: _read_baseline(need_file(base / "baseline" / f"baseline_{cls}.csv",
                                        f"PyRadiomics baseline for {cls}"))
              for cls in BASELINE_CLASSES}
    rows: list[BaselineRow] = []
    skipped: list[str] = []
    for case in BASELINE_CASES:
        image = need_file(base / f"{case}_image.nrrd", f"{case} image")
        mask = need_file(base / f"{case}_label.nrrd", f"{case} label map")
        for variant in BASELINE_VARIANTS:
            column = case + variant
            # Group classes by their stored settings: one extraction per distinct setting.
            groups: dict[str, list[str]] = {}
            for cls, (columns, table) in tables.items():
                if column not in columns:
                    skipped.append(f"{cls}/{column}")
                    continue
                groups.setdefault(table["diagnostics_Configuration_Settings"][column], []).append(cls)
            for settings_text, classes in groups.items():
                settings = ast.literal_eval(settings_text)
                features = {cls: [k for k in tables[cls][1] if k.startswith(f"original_{cls}_")]
                            for cls in classes}
                params = {"imageType": {"Original": {}},
                          "featureClass": {cls: [k.split("_", 2)[2] for k in names]
                                           for cls, names in features.items()},
                          "setting": settings}
                values = extract_features_from_files(image, mask, params,
                                                     label=int(settings.get("label", 1)))
                for cls, names in features.items():
                    for key in names:
                        ref = float(tables[cls][1][key][column])
                        value = values.get(key)
                        diff = _rel_diff(value, ref)
                        rows.append(BaselineRow(column, cls, key, value, ref, diff,
                                                diff < BASELINE_RTOL))
    return BaselineReport(tuple(rows), tuple(skipped))
