"""The calibration-shift table (toolkit.zoo.cal_shift): README's table is what the library computes from the shipped
caches (the old script's output, reproduced), and its numbers equal a per-example brute force."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from toolkit.caches.classification import load_cache
from toolkit.data.tasks import dev_halves
from toolkit.zoo import cal_shift, readme

DATA = REPO / "data"


@pytest.mark.slow
def test_readme_table_is_current():
    shift = cal_shift.cal_shift(DATA)
    assert readme.current(cal_shift.SECTION) == shift.section(), \
        "docs/results/cal-shift.md is stale: run `python scripts/cal_shift.py --data data --readme`"
    # the prose's claims about it: SST-2's token gap is about 17 sd of the halves' gap; A - B within 2.2 sd
    g = shift.gaps()
    sst2 = g[(g.task == "sst2") & (g.quantity == "tokens")].iloc[0]
    assert round(abs(sst2["cal - test"]) / sst2["sd over halvings"]) == 17
    acc = g[(g.task == "sst2") & ~g.quantity.isin(["tokens", "pos"])]
    assert (acc["cal - test"] > 0).all()  # "every shipped model is more accurate on cal"
    assert "sst2 0.000 vs 0.034" in shift.label_balance_note()


def test_rows_equal_a_brute_force():
    """MRPC's rows, one example at a time: the accuracy columns average the per-seed files' correctness (the cascade's
    MiniLM-L6 over its three seeds; its MPNet-base is one borrowed model, counted once)."""
    task, n_halvings = "mrpc", 12
    shift = cal_shift.cal_shift(DATA, tasks=(task,), seed=3, n_halvings=n_halvings)
    seeds = (42, 43, 44)
    tests = [load_cache(DATA / task / f"cascade-s{s}-test.parquet", verify_data=False) for s in seeds]
    cals = [load_cache(DATA / task / f"cascade-s{s}-cal.parquet", verify_data=False) for s in seeds]
    test = tests[0]
    half = dev_halves(test.example_ids, test.labels, seed=3)
    e = test.stages.index("minilm-l6:L6")
    r = shift.frame.set_index("split")
    for split, caches, keep in (("cal (train carve)", cals, [True] * cals[0].n_examples),
                                ("test half A", tests, half == 0), ("test half B", tests, half == 1)):
        idx = [i for i in range(caches[0].n_examples) if keep[i]]  # one example at a time
        assert r.loc[split, "n"] == len(idx)
        assert r.loc[split, "tokens"] == pytest.approx(sum(int(caches[0].n_tokens[i]) for i in idx) / len(idx))
        assert r.loc[split, "pos"] == pytest.approx(sum(int(caches[0].labels[i]) == 1 for i in idx) / len(idx))
        right = [sum(bool(c.correct[i, e]) for c in caches) / len(caches) for i in idx]
        assert r.loc[split, "L6"] == pytest.approx(sum(right) / len(idx))
    per_example = np.mean([t.correct[:, e] for t in tests], 0)
    gaps = []
    for s in range(n_halvings):  # the sd column: one halving at a time
        h = dev_halves(test.example_ids, test.labels, seed=s)
        gaps.append(per_example[h == 0].mean() - per_example[h == 1].mean())
    sd = shift.sd.iloc[0]
    assert sd["L6"] == pytest.approx(np.std(gaps))
    assert (sd["seeds L6"], sd["seeds MPNet"], sd["seeds MPNet me"]) == (3, 1, 1)


@settings(max_examples=40, deadline=None)
@given(st.integers(4, 30), st.integers(1, 6), st.integers(0, 10_000))
def test_halving_sd_invariants(n, s, seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=n)
    a = np.zeros((s, n), dtype=bool)
    for k in range(s):
        a[k, rng.permutation(n)[: n // 2]] = True
    sd = cal_shift.halving_sd(values, a)
    assert sd >= 0 and sd == pytest.approx(cal_shift.halving_sd(values, ~a))  # swapping halves negates every gap
    assert cal_shift.halving_sd(values * 0 + 3.0, a) == pytest.approx(0, abs=1e-12)  # constant: no gap
    assert cal_shift.halving_sd(2 * values + 1, a) == pytest.approx(2 * sd)  # scales, ignores shifts
