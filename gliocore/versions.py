"""Revisions of stored definitions that more than one layer must agree on.

A number here is part of the shared vocabulary: the step that computes a result stamps it with
the number, and the store filters on it, without the store importing the step.
"""
from __future__ import annotations

#: Revision of the QC measures; stored with every score, so scores made by an older definition
#: (before 2: HD95 was the pooled percentile under the BraTS name) are recomputed, never shown.
QC_VERSION = 2
