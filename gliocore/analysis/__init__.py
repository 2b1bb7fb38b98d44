"""Cohort-level analysis over stored results: survival (Kaplan-Meier, Cox, groups, screens),
classifiers with honest cross-validation, filters, lesion-frequency maps, figures and the export.

May import: the store, the steps (``segment``, ``features``, ``location``, ``longitudinal``),
``cohort``, ``imaging`` and the vocabulary; never the pipeline or the pages.
"""
