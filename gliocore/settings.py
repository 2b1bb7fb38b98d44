"""Settings: paths and defaults, built once and passed down (never read globally elsewhere)."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    """Where GlioScope keeps its data.

    Attributes
    ----------
    data_dir : Path
        Root for generated data (default ``<repo>/data`` or ``$GLIOSCOPE_DATA``).
    store_path : Path
        The DuckDB file (default ``data_dir/gliocore.duckdb`` or ``$GLIOSCOPE_DB``).
    demo_n_subjects, demo_seed : int
        The embedded demo cohort.
    short_survival_months : float
        Threshold of the short vs long survival split (the seed's 5 months).
    """

    data_dir: Path = REPO_ROOT / "data"
    store_path: Path | None = None
    demo_n_subjects: int = 30
    demo_seed: int = 0
    short_survival_months: float = 5.0
    default_backend: str = "baseline"

    @property
    def db(self) -> Path:
        return self.store_path or self.data_dir / "gliocore.duckdb"

    @property
    def demo_dir(self) -> Path:
        return self.data_dir / "demo"

    @property
    def demo_csv(self) -> Path:
        return self.demo_dir / "clinical.csv"

    @property
    def segmentation_dir(self) -> Path:
        return self.data_dir / "segmentations"

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        """Defaults, then ``$GLIOSCOPE_DATA`` / ``$GLIOSCOPE_DB``, then ``overrides``."""
        s = cls()
        if os.environ.get("GLIOSCOPE_DATA"):
            s = replace(s, data_dir=Path(os.environ["GLIOSCOPE_DATA"]))
        if os.environ.get("GLIOSCOPE_DB"):
            s = replace(s, store_path=Path(os.environ["GLIOSCOPE_DB"]))
        return replace(s, **overrides) if overrides else s  # type: ignore[arg-type]
