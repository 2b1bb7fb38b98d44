"""The DuckDB cache: schema, queries per table family, locking and snapshots. It keeps rows and
computes nothing.

Modules: :mod:`~gliocore.store.schema` (every CREATE TABLE and the migrations),
:mod:`~gliocore.store.database` (the :class:`Store` and its connections), one mixin module per
table family (``cohorts``, ``images``, ``results``, ``qc``, ``location``, ``runs``),
:mod:`~gliocore.store.locking` (run lock, reader turns) and ``rows`` (shared insert helpers).

May import: the vocabulary only (a version number it filters on lives in :mod:`gliocore.versions`);
never a step.
"""
from gliocore.store.database import SCHEMA, Store

__all__ = ["SCHEMA", "Store"]
