"""Cohorts: the clinical table, subjects and their scans (naming presets, timepoint folders,
scans tables), uploaded cohorts (zip checks and unpacking) and the synthetic demo generator.

May import: ``imaging`` and the vocabulary.
"""
