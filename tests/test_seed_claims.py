"""The README's seed-claims table is the one scripts/seed_claims.py computes from the shipped caches today."""

import importlib.util

import pytest

from conftest import REPO

pytest.importorskip("pandas")


def _module():
    spec = importlib.util.spec_from_file_location("seed_claims", REPO / "scripts" / "seed_claims.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_table_is_current():
    mod = _module()
    current = mod.readme_sections.current(mod.SECTION)
    assert current is not None, "README has no seed-claims table"
    assert current == mod.render(), "README's seed-claims table is stale: run `python scripts/seed_claims.py --readme`"


def test_verdicts_follow_the_intervals():
    mod = _module()
    t = mod.claims()
    shown = t.dropna(subset=["difference"])
    assert len(shown) >= 10 and (t.verdict == "not answered").sum() == t.difference.isna().sum()
    trade = shown.verdict.str.startswith("trade-off")
    assert ((shown.verdict == "yes") == ((shown.lo > 0) & ~trade)).all()
    assert ((shown.verdict == "no: reversed") == ((shown.hi < 0) & ~trade)).all()
    # a trade-off: ahead on the claimed statistic, behind on the other one at the same operating points
    assert (~trade | ((shown.lo > 0) & (shown.realised_hi < 0)) | ((shown.hi < 0) & (shown.realised_lo > 0))).all()
