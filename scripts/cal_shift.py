"""Calibration shift (issue 17): a command line over :func:`toolkit.zoo.cal_shift.cal_shift` (see that module for
what the table compares).

    python scripts/cal_shift.py --data data            # print the table and the label-balance note
    python scripts/cal_shift.py --data data --readme   # also write it into docs/results/cal-shift.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from toolkit.zoo import cal_shift, readme


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data")
    p.add_argument("--seed", type=int, default=0, help="halving seed of the A/B rows")
    p.add_argument("--halvings", type=int, default=1000)
    p.add_argument("--readme", action="store_true", help="write the table into its results page, docs/results/cal-shift.md")
    a = p.parse_args(argv)
    shift = cal_shift.cal_shift(Path(a.data), seed=a.seed, n_halvings=a.halvings)
    print(shift.markdown())
    print()
    print(shift.label_balance_note())
    return readme.write(cal_shift.SECTION, shift.section()) if a.readme else 0


if __name__ == "__main__":
    sys.exit(main())
