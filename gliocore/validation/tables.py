"""Markdown rendering shared by every validation report."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def md_table(df: pd.DataFrame) -> str:
    """``df`` as a Markdown table (floats to 4 significant digits, NaN as blank)."""
    cols = list(df.columns)
    out = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        out.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.4g}"
    return str(v)
