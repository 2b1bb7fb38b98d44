"""The radiomics engine: PyRadiomics settings (:mod:`.params`), extraction (:mod:`.radiomics`), the
PyRadiomics bridge (:mod:`.pyradiomics_bridge`: the extractor subclass, its caches, SimpleITK images),
and the faster equivalents of its parts that give identical values: texture matrices
(:mod:`.texture`), ITK's Laplacian of Gaussian (:mod:`.laplacian`), shape (:mod:`.shape`) and
grey-level binning (:mod:`.binning`).

May import: ``cohort``, ``imaging`` and the vocabulary; never the store or the pipeline.
"""
