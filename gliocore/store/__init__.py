"""The DuckDB cache: schema, queries per table family, locking and snapshots. It keeps rows and
computes nothing.

May import: the vocabulary only (a version number it filters on lives in :mod:`gliocore.versions`);
never a step.
"""
