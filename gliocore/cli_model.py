"""The ``model`` sub-commands of the command line (issue 22): ``model fit`` (nested CV of the
clinical, signature and combined arms, permutation test, external validation by site or date,
model card) and ``model apply`` (a card on another table or cohort)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from gliocore.settings import Settings


def _model_table(args: argparse.Namespace, settings: Settings):
    """The wide table a model command reads: --table FILE, --synthetic, or a store cohort."""
    import pandas as pd
    if getattr(args, "synthetic", None) is not None:
        from gliocore.models.synthetic import feature_table
        return feature_table(signal=args.synthetic, seed=args.seed), "synthetic"
    if args.table:
        path = Path(args.table)
        return (pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)), path.stem
    from gliocore.analysis.export import seed_table
    from gliocore.store.database import Store
    store = Store(args.db or settings.db)
    cohort_id = args.pick_cohort(store, args.cohort)
    return seed_table(store, cohort_id, only_processed=True), str(store.cohort(cohort_id)["name"])


def cmd_model_fit(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd
    from gliocore.errors import CohortError
    from gliocore.models import card as cards
    from gliocore.models.data import family_columns, find_site_column, prepare
    from gliocore.models.estimators import ModelSpec, fit_arm
    from gliocore.models.validate import CVConfig, cross_validate, permutation_gain, summarise
    table, name = _model_table(args, settings)
    features = args.feature_columns or family_columns(table, args.features)
    clinical = [c for c in (args.clinical or ("age", "IDH-status", "sex")) if c in table.columns]
    site = None if args.site_column == "none" else (args.site_column or find_site_column(table))
    covars = [c for c in clinical if c in ("age", "sex", "IDH-status")] if site else []
    try:
        d = prepare(table, args.time, args.event, features, clinical, site, covars, args.id_column)
    except CohortError as exc:
        raise SystemExit(f"model fit: {exc}") from None
    spec = ModelSpec(kind=args.model, l1_ratio=args.l1_ratio, k_best=args.k_best or None,
                     harmonise=not args.no_harmonise, inner_splits=args.inner)
    cfg = CVConfig(args.outer, args.repeats, tuple(args.horizons), args.seed)
    print(f"{len(d)} subjects ({d.n_dropped} without a usable outcome left out), "
          f"{int(d.event.sum())} events, {d.X.shape[1]} features ({args.features}), clinical: "
          f"{', '.join(clinical) or 'none'}, site column: {site or 'none'}")
    res = cross_validate(d, spec, cfg, progress=None if args.quiet else
                         lambda i, n, what: print(f"  [{i}/{n}] {what}", file=sys.stderr))
    summary = summarise(res.folds)
    with pd.option_context("display.width", 160):
        print(res.scheme)
        print(summary.round(3).to_string(index=False))
    if args.permutations:
        gain, p, _ = permutation_gain(d, spec, cfg, args.permutations, observed=res)
        print(f"gain of clinical + signature over clinical (Harrell's C): {gain:+.3f}, "
              f"permutation p = {p:.3g} ({args.permutations} permutations)")
    _model_external(args, table, d, spec, cfg)
    fitted = fit_arm(d, args.arm, spec, seed=args.seed)
    card = cards.make_card(fitted, d, time_col=args.time, event_col=args.event, site_col=site,
                           feature_family=args.features, cv_scheme=res.scheme, cv_summary=summary,
                           horizons=cfg.horizons, cohort=name)
    if args.out:
        path = cards.save_card(card, Path(args.out))
        print(f"model card: {path} (summary {path.with_suffix('.md')}"
              + (f", forest {path.with_suffix('.forest.joblib')})" if card.get("forest") else ")"))
    return 0


def _model_external(args: argparse.Namespace, table, d, spec, cfg) -> None:
    """``model fit``'s external validations: by site (--external-train-site) and by date
    (--external-before, dates from --date-column or --scans)."""
    import numpy as np
    from gliocore.errors import CohortError
    from gliocore.models import split
    from gliocore.models.validate import external_validation
    runs = []
    if args.external_train_site:
        if d.site is None:
            raise SystemExit("--external-train-site needs a site column")
        train = np.isin(d.site, args.external_train_site)
        runs.append((f"trained on {', '.join(args.external_train_site)}, tested on the other "
                     "sites", train, ~train))
    if args.external_before:
        try:
            if args.scans:
                dates = split.first_scan_dates(args.scans, args.id_column)
            else:
                column = args.date_column or next(iter(split.date_columns(table)), None)
                if column is None:
                    raise SystemExit("--external-before: the table has no date column; name one "
                                     "with --date-column or give a scans table with --scans")
                dates = split.table_dates(table, column, args.id_column)
            cut = split.date_split(d.ids, dates, args.external_before)
        except (CohortError, ValueError) as exc:
            raise SystemExit(f"--external-before: {exc}") from None
        runs.append((cut.describe(str(dates.name)), cut.train, cut.test))
    for what, train, test in runs:
        try:
            ext, _ = external_validation(d, train, spec, cfg, test_mask=test)
        except ValueError as exc:
            raise SystemExit(f"external validation: {exc}") from None
        print(f"external validation: {what}")
        print(ext.round(3).to_string(index=False))


def cmd_model_apply(args: argparse.Namespace, settings: Settings) -> int:
    from gliocore.models.card import apply_card, load_card, score_applied
    card = load_card(Path(args.card))
    table, _ = _model_table(args, settings)
    try:
        out = apply_card(card, table, args.id_column)
    except ValueError as exc:
        raise SystemExit(f"model apply: {exc}") from None
    scores = score_applied(card, table, out, args.id_column)
    if scores:  # the new cohort has the outcome: external validation
        print("external validation on this table: " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()))
    if args.out:
        out.to_csv(args.out, index=False)
        print(f"wrote {len(out)} predictions to {args.out}")
    else:
        print(out.to_string(index=False))
    return 0


def add_model_commands(sub: Any, pick_cohort: Callable[[Any, str | None], str]) -> None:
    """The ``model fit`` and ``model apply`` sub-commands; ``pick_cohort(store, name_or_id)``
    resolves ``--cohort`` (the CLI's, shared with ``export`` and ``status``)."""
    m = sub.add_parser("model", help="survival models: nested CV, model card, apply a card")
    msub = m.add_subparsers(dest="model_command", required=True)
    for name in ("fit", "apply"):
        x = msub.add_parser(name, help="cross-validate and export a model card" if name == "fit"
                            else "apply a saved model card to another table or cohort")
        if name == "apply":
            x.add_argument("card", help="model card JSON written by `model fit --out`")
        x.add_argument("--table", help="wide table (CSV or Parquet) instead of a store cohort")
        x.add_argument("--cohort", help="store cohort name or ID (default: the latest)")
        x.add_argument("--synthetic", type=float, default=None, metavar="SIGNAL",
                       help="a synthetic feature table with this signal (0 = noise only)")
        x.add_argument("--seed", type=int, default=0)
        x.add_argument("--id-column", default="SUBJECT ID")
        x.add_argument("--out", help="fit: model card JSON; apply: predictions CSV")
        if name == "apply":
            x.set_defaults(func=cmd_model_apply, pick_cohort=pick_cohort)
            continue
        x.add_argument("--time", default="Survival(months)")
        x.add_argument("--event", default="event")
        x.add_argument("--features", default="radiomics",
                       help="family: seed, radiomics, volumes, location, vasari")
        x.add_argument("--feature-columns", nargs="*", help="explicit feature columns")
        x.add_argument("--clinical", nargs="*", help="clinical columns (default age IDH-status sex)")
        x.add_argument("--site-column", help="site / scanner column for ComBat (default: a column "
                       "named site, scanner, centre...; 'none' for no harmonisation)")
        x.add_argument("--no-harmonise", action="store_true")
        x.add_argument("--model", choices=["coxnet", "rsf"], default="coxnet")
        x.add_argument("--arm", choices=["clinical", "signature", "combined"], default="combined",
                       help="which arm the exported card holds (default clinical + signature)")
        x.add_argument("--l1-ratio", type=float, default=0.5)
        x.add_argument("--k-best", type=int, default=0, help="univariate top-k inside folds")
        x.add_argument("--outer", type=int, default=5)
        x.add_argument("--inner", type=int, default=5)
        x.add_argument("--repeats", type=int, default=1)
        x.add_argument("--horizons", type=float, nargs="+", default=[12.0, 24.0])
        x.add_argument("--permutations", type=int, default=0)
        x.add_argument("--external-train-site", nargs="*",
                       help="also train on these sites and test on the others")
        x.add_argument("--external-before", metavar="YYYY-MM-DD",
                       help="also train on subjects dated before this day and test on the others "
                       "(temporal validation)")
        x.add_argument("--date-column", help="the subjects' date for --external-before (default: "
                       "the first date column, e.g. diagnosis_date)")
        x.add_argument("--scans", help="for --external-before: a scans table whose first scan "
                       "date per subject is the date")
        x.set_defaults(func=cmd_model_fit, pick_cohort=pick_cohort)
