"""The seed papers' claims, answered on the shipped caches (docs/results/claims.md): a command line over
:func:`toolkit.zoo.claims.seed_claims`, which computes the table (see its module for what each column means).

    python scripts/seed_claims.py             # print the section
    python scripts/seed_claims.py --readme    # also write it into docs/results/claims.md
"""

from __future__ import annotations

import argparse
import sys

from toolkit.zoo import catalogue, claims


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readme", action="store_true", help="write the table into its results page, docs/results/claims.md")
    ap.add_argument("--n-boot", type=int, default=catalogue.N_BOOT, help="paired bootstrap resamples")
    ap.add_argument("--seed", type=int, default=catalogue.SEED, help="bootstrap and cross-fitting halves seed")
    a = ap.parse_args(argv)
    table = claims.seed_claims(n_boot=a.n_boot, seed=a.seed)
    print(table.section())
    return claims.write_readme(table) if a.readme else 0


if __name__ == "__main__":
    sys.exit(main())
