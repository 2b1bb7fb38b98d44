"""Helpers shared by the store's table-family modules: timestamps, bulk inserts, value
conversions. ``_insert`` takes table and column names from the store's own constants only."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

import duckdb
import pandas as pd


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _frame(rows: Sequence[tuple], columns: Sequence[str], key: Sequence[str] | None) -> pd.DataFrame:
    """Rows as a DataFrame of Python objects (NULLs stay NULL), the last row per key kept."""
    df = pd.DataFrame(list(rows), columns=list(columns), dtype=object)
    if key:
        df = df.drop_duplicates(list(key), keep="last")
    return df


def _insert(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str],
            rows: Sequence[tuple], replace: bool = False, key: Sequence[str] | None = None) -> None:
    """Insert many rows in one statement (DuckDB's executemany runs one statement per row).

    ``table`` and ``columns`` are this module's constants, never user input; the values travel
    as a registered DataFrame, not in the SQL text.
    """
    if not rows:
        return
    df = _frame(rows, columns, key if replace else None)
    name = f"_rows_{table}"
    cols = ", ".join(columns)
    con.register(name, df)
    try:
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        con.execute(f"{verb} INTO {table} ({cols}) SELECT {cols} FROM {name}")
    finally:
        con.unregister(name)


def _none(v: Any) -> Any:
    try:
        return None if pd.isna(v) else v
    except (TypeError, ValueError):
        return v


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, float) and v != v:
        return None
    return str(v)
