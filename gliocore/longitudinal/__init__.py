"""Tumours over time: volumetric response assessment (RANO 2.0), best response and
progression-free survival (criteria in :mod:`.criteria`, the assessment in :mod:`.response`,
PFS in :mod:`.pfs`), and their figures (:mod:`.response_plots`).

May import: ``cohort``, ``imaging`` and the vocabulary.
"""
