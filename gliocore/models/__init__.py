"""Survival models over features: ComBat harmonisation, penalised Cox and random survival
forests validated by nested cross-validation, their metrics, and portable model cards.

Modules: :mod:`combat` (site harmonisation), :mod:`metrics` (C-indices, time-dependent AUC,
Brier score, calibration, Kaplan–Meier), :mod:`data` (feature families, clinical design),
:mod:`estimators` (the fold pipeline and the models), :mod:`validate` (nested CV, external
validation, permutation test), :mod:`split` (dates for temporal external validation),
:mod:`card` (model card export and apply, forests beside the card), :mod:`synthetic`
(feature tables with site effects and a known signal, for tests and benchmarks), :mod:`plots`
(the Models page's figures).
"""
