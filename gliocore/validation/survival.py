"""Validate the survival analysis (:mod:`gliocore.analysis.kaplan_meier`, :mod:`gliocore.analysis.cox`) against published reference values.

Reads ``reference/survival/`` of the shared reference folder (``REFERENCE_VALUES.json``,
``rossi.csv``, ``g3.csv``) and recomputes every quantity it can through gliocore.analysis's public
functions. Tolerances follow ``pytest.approx`` semantics (``|ours - ref| <= max(rel * |ref|,
1e-12)``): rel 1e-4 for coefficients, standard errors, statistics and survival probabilities,
rel 1e-3 for p-values. Reference entries whose data are not in the folder (``waltons``,
``veterans``) are listed as skipped, never silently dropped.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gliocore.analysis.cox import cox_ph
from gliocore.analysis.kaplan_meier import kaplan_meier

__all__ = ["SurvivalCheck", "SurvivalReport", "validate_survival", "REL_STAT", "REL_P"]

REL_STAT = 1e-4
REL_P = 1e-3
_ABS = 1e-12
ROSSI_COVARIATES = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


@dataclass(frozen=True)
class SurvivalCheck:
    """One compared quantity.

    Attributes
    ----------
    quantity : str
        What was compared, e.g. ``"rossi Cox Efron: coef fin"``.
    ours, reference : float
        ``inf`` stands for a median that is not reached.
    tolerance : str
        E.g. ``"rel 1e-04"``.
    passed : bool
    """

    quantity: str
    ours: float
    reference: float
    tolerance: str
    passed: bool


@dataclass(frozen=True)
class SurvivalReport:
    """Outcome of :func:`validate_survival`.

    Attributes
    ----------
    rows : tuple of SurvivalCheck
    skipped : tuple of (str, str)
        Reference entries not compared, with the reason.
    notes : tuple of str
        Remarks on the reference values themselves (conventions, provenance).
    """

    rows: tuple[SurvivalCheck, ...]
    skipped: tuple[tuple[str, str], ...] = field(default=())
    notes: tuple[str, ...] = field(default=())

    @property
    def n_compared(self) -> int:
        return len(self.rows)

    @property
    def n_passed(self) -> int:
        return sum(r.passed for r in self.rows)

    @property
    def all_passed(self) -> bool:
        return self.n_passed == self.n_compared

    @property
    def ok(self) -> bool:
        """Every compared quantity within tolerance (the same verdict the other reports give)."""
        return self.all_passed

    @property
    def failures(self) -> tuple[SurvivalCheck, ...]:
        return tuple(r for r in self.rows if not r.passed)

    def to_frame(self) -> pd.DataFrame:
        """Columns quantity, ours, reference, tolerance, pass."""
        return pd.DataFrame([{"quantity": r.quantity, "ours": r.ours, "reference": r.reference,
                              "tolerance": r.tolerance, "pass": r.passed} for r in self.rows])

    def to_markdown(self) -> str:
        def fmt(v: float) -> str:
            return "not reached" if v == math.inf else f"{v:.6g}"

        lines = [f"**Survival validation: {self.n_passed}/{self.n_compared} quantities within tolerance**",
                 "", "| quantity | ours | reference | tolerance | pass |", "|---|---|---|---|---|"]
        lines += [f"| {r.quantity} | {fmt(r.ours)} | {fmt(r.reference)} | {r.tolerance} | "
                  f"{'✅' if r.passed else '❌'} |" for r in self.rows]
        if self.skipped:
            lines += ["", "Not compared:"] + [f"- {q}: {why}" for q, why in self.skipped]
        if self.notes:
            lines += ["", "Notes:"] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)


class _Collector:
    def __init__(self) -> None:
        self.rows: list[SurvivalCheck] = []

    def add(self, quantity: str, ours: float, reference, rel: float) -> None:
        if isinstance(reference, str) and reference.strip().lower() == "not reached":
            reference = math.inf
        ours, reference = float(ours), float(reference)
        if math.isinf(reference) or math.isinf(ours):
            ok = ours == reference
        else:
            ok = abs(ours - reference) <= max(rel * abs(reference), _ABS)
        self.rows.append(SurvivalCheck(quantity, ours, reference, f"rel {rel:.0e}", bool(ok)))


def _key(d: dict, prefix: str) -> str | None:
    """Entry whose name is ``prefix`` or starts with ``prefix + ' '`` (names carry source notes)."""
    for k in d:
        if k == prefix or k.startswith(prefix + " "):
            return k
    return None


def validate_survival(shared_root: Path) -> SurvivalReport:
    """Compare gliocore.analysis's survival functions with ``<shared_root>/reference/survival/REFERENCE_VALUES.json``.

    Parameters
    ----------
    shared_root : Path
        The shared reference folder (the one holding ``reference/survival/``).

    Returns
    -------
    SurvivalReport

    Raises
    ------
    FileNotFoundError
        When the reference folder or one of its files is missing.
    """
    folder = Path(shared_root) / "reference" / "survival"
    ref_file = folder / "REFERENCE_VALUES.json"
    if not ref_file.exists():
        raise FileNotFoundError(f"{ref_file} not found; pass the shared folder that holds "
                                "reference/survival/REFERENCE_VALUES.json")
    ref = json.loads(ref_file.read_text())
    c = _Collector()
    skipped: list[tuple[str, str]] = []
    notes: list[str] = []

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample warnings are expected on g3
        if (folder / "rossi.csv").exists():
            _rossi(pd.read_csv(folder / "rossi.csv"), ref, c, skipped)
        else:
            skipped.append(("rossi_*", "rossi.csv missing"))
        if (folder / "g3.csv").exists():
            _g3(pd.read_csv(folder / "g3.csv"), ref, c, skipped, notes)
        else:
            skipped.append(("g3_glioma_logrank", "g3.csv missing"))

    for key in ref:
        if key.startswith("_") or key.startswith("rossi_") or key.startswith("g3_"):
            continue
        data = ref[key].get("data", "") if isinstance(ref[key], dict) else ""
        skipped.append((key, f"its data ({data.split(' ')[0] or 'not named'}) are not in {folder}"))
    return SurvivalReport(rows=tuple(c.rows), skipped=tuple(skipped), notes=tuple(notes))


def _rossi(df: pd.DataFrame, ref: dict, c: _Collector, skipped: list) -> None:
    e = ref.get("rossi_coxph_efron")
    if e:
        cols = list(e.get("coef", ROSSI_COVARIATES)) or ROSSI_COVARIATES
        r = cox_ph(df, "week", "arrest", cols, ties="efron")
        s = r.summary
        for name in e.get("coef", {}):
            c.add(f"rossi Cox Efron: coef {name}", s.loc[name, "coef"], e["coef"][name], REL_STAT)
        for name in e.get("se", {}):
            c.add(f"rossi Cox Efron: se {name}", s.loc[name, "se"], e["se"][name], REL_STAT)
        for name in e.get("p_wald", {}):
            c.add(f"rossi Cox Efron: Wald p {name}", s.loc[name, "p"], e["p_wald"][name], REL_P)
        if "concordance" in e:
            c.add("rossi Cox Efron: concordance", r.concordance, e["concordance"], REL_STAT)
        if "partial_loglik" in e:
            c.add("rossi Cox Efron: partial log-likelihood", r.log_likelihood, e["partial_loglik"], REL_STAT)
        if "partial_AIC" in e:
            c.add("rossi Cox Efron: partial AIC", r.AIC, e["partial_AIC"], REL_STAT)
        if "lr_test" in e:
            c.add("rossi Cox Efron: LR test statistic", r.lr_test["stat"], e["lr_test"]["stat"], REL_STAT)
            c.add("rossi Cox Efron: LR test df", r.lr_test["df"], e["lr_test"]["df"], REL_STAT)
            c.add("rossi Cox Efron: LR test p", r.lr_test["p"], e["lr_test"]["p"], REL_P)

    b = ref.get("rossi_coxph_breslow")
    if b:
        r = cox_ph(df, "week", "arrest", list(b.get("coef", ROSSI_COVARIATES)), ties="breslow")
        for name, v in b.get("coef", {}).items():
            c.add(f"rossi Cox Breslow: coef {name}", r.summary.loc[name, "coef"], v, REL_STAT)
        if "neg_partial_loglik" in b:
            c.add("rossi Cox Breslow: -partial log-likelihood", -r.log_likelihood, b["neg_partial_loglik"],
                  REL_STAT)

    k = ref.get("rossi_km_logrank")
    if k:
        if "km_all_S_at_week" in k:
            km = kaplan_meier(df, "week", "arrest")
            for t, v in k["km_all_S_at_week"].items():
                c.add(f"rossi KM: S(week {t})", km.survival_at(float(t))[0], v, REL_STAT)
        if "logrank_fin0_vs_fin1" in k:
            lr = kaplan_meier(df, "week", "arrest", group_col="fin").logrank
            c.add("rossi log-rank fin: statistic", lr.statistic, k["logrank_fin0_vs_fin1"]["stat"], REL_STAT)
            c.add("rossi log-rank fin: p", lr.p_value, k["logrank_fin0_vs_fin1"]["p"], REL_P)
        rk = _key(k, "logrank_by_race")
        if rk:
            v = k[rk]
            res = kaplan_meier(df, "week", "arrest", group_col="race")
            lr = res.logrank
            c.add("rossi log-rank race: statistic", lr.statistic, v.get("chisq", v.get("stat")), REL_STAT)
            c.add("rossi log-rank race: p", lr.p_value, v["p"], REL_P)
            for i, g in enumerate(lr.groups):
                if "observed" in v:
                    c.add(f"rossi log-rank race={g}: observed", lr.observed[i], v["observed"][i], REL_STAT)
                if "expected" in v:
                    c.add(f"rossi log-rank race={g}: expected", lr.expected[i], v["expected"][i], REL_STAT)
                if "counts" in v:
                    c.add(f"rossi log-rank race={g}: n", res.curves[g].n, v["counts"][i], REL_STAT)


def _g3(df: pd.DataFrame, ref: dict, c: _Collector, skipped: list, notes: list) -> None:
    g = ref.get("g3_glioma_logrank")
    if not g:
        return
    km = kaplan_meier(df, "time", "event", group_col="group")
    if "logrank" in g:
        lr = km.logrank
        c.add("g3 log-rank RIT vs Control: statistic", lr.statistic, g["logrank"]["stat"], REL_STAT)
        if "df" in g["logrank"]:
            c.add("g3 log-rank RIT vs Control: df", lr.dof, g["logrank"]["df"], REL_STAT)
        c.add("g3 log-rank RIT vs Control: p", lr.p_value, g["logrank"]["p"], REL_P)
        if "published_R_survdiff" in g["logrank"]:
            skipped.append(("g3 published R survdiff", "rounded and, by the JSON's own note, quoted from "
                            "memory and not re-verified; the recomputed values above are compared"))
    for key in (k for k in g if k.startswith("km_")):
        group = next((name for name in km.curves if name.lower() == key[3:].lower()), None)
        if group is None:
            skipped.append((f"g3 {key}", f"no group {key[3:]!r} in g3.csv"))
            continue
        v = g[key]
        s = km.survival_at(v["times"], group)
        for t, ours, want in zip(v["times"], s, v["S"]):
            c.add(f"g3 KM {group}: S({t:g})", ours, want, REL_STAT)
        if "median" in v:
            c.add(f"g3 KM {group}: median", km.curves[group].median, v["median"], REL_STAT)
    cx = g.get("coxph_RIT_vs_control")
    if cx:
        r = cox_ph(df, "time", "event", ["group"], reference_levels={"group": "Control"})
        s = r.summary.loc["group=RIT"]
        c.add("g3 Cox RIT vs Control: coef", s["coef"], cx["coef"], REL_STAT)
        c.add("g3 Cox RIT vs Control: se", s["se"], cx["se"], REL_STAT)
        c.add("g3 Cox RIT vs Control: Wald p", s["p"], cx["p"], REL_P)
        c.add("g3 Cox RIT vs Control: concordance", r.concordance, cx["concordance"], REL_STAT)
    if "km_control" in g and g["km_control"].get("median") == 34:
        notes.append("g3 Control median 34 follows lifelines (first time S < 0.5). The curve sits at exactly "
                     "0.5 on [32, 34): the textbook rule (first S <= 0.5) gives 32 and R survfit gives 33.")
