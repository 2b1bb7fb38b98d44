"""Rewrite the README's cross-validated segmentation block from the recorded ``cv.json`` files.

    python scripts/readme_segmentation.py           # rewrite README.md's block
    python scripts/readme_segmentation.py --check   # exit 1 if the README's block is stale

The block between ``<!-- learned-cv:start -->`` and ``<!-- learned-cv:end -->`` is
:func:`gliocore.validation.learned_cv.readme_block` of ``gliocore/segment/models/stacked/cv.json``
(and learned 2.0's ``cv.json``, shown beside); everything outside the markers is left as it is.
Run it after a new held-out evaluation lands; ``tests/validation/test_validation_learned.py``
fails while the README's block differs from what the recorded files give.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gliocore.validation.learned_cv import (load_recorded, readme_block,  # noqa: E402
                                            replace_block)


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with ``--check`` compare) the README's block; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only compare; exit 1 if the README's block is stale")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--cv", type=Path, default=None,
                        help="the stacked cv.json (default: the shipped one)")
    parser.add_argument("--learned-cv", type=Path, default=None,
                        help="learned 2.0's cv.json (default: the shipped one)")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    new = replace_block(text, readme_block(*load_recorded(args.cv, args.learned_cv)))
    if new == text:
        print(f"{args.readme}: block up to date")
        return 0
    if args.check:
        print(f"{args.readme}: block differs from the recorded cv.json; run "
              "python scripts/readme_segmentation.py")
        return 1
    args.readme.write_text(new)
    print(f"{args.readme}: block rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
