"""Checks against external references, one module per reference: the IBSI phantom
(:mod:`.ibsi`), PyRadiomics' baselines (:mod:`.pyradiomics_baselines`), survival references (:mod:`.survival`), real glioma cases (:mod:`.real_cases`),
atlas location (:mod:`.location`), and the report that runs them (:mod:`.report`).

May import: ``analysis``, the steps, ``cohort``, ``imaging`` and the vocabulary.
"""
