"""Processing a cohort: planning what is cached, the per-scan worker task, writing results, and
the executors (local processes or a Dask cluster) that run the tasks.

May import: the store, the steps, ``cohort``, ``imaging`` and the vocabulary; never the pages.
"""
