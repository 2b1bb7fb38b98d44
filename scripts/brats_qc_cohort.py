"""Make the five BraTS 2018 development cases a Segmentation-QC cohort, without copying images.

Usage::

    .venv/bin/python scripts/brats_qc_cohort.py [--shared ../shared] [--out data/brats18-qc]
        [--db data/brats18-qc/gliocore.duckdb] [--process]

Writes ``OUT/clinical.csv`` (one row per case; survival, IDH status and event left empty:
these cases have no clinical data here) whose image root is ``SHARED/cases/brats18-dev`` (the images and the expert
``_seg`` labels stay there), and prints the command that processes it with the rule baseline
(named: the default ``stacked`` backend's shipped model was trained on these cases, so its
figures here would not be held out) and scores it against the expert labels read through the
``brats`` label map::

    python -m gliocore --db OUT/gliocore.duckdb process --csv OUT/clinical.csv \\
        --root SHARED/cases/brats18-dev --naming brats --name brats18-qc --backend baseline \\
        --reference-suffix _seg --reference-label-map brats --no-location

``--process`` runs it too. Then ``GLIOSCOPE_DB=OUT/gliocore.duckdb make run`` shows the
Segmentation QC page on the cohort (Dice / HD95 per case and class).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gliocore.validation.real_cases import brats_cases  # noqa: E402


def write_cohort(shared: Path, out: Path) -> tuple[Path, Path]:
    """Write ``out/clinical.csv`` for the BraTS cases under ``shared``; return (csv, image root)."""
    cases = brats_cases(shared)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "clinical.csv"
    # No clinical data comes with these cases: survival, IDH and event are left missing.
    csv.write_text("SUBJECT ID,Survival(months),IDH-status,event\n"
                   + "".join(f"{c.name},,,\n" for c in cases))
    return csv, cases[0].parent


def process_args(csv: Path, root: Path, db: Path) -> list[str]:
    """The ``python -m gliocore`` arguments that process the cohort with QC references."""
    return ["--db", str(db), "process", "--csv", str(csv), "--root", str(root),
            "--naming", "brats", "--name", "brats18-qc", "--backend", "baseline",
            "--reference-suffix", "_seg",
            "--reference-label-map", "brats", "--no-location"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default=str(REPO.parent / "shared"))
    p.add_argument("--out", default=str(REPO / "data" / "brats18-qc"))
    p.add_argument("--db", help="DuckDB store (default OUT/gliocore.duckdb)")
    p.add_argument("--process", action="store_true", help="process the cohort now")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    csv, root = write_cohort(Path(args.shared).resolve(), out)
    db = Path(args.db).resolve() if args.db else out / "gliocore.duckdb"
    cli = process_args(csv, root, db)
    print(f"wrote {csv} (images stay in {root})")
    print("process with:  python -m gliocore " + " ".join(shlex.quote(a) for a in cli))
    if args.process:
        from gliocore.cli import main as cli_main
        return cli_main(cli)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
