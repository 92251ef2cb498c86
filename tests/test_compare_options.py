"""The numeric options of the paired comparisons (compare's budgets, compare_speedups' max_drop, compare_confident's
threshold and coverage) go through one validator, ``compare._check_real``: the same refusals, each with its own
message naming the option and the value."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import random_cache
from toolkit.analysis import engine as en
from toolkit.analysis.engine.compare import _check_real

NOT_FINITE_REALS = [True, np.bool_(False), "0.5", [0.5], np.array([0.5]), 1 + 0j, float("nan"), float("inf"),
                    -float("inf"), np.float32("nan"), np.float64("inf")]


@pytest.fixture(scope="module")
def views():
    c = random_cache(60, 3, 2, seed=5)
    return en.staged(c, score="max_prob"), en.staged(c, score="entropy")


def _calls(a, b, value):
    """(call, message) of each numeric option set to ``value``."""
    return [(lambda: en.compare_speedups(a, b, max_drop=value, n_boot=5),
             "max_drop must be a finite number >= 0 (absolute)"),
            (lambda: en.compare_confident(a, b, threshold=value, n_boot=5),
             "threshold must be a finite number (a confidence)"),
            (lambda: en.compare_confident(a, b, coverage=value, n_boot=5),
             "coverage must be a share of examples, 0 < q <= 1"),
            (lambda: en.compare(a, b, budgets=(2.0, value), n_boot=5),
             "budgets are speed-ups (x): finite numbers > 0")]


@pytest.mark.parametrize("bad", NOT_FINITE_REALS, ids=repr)
def test_every_numeric_option_refuses_what_is_not_a_finite_real_number(views, bad):
    for call, message in _calls(*views, bad)[:None if np.ndim(bad) == 0 else 3]:  # budgets=(2, [.5]): not a list
        with pytest.raises(ValueError, match=re.escape(f"{message}, got {bad!r}")):
            call()


@pytest.mark.parametrize("option, bad", [("max_drop", -0.01), ("coverage", 0), ("coverage", 1.5),
                                         ("budgets", 0), ("budgets", -2)])
def test_numeric_options_refuse_values_out_of_their_range(views, option, bad):
    calls = dict(zip(("max_drop", "threshold", "coverage", "budgets"), _calls(*views, bad)))
    call, message = calls[option]
    with pytest.raises(ValueError, match=re.escape(f"{message}, got {bad!r}")):
        call()


@pytest.mark.parametrize("good", [0, 1, np.int64(1), np.float32(0.5), 0.5])
def test_numeric_options_take_python_and_numpy_numbers(views, good):
    a, b = views
    assert en.compare_speedups(a, b, max_drop=good, n_boot=5).frame["max_drop"].iloc[0] == float(good)
    assert len(en.compare_confident(a, b, threshold=good, n_boot=5).frame) == 2
    if 0 < good <= 1:
        assert len(en.compare_confident(a, b, coverage=good, n_boot=5).frame) == 2
    if good > 0:
        assert len(en.compare(a, b, budgets=(good,), n_boot=5).frame) == 1


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30), st.booleans(),
                 st.text(max_size=3), st.none()))
def test_check_real_refuses_exactly_what_is_not_a_finite_number_in_range(value):
    def ok(x):
        return x >= 0

    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if number and ok(value):
        _check_real(value, "v must be >= 0", valid=ok)
    else:
        with pytest.raises(ValueError, match=re.escape(f"v must be >= 0, got {value!r} (where)")):
            _check_real(value, "v must be >= 0", valid=ok, after=" (where)")
