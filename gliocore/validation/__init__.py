"""Checks against external references, one module per reference: IBSI and PyRadiomics baselines
(:mod:`.radiomics`), survival references (:mod:`.survival`), real glioma cases (:mod:`.real_cases`),
atlas location (:mod:`.location`), and the report that runs them (:mod:`.report`).

May import: ``analysis``, the steps, ``cohort``, ``imaging`` and the vocabulary.
"""
