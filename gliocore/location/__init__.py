"""Where a tumour lies in the brain: registration to an atlas (:mod:`.registration`), atlas-region
values (:mod:`.regions`), VASARI features (:mod:`.vasari`), both for one mask (:mod:`.describe`),
and the location stage over a cohort's scans (:mod:`.localise`).

May import: ``cohort``, ``imaging`` and the vocabulary; never the store or the pipeline.
"""
