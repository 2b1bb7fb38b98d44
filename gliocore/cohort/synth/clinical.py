"""Clinical model of the demo: Weibull proportional-hazards survival from tumour volume, IDH
status and age.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .params import IDH_MUTANT_FRACTION

#: Weibull proportional-hazards survival model (months). Reference patient: IDH-mutant,
#: 50 cm³ whole tumour, age 50, median survival 60 months.
WEIBULL_SHAPE = 1.2
BASELINE_MEDIAN_MONTHS = 60
LOG_HR_WILDTYPE = math.log(6.0)
LOG_HR_PER_LOG_VOLUME = 0.7       # per unit of log(volume / 50 cm³)
LOG_HR_PER_DECADE = 0.25


def simulate_clinical(volumes_mm3: Sequence[float] | np.ndarray, rng: np.random.Generator,
                      idh_status: Sequence[str] | None = None,
                      age: Sequence[float] | None = None,
                      sex: Sequence[str] | None = None,
                      log_hr_per_log_volume: float = LOG_HR_PER_LOG_VOLUME) -> pd.DataFrame:
    """Draw survival (and, where not given, IDH status, age and sex) for tumour volumes.

    Survival follows a Weibull proportional-hazards model: the hazard grows with
    log whole-tumour volume and age and is ~6x higher for IDH-wildtype. Censoring is
    independent and uniform over follow-up (about 15-25 % censored).

    Parameters
    ----------
    volumes_mm3 : sequence of float
        Whole-tumour volumes (mm³), > 0.
    rng : numpy Generator
    idh_status, age, sex : sequences, optional
        Per-subject values; drawn when absent (IDH-mutant ~35 %, younger).
    log_hr_per_log_volume : float
        The tumour-volume effect; 0 gives the noise-only outcome (age and IDH only) on which
        an image signature must show no gain.

    Returns
    -------
    DataFrame
        Columns ``IDH-status``, ``age``, ``sex``, ``Survival(months)``, ``event``,
        ``true_survival(months)`` (before censoring).
    """
    vol = np.asarray(volumes_mm3, dtype=float)
    if vol.ndim != 1 or np.any(~np.isfinite(vol)) or np.any(vol <= 0):
        raise ValueError("volumes_mm3 must be a 1-D sequence of positive, finite volumes")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng), got {type(rng)}")
    n = vol.size
    if idh_status is None:
        idh = np.where(rng.random(n) < IDH_MUTANT_FRACTION, "mutant", "wildtype")
    else:
        idh = np.asarray(idh_status, dtype=object)
        if idh.shape != (n,) or not set(idh) <= {"mutant", "wildtype"}:
            raise ValueError("idh_status must have one 'mutant'/'wildtype' value per volume")
    mutant = idh == "mutant"
    if age is None:
        ages = np.clip(np.where(mutant, rng.normal(39, 10, n), rng.normal(61, 11, n)), 18, 90)
    else:
        ages = np.asarray(age, dtype=float)
        if ages.shape != (n,):
            raise ValueError("age must have one value per volume")
    if sex is None:
        sexes = np.where(rng.random(n) < 0.57, "M", "F")
    else:
        sexes = np.asarray(sex, dtype=object)
        if sexes.shape != (n,):
            raise ValueError("sex must have one value per volume")
    log_hr = (np.where(mutant, 0.0, LOG_HR_WILDTYPE)
              + log_hr_per_log_volume * np.log(vol / 50e3)
              + LOG_HR_PER_DECADE * (ages - 50.0) / 10.0)
    scale = BASELINE_MEDIAN_MONTHS / math.log(2.0) ** (1.0 / WEIBULL_SHAPE)
    u = rng.random(n)
    t_true = scale * (-np.log(1.0 - u) / np.exp(log_hr)) ** (1.0 / WEIBULL_SHAPE)
    censor = rng.uniform(6.0, 240.0, n)
    event = (t_true <= censor).astype(int)
    observed = np.round(np.maximum(np.minimum(t_true, censor), 0.1), 1)
    return pd.DataFrame({"IDH-status": idh, "age": np.round(ages).astype(int), "sex": sexes,
                         "Survival(months)": observed, "event": event,
                         "true_survival(months)": np.round(t_true, 2)})
