"""The latency model (toolkit.analysis.cost.latency), torch-free: interpolation properties, schedules against hand-computed
predictions, and a cache view costed in predicted ms through the engine and the CLI."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.analysis.cost import latency as lat
from toolkit.analysis.cost.causal import self_speculative_passes
from toolkit.testing import PROFILE_BATCH as BATCH
from toolkit.testing import PROFILE_POSITIONS as POS
from toolkit.testing import synthetic_latency_profile as synthetic_profile

# ---------------------------------------------------------------------------------------------- interpolation

def piece():
    return synthetic_profile().model("enc")["layer"]


def test_exact_at_grid_points():
    p = piece()
    b, q = np.meshgrid(BATCH, POS, indexing="ij")
    assert np.array_equal(p(b, q), np.asarray(p.ms))


def test_stated_interpolation_between_and_beyond():
    p = piece()
    f = lambda b, q: 1.0 + 0.05 * b * q  # noqa: E731  the table's generator
    assert p(2, 12) == pytest.approx((f(2, 8) + f(2, 16)) / 2)  # linear in positions
    assert p(np.sqrt(8), 8) == pytest.approx((f(2, 8) + f(4, 8)) / 2)  # log2 midpoint of batch 2 and 4
    assert p(3, 8) == pytest.approx(f(2, 8) + np.log2(1.5) * (f(4, 8) - f(2, 8)))
    assert p(16, 8) == pytest.approx(2 * f(8, 8))  # proportional beyond the largest batch
    assert p(1, 2) == pytest.approx(f(1, 4))  # constant below the first position
    assert p(1, 40) == pytest.approx(f(1, 32) + 8 * (f(1, 32) - f(1, 16)) / 16)  # last segment extended
    assert p(0, 8) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 5), min_size=12, max_size=12), st.floats(1, 20), st.floats(1, 20), st.floats(1, 60),
       st.floats(1, 60))
def test_monotone_between_grid_points(noise, b1, b2, p1, p2):
    raw = (np.arange(12, dtype=float).reshape(3, 4) + np.asarray(noise).reshape(3, 4))  # noisy medians
    pc = lat.Piece("x", (1, 2, 8), (4.0, 8.0, 16.0, 32.0), lat.monotone(raw))
    assert (lat.monotone(raw) >= raw).all()
    lo_b, hi_b, lo_p, hi_p = min(b1, b2), max(b1, b2), min(p1, p2), max(p1, p2)
    assert pc(lo_b, lo_p) <= pc(hi_b, lo_p) + 1e-9 and pc(lo_b, lo_p) <= pc(lo_b, hi_p) + 1e-9
    assert pc(lo_b, lo_p) <= pc(hi_b, hi_p) + 1e-9


def test_bad_profiles_named():
    with pytest.raises(ValueError, match="format"):
        lat.load_profile({"format": "x", "models": {}})
    with pytest.raises(ValueError, match="shape"):
        lat.Piece("layer", (1, 2), (4.0,), np.zeros((3, 1)))
    with pytest.raises(KeyError, match="toolkit profile"):
        synthetic_profile().model("nope")
    with pytest.raises(KeyError, match="no piece"):
        synthetic_profile().model("lm")["forward"]


# ---------------------------------------------------------------------------------------------- schedules

def test_encoder_run_by_hand():
    m = synthetic_profile().model("enc")
    P = {k: m[k] for k in lat.ENCODER_PIECES}
    # lengths 4, 8, 8; exits after layers 1, 3, 2; batch 2: sorted batches {0, 1} (width 8) and {2} (width 8)
    got = lat.encoder_run_ms(m, [4, 8, 8], [1, 3, 2], batch_size=2)
    b1 = (P["inputs"](2, 8) + P["embed"](2, 8) + P["layer"](2, 8) + 2 * P["layer"](1, 8)
          + P["exit"](2, 8) + 2 * P["exit"](1, 8))
    b2 = P["inputs"](1, 8) + P["embed"](1, 8) + 2 * P["layer"](1, 8) + 2 * P["exit"](1, 8)
    assert got == pytest.approx(float(b1 + b2))
    full = lat.encoder_full_ms(m, [4, 8, 8], batch_size=2)
    fwd = lambda b: P["inputs"](b, 8) + P["embed"](b, 8) + 3 * P["layer"](b, 8) + 3 * P["head"](b, 8)  # noqa: E731
    assert full == pytest.approx(float(fwd(2) + fwd(1)))
    # a batch runs to its deepest exit: moving row 0 from layer 1 to layer 3 costs nothing in layers 2..3
    deeper = lat.encoder_run_ms(m, [4, 8, 8], [3, 3, 2], batch_size=2)
    assert deeper - got == pytest.approx(float(2 * (P["layer"](2, 8) - P["layer"](1, 8))
                                               + 2 * (P["exit"](2, 8) - P["exit"](1, 8))))


def test_cascade_run_by_hand():
    prof = synthetic_profile()
    small, big = prof.model("small"), prof.model("enc")
    got = lat.cascade_run_ms([small, big], [4, 8, 16], [0, 1, 1], batch_size=4)
    want = (small["inputs"](3, 16) + small["embed"](3, 16) + small["layer"](3, 16) + small["head"](3, 16)
            + big["inputs"](2, 16) + big["embed"](2, 16) + 3 * big["layer"](2, 16) + 3 * big["head"](2, 16))
    assert got == pytest.approx(float(want))


def test_greedy_and_calm_by_hand():
    m = synthetic_profile().model("lm")
    P = m.pieces
    # two rows: 2 and 1 tokens; CALM exits: row 0 at layers (2, 4), row 1 at layer 1; checked layers 1, 2
    greedy = lat.greedy_run_ms(m, [2, 1])
    step = lambda B: 2 * P["setup"](B, 1) + 4 * P["layer"](B, 1) + P["head"](B, 1) + P["step_overhead"](B, 1)  # noqa: E731
    assert greedy == pytest.approx(float(step(2) + step(1)))
    calm = lat.calm_run_ms(m, [[2, 4], [1]], [1, 2])
    s0 = (P["setup"](2, 1) + P["layer"](2, 1) + 3 * P["layer"](1, 1)  # layer 1: both rows; 2: row 0 only; 3, 4: none
          + P["kv_propagation"](1, 1) + 2 * P["kv_propagation"](2, 1)  # row 1 from layer 2; both from layer 3
          - 2 * P["layer"](1, 1) + 2 * P["layer"](0, 1)  # layers 3, 4 run on no row
          + P["exit"](2, 1) + P["confidence"](2, 1) + P["exit"](1, 1) + P["confidence"](1, 1)
          + P["head"](0, 1) + P["step_overhead"](2, 1))
    s1 = (P["setup"](1, 1) + 4 * P["layer"](1, 1) + 2 * (P["exit"](1, 1) + P["confidence"](1, 1))
          + P["head"](1, 1) + P["step_overhead"](1, 1))
    assert calm == pytest.approx(float(s0 + s1))
    # every token at the last layer: CALM pays greedy's pieces (one set-up, not two) plus the checked exits
    full = lat.calm_run_ms(m, [[4, 4], [4]], [1, 2])
    assert full == pytest.approx(greedy - float(P["setup"](2, 1) + P["setup"](1, 1))
                                 + float(2 * (P["exit"](2, 1) + P["confidence"](2, 1)) + 2 * (P["exit"](1, 1) + P["confidence"](1, 1))))


def test_self_speculative_by_hand():
    m = synthetic_profile().model("lm")
    P = m.pieces
    # one row, k=2, d=2, 6 tokens: blocks accept 2, 0, 1 -> emitted 0, 3, 4; caps 2, 2, min(2, 6-1-4)=1
    got = lat.self_speculative_run_ms(m, [[2, 0, 1]], 2, 2, 6)

    def block(D):
        t = P["step_overhead"](1, 1)
        for p in self_speculative_passes(2, D, 4):
            t = t + P["setup"](1, p.positions) + p.n_layers * P["layer"](1, p.positions) + p.exits * P["exit"](1, 1)
            t = t + (P["head"](1, p.heads) if p.heads else 0)
        return float(t)

    assert got == pytest.approx(2 * block(2) + block(1))
    hand = (3 * P["setup"](1, 1) + 2 * 2 * P["layer"](1, 1) + 2 * P["exit"](1, 1) + 2 * P["layer"](1, 1)
            + P["setup"](1, 3) + 2 * P["layer"](1, 3) + P["head"](1, 3) + P["step_overhead"](1, 1))
    assert block(2) == pytest.approx(float(hand))
    # batch: the second row (one block, cap 1) runs with the first at the first block's draft length
    both = lat.self_speculative_run_ms(m, [[2, 0, 1], [0]], 2, 2, 6)
    assert both > got
    # one token of budget left (cap 0): a greedy step, set up twice (layers 1..k, then k+1..L), like greedy_run_ms
    greedy = 2 * P["setup"](1, 1) + 4 * P["layer"](1, 1) + P["head"](1, 1) + P["step_overhead"](1, 1)
    assert lat.self_speculative_run_ms(m, [[2, 0, 0]], 2, 2, 5) == pytest.approx(block(2) + block(1) + float(greedy))
    assert lat.self_speculative_run_ms(m, [[0] * 5], 2, 0, 5) == pytest.approx(lat.greedy_run_ms(m, [5]))


def test_self_speculative_tuned_draft_prices_its_translator():
    """A tuned draft exit runs its translator (h + Linear(H, H)) before the lens at every draft step: blocks of
    draft lengths 2, 2, 1 (one row), then a batch of two rows, evaluate the exit 5 and 2 + 2 + 1 times."""
    m = synthetic_profile().model("lm")
    tr = lat.Piece("translator", (1, 2, 4, 8), (1.0,), np.array([[0.3 + 0.02 * b] for b in (1, 2, 4, 8)]))
    mt = replace(m, pieces={**m.pieces, "translator": tr})
    tuned = ("exit", "translator")
    lens = lat.self_speculative_run_ms(mt, [[2, 0, 1]], 2, 2, 6)
    assert lens == pytest.approx(lat.self_speculative_run_ms(m, [[2, 0, 1]], 2, 2, 6, exit_pieces=("exit",)))
    assert lat.self_speculative_run_ms(mt, [[2, 0, 1]], 2, 2, 6, exit_pieces=tuned) - lens == pytest.approx(5 * 0.32)
    two = [[2, 0, 1], [0, 2]]  # row 1: blocks capped at 2 and min(2, 6 - 1 - 1) = 2, with row 0's at 2 and 2
    extra = lat.self_speculative_run_ms(mt, two, 2, 2, 6, exit_pieces=tuned) - lat.self_speculative_run_ms(mt, two, 2, 2, 6)
    assert extra == pytest.approx(2 * 2 * 0.34 + 0.32)
    with pytest.raises(KeyError, match="no piece 'translator'"):
        lat.self_speculative_run_ms(m, [[1]], 2, 2, 6, exit_pieces=tuned)
    for bad in (("exit", "confidence"), ("translator",)):
        with pytest.raises(ValueError, match="no confidence"):
            lat.self_speculative_run_ms(mt, [[1]], 2, 2, 6, exit_pieces=bad)


@pytest.mark.parametrize("repeated", [("exit", "exit"), ("exit", "translator", "translator"), ["exit", "exit"]])
def test_self_speculative_refuses_a_repeated_exit_piece(repeated):
    """A piece named twice was priced twice per draft step (("exit", "exit") doubled the lens) while the check
    said only ("exit",) or ("exit", "translator") pass."""
    m = synthetic_profile().model("lm")
    tr = lat.Piece("translator", (1, 2, 4, 8), (1.0,), np.array([[0.3 + 0.02 * b] for b in (1, 2, 4, 8)]))
    mt = replace(m, pieces={**m.pieces, "translator": tr})
    with pytest.raises(ValueError, match="no confidence"):
        lat.self_speculative_run_ms(mt, [[2, 0, 1]], 2, 2, 6, exit_pieces=repeated)


# ---------------------------------------------------------------------------------------------- engine and CLI

def _cache(N=300, seed=0):
    from toolkit.caches.classification import from_arrays

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, N)
    lg = rng.normal(size=(N, 3, 2))
    lg[np.arange(N), :, y] += np.linspace(0.3, 2.0, 3)
    return from_arrays(lg, y, np.cumsum(np.ones((N, 3)), 1), n_tokens=rng.integers(3, 40, N),
                       meta={"split": "cal", "task": "toy", "models": [{"name": "enc"}]})


def test_view_in_predicted_ms_sweeps_and_chooses_a_time_budget():
    from toolkit.analysis.engine import choose, staged, sweep

    prof = synthetic_profile()
    cache = _cache()
    view = lat.with_predicted_time(staged(cache), prof, cache.n_tokens, models=["enc"])
    assert "predicted ms" in view.meta["cost_unit"] and "test" in view.meta["cost_unit"]
    m = prof.model("enc")
    curve = sweep(view).frame
    # brute force: each threshold's mean predicted ms is the batch-1 schedule of its exits, divided by N
    for _, row in curve.iloc[:: max(1, len(curve) // 7)].iterrows():
        stage = view.stage_of(row["threshold"])
        want = lat.encoder_run_ms(m, cache.n_tokens, np.asarray(m.info["exit_layers"])[stage], batch_size=1)
        assert row["flops"] * cache.n_examples == pytest.approx(want)
    assert view.reference_cost.mean() * cache.n_examples == pytest.approx(lat.encoder_full_ms(m, cache.n_tokens,
                                                                                               batch_size=1))
    budget = 0.8 * float(view.cost[:, -1].mean())
    op = choose(view, rule="budget", budget=lat.time_budget_speedup(view, budget))
    stage = view.stage_of(op.threshold)
    assert view.cost[np.arange(cache.n_examples), stage].mean() <= budget + 1e-9
    with pytest.raises(ValueError, match="exits after layers"):
        lat.with_predicted_time(staged(cache), prof, cache.n_tokens, models=["small"])


def test_cli_sweep_with_profile(tmp_path, capsys):
    from toolkit.caches.classification import save_cache
    from toolkit.cli import main

    path = tmp_path / "c.parquet"
    save_cache(_cache(), path)
    ppath = tmp_path / "prof.json"
    ppath.write_text(json.dumps(synthetic_profile().to_dict()))
    assert main(["sweep", str(path), "--profile", str(ppath), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "predicted ms" in out["cost_unit"] and "prof.json" in out["latency profile"]
    # at a batch size: the runtime's batches at every threshold (latency.encoder_time_sweep), not row shares
    assert main(["sweep", str(path), "--profile", str(ppath), "--batch", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "the runtime's batches" in out["cost_unit"] and "batch 8" in out["latency profile"]
    want = lat.encoder_time_sweep(_cache(), synthetic_profile(), models=["enc"], batch_size=8).meta["reference_ms"]
    assert out["reference_cost"] == pytest.approx(want)
    assert main(["sweep", str(path), "--profile", str(ppath), "--profile-model", "small"]) == 2
    assert "exits after layers" in capsys.readouterr().err


def test_speedup_agreement_by_hand():
    a = lat.speedup_agreement(["a", "b", "c"], [1.1, 2.0, 2.9], [1.0, 2.5, 3.0])
    assert a.relative_error == pytest.approx([0.1, 0.2, 1 / 30])
    assert a.median_relative_error == pytest.approx(0.1) and a.worst == ("b", pytest.approx(0.2))
    assert a.spearman == pytest.approx(1.0)
    assert lat.speedup_agreement(["a", "b"], [1, 2], [2, 1]).spearman == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="one predicted"):
        lat.speedup_agreement(["a"], [1, 2], [1, 2])


# ---------------------------------------------------------------------------------------------- hostile files

def test_profile_files_that_are_not_regular_or_too_large_are_refused_unread(tmp_path, monkeypatch):
    # before: a FIFO blocked forever in read_text, a directory gave IsADirectoryError without the key, and a file of
    # any size was read whole into memory
    import threading

    fifo = tmp_path / "p.fifo"
    os.mkfifo(fifo)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("e", pytest.raises(ValueError, lat.load_profile, fifo)),
                         daemon=True)
    t.start()
    t.join(5)
    if t.is_alive():  # free the blocked reader, then fail
        with open(fifo, "w"):
            pass
        pytest.fail("load_profile blocked on a FIFO")
    assert f"{fifo}: not a regular file" in str(out["e"].value)
    with pytest.raises(ValueError, match=f"^{tmp_path}: is a directory, not a latency profile"):
        lat.load_profile(tmp_path)
    with pytest.raises(ValueError, match="no such latency profile"):
        lat.load_profile(tmp_path / "none.json")
    big = tmp_path / "big.json"
    with open(big, "wb") as f:  # sparse: nothing is written, and nothing may be read
        f.truncate(lat.MAX_PROFILE_BYTES + 1)
    reads = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or b"")
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self) or "")
    with pytest.raises(ValueError, match=r"big.json: 67,108,865 bytes, more than a latency profile holds"):
        lat.load_profile(big)
    assert reads == []


@pytest.mark.parametrize("content,needle", [
    (b"\xff\xfe{}", "not UTF-8 text"),
    (b"[1, 2]", "a latency profile is a JSON object, got list"),
    (b'{"format": "toolkit-latency-profile/1", "models": [1]}', "key 'models' must be an object"),
    (b'{"format": "toolkit-latency-profile/1", "models": {"m": 3}}', "key models.m.kind must be encoder"),
    (b'{"format": \n nope}', ":2: not a JSON latency profile"),
])
def test_malformed_profile_files_name_the_file(tmp_path, content, needle):
    path = tmp_path / "p.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(needle)) as e:
        lat.load_profile(path)
    assert str(e.value).startswith(str(path))
