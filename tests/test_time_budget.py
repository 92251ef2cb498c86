"""An operating point chosen on cal for a time budget (issue 31): restricting a cascade cache to some members
(Cache.select_members), choosing within a budget at several batch sizes (latency.choose_time_budget) against brute
force, and benchmarks/bench_time_budget.py end to end on tiny models built from a config (slow)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.analysis.cost import latency as lat

REPO = Path(__file__).resolve().parents[1]
BATCH, POS = [1, 2, 4, 8], [4.0, 8.0, 16.0, 32.0]
SHA = ["a" * 64, "b" * 64, "c" * 64]


def _grid(f):
    return {"batch": BATCH, "positions": POS, "ms": [[float(f(b, p)) for p in POS] for b in BATCH]}


def _encoder(layers: int, a: float) -> dict:
    """A one-exit encoder whose pieces grow with batch and positions (a: per-row-token ms of a layer); the
    per-row share falls with the batch size at a rate of its own, so budgets bind differently per batch size."""
    return {"kind": "encoder", "layers": layers, "exit_layers": [layers], "pieces": {
        "inputs": _grid(lambda b, p: 0.05 + 0.01 * b * p), "embed": _grid(lambda b, p: 0.2 + 0.002 * b * p),
        "layer": _grid(lambda b, p: 1.0 + a * b * p), "exit": _grid(lambda b, p: 0.3 + 0.001 * b),
        "head": _grid(lambda b, p: 0.2), "forward": _grid(lambda b, p: layers * (1.0 + a * b * p))}}


def profile():
    return lat.load_profile({"format": lat.PROFILE_FORMAT, "threads": 1, "dtype": "float32", "machine": {"host": "t"},
                             "models": {"m1": _encoder(1, 0.01), "m2": _encoder(2, 0.05), "m3": _encoder(3, 0.02)}})


def cascade(N=240, seed=0, split="cal"):
    """A 3-member cascade cache (one stage per member) whose header records the members and their fingerprints."""
    from toolkit.caches.classification import from_arrays

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, N)
    lg = rng.normal(size=(N, 3, 2))
    lg[np.arange(N), :, y] += np.array([0.5, 1.2, 2.0])
    inc = np.array([1.0, 2.0, 3.0]) * rng.integers(3, 40, N)[:, None]
    stages = [{"name": f"m{i + 1}:L{i + 1}", "kind": "exit", "model_index": i, "model_name": f"m{i + 1}",
               "layer": i + 1, "num_layers": i + 1} for i in range(3)]
    meta = {"split": split, "task": "toy", "path": f"toy-{split}.parquet",
            "models": [{"name": f"m{i + 1}", "path": f"/ckpt/m{i + 1}", "weights_sha256": SHA[i]} for i in range(3)]}
    return from_arrays(lg, y, np.cumsum(inc, 1), stage_info=stages, n_tokens=rng.integers(3, 40, N), meta=meta,
                       example_ids=np.array([f"{split}:{i}" for i in range(N)]))


# ---------------------------------------------------------------------------------------------- select_members

def test_select_members_is_the_smaller_cascade_with_its_own_header():
    full = cascade()
    two = full.select_members(["m1", "m3"])
    assert two.stages == ["m1:L1", "m3:L3"]
    inc = np.diff(full.flops, axis=1, prepend=0.0)
    assert np.array_equal(two.flops, np.cumsum(inc[:, [0, 2]], 1))  # m2 is not run: its cost is gone
    assert np.array_equal(two.logits, full.logits[:, [0, 2]])
    assert [s["model_index"] for s in two.stage_info] == [0, 1]
    assert [m["name"] for m in two.meta["models"]] == ["m1", "m3"]
    assert [m["weights_sha256"] for m in two.meta["models"]] == [SHA[0], SHA[2]]
    assert two.meta["selected_from"] == {"path": "toy-cal.parquet", "members": ["m1", "m3"]}
    assert "m1" in two.meta["path"] and "toy-cal.parquet" in two.meta["path"]
    assert full.select_members([0, 1]).stages == full.select_members(["m1", "m2"]).stages
    from toolkit.caches.identity import cache_identity

    assert cache_identity(two)["models"] != cache_identity(full)["models"]
    assert cache_identity(two)["model_names"] == ["m1", "m3"]


@pytest.mark.parametrize("members, needle", [(["m4"], "no member 'm4'"), (["m2", "m1"], "increasing"),
                                             ([], "increasing"), ([5], "no member 5"), (["m1", "m1"], "increasing")])
def test_select_members_refuses_bad_selections(members, needle):
    with pytest.raises(ValueError, match=needle):
        cascade().select_members(members)


def test_select_members_needs_model_records():
    from toolkit.caches.classification import from_arrays

    c = from_arrays(np.zeros((4, 2, 2)), [0, 1, 0, 1], [1.0, 2.0])
    with pytest.raises(ValueError, match="records no models"):
        c.select_members([0])


def test_a_point_chosen_on_a_selection_makes_a_policy_of_those_members_only():
    from toolkit import Policy
    from toolkit.analysis.engine import choose, staged

    cal = cascade().select_members(["m1", "m2"])
    op = choose(staged(cal), rule="drop", max_drop=0.05)
    p = Policy.from_operating_point(op, models=["/x/m1", "/x/m2"], weights=cal)
    assert p.method == "cascade" and [m.weights_sha256 for m in p.models] == SHA[:2]
    test = cascade(seed=1, split="test")
    op.evaluate(staged(test.select_members(["m1", "m2"])))  # the same members: accepted
    with pytest.raises(ValueError, match="differ in models"):
        op.evaluate(staged(test))  # the whole cascade is other models: the identity check refuses it


# ---------------------------------------------------------------------------------------------- the runtime's batches

def simulate_cascade(members, n_tokens, stage, b):
    """CascadeRunner in plain Python: member e on the examples not stopped before it, re-sorted and re-batched."""
    todo = list(range(len(n_tokens)))
    ms = 0.0
    for e, m in enumerate(members):
        order = sorted(todo, key=lambda i: (n_tokens[i], i))
        for s in range(0, len(order), b):
            rows = order[s:s + b]
            ms += float(lat.forward_ms(m, len(rows), max(n_tokens[i] for i in rows)))
        todo = [i for i in todo if stage[i] > e]
    return ms


@settings(max_examples=15, deadline=None)
@given(N=st.integers(1, 60), b=st.integers(1, 9), seed=st.integers(0, 10_000), three=st.booleans())
def test_cascade_sweep_equals_simulated_batches(N, b, seed, three):
    from toolkit.analysis.engine import staged

    names = ["m1", "m2", "m3"] if three else ["m1", "m3"]
    cal = cascade(N=N, seed=seed).select_members(names)
    prof = profile()
    curve = lat.encoder_time_sweep(staged(cal), prof, n_tokens=cal.n_tokens, models=names, batch_size=b)
    view = staged(cal)
    mp = [prof.model(x) for x in names]
    n = cal.n_tokens.tolist()
    f = curve.frame
    for _, row in f.iloc[np.unique(np.linspace(0, len(f) - 1, 12).astype(int))].iterrows():
        want = simulate_cascade(mp, n, view.stage_of(row["threshold"]).tolist(), b)
        assert row["flops"] * N == pytest.approx(want, rel=1e-9)


def test_batch_one_cascade_equals_the_exact_view():
    from toolkit.analysis.engine import staged, sweep

    cal = cascade(N=90).select_members(["m1", "m3"])
    a = lat.encoder_time_sweep(cal, profile(), models=["m1", "m3"], batch_size=1).frame
    bv = sweep(lat.with_predicted_time(staged(cal), profile(), cal.n_tokens, models=["m1", "m3"])).frame
    np.testing.assert_allclose(a["flops"], bv["flops"], rtol=1e-12)


def test_batched_cascade_time_is_not_monotone_in_the_threshold():
    """Re-batching the escalated examples: stopping one more example at the first member can cost more (by hand,
    lengths 8, 8, 32, 32 at batch 2: the second member's batches (8, 8), (32, 32) become (8, 32), (32))."""
    prof = profile()
    m1, m2 = prof.model("m1"), prof.model("m2")
    t = lat.cascade_ms([m1, m2], [8, 8, 32, 32], np.array([[1, 1, 1, 1], [0, 1, 1, 1]]), batch_size=2)
    f1 = lambda r, w: float(lat.forward_ms(m1, r, w))  # noqa: E731
    f2 = lambda r, w: float(lat.forward_ms(m2, r, w))  # noqa: E731
    np.testing.assert_allclose(t, [f1(2, 8) + f1(2, 32) + f2(2, 8) + f2(2, 32),
                                   f1(2, 8) + f1(2, 32) + f2(2, 32) + f2(1, 32)])
    assert t[1] > t[0]


# ---------------------------------------------------------------------------------------------- choose_time_budget

def _views(cache, prof, batches):
    """The cal view costed at batch 1 (exact per example) and, above, the runtime's batches swept exactly."""
    from toolkit.analysis.engine import staged

    return [lat.with_predicted_time(staged(cache), prof, cache.n_tokens, models=["m1", "m2"]) if b == 1
            else lat.encoder_time_sweep(cache, prof, models=["m1", "m2"], batch_size=b) for b in batches]


def _brute_force(views, budgets, metric):
    """Every distinct threshold of the sweep: the best metric among those within every budget, then the lowest."""
    from toolkit.analysis.engine import evaluation, sweep

    def ms(v, thr):
        if hasattr(v, "frame"):  # an exact curve of the runtime's batches: its row at thr
            return float(v.frame.loc[v.frame["threshold"] == thr, "flops"].iloc[0])
        return evaluation(v, thr).flops

    best = None
    for thr in sweep(views[0]).frame["threshold"]:
        if all(ms(v, thr) <= b * (1 + 1e-12) for v, b in zip(views, budgets)):
            key = (-round(evaluation(views[0], thr).metrics[metric], 12), thr)
            best = key if best is None or key < best else best
    return best[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fractions", [(0.6, 0.6), (0.7, 0.5), (0.45, 0.8)])
def test_choose_time_budget_equals_brute_force(seed, fractions):
    prof = profile()
    cal = cascade(seed=seed).select_members(["m1", "m2"])
    views = _views(cal, prof, [1, 8])
    refs = [float(views[0].reference_cost.mean()), views[1].meta["reference_ms"]]
    budgets = [f * r for f, r in zip(fractions, refs)]
    got = lat.choose_time_budget(views, budgets, metric="accuracy", names=["batch 1", "batch 8"])
    assert got.threshold == _brute_force(views, budgets, "accuracy")
    frame = got.to_frame()
    assert frame["within_budget"].all() and frame["binding"].sum() <= 1
    assert got.to_dict()["binding"] == got.binding
    np.testing.assert_allclose(frame["reference_ms"], refs)


def test_budgets_bind_at_different_batch_sizes():
    """A budget tighter at batch 8 than at batch 1 binds there, and choosing on batch 1 alone would overrun it."""
    prof = profile()
    cal = cascade().select_members(["m1", "m2"])
    v1, v8 = _views(cal, prof, [1, 8])
    budgets = [0.7 * float(v1.reference_cost.mean()), 0.45 * v8.meta["reference_ms"]]
    got = lat.choose_time_budget([v1, v8], budgets, names=["b1", "b8"])
    assert got.binding == "b8" and got.cal_ms[1] <= budgets[1]
    from toolkit.analysis.engine import choose

    alone = choose(v1, rule="budget", budget=lat.time_budget_speedup(v1, budgets[0]))
    f = v8.frame
    assert float(f.loc[f["threshold"] == alone.threshold, "flops"].iloc[0]) > budgets[1]  # what batch 1 misses


@pytest.mark.parametrize("b", [3, 8, 32])
def test_row_shares_misprice_the_batched_cascade(b):
    """At batch b the runtime re-batches the escalated examples: the exact sweep differs from each row's share of a
    full batch (cascade_example_ms at batch b), which with_predicted_time therefore refuses, naming the exact sweep."""
    from toolkit.analysis.engine import staged

    prof = profile()
    cal = cascade().select_members(["m1", "m2"])
    view = staged(cal)
    curve = lat.encoder_time_sweep(cal, prof, models=["m1", "m2"], batch_size=b)
    exact = curve.frame["flops"].to_numpy()
    shares = lat.cascade_example_ms([prof.model("m1"), prof.model("m2")], cal.n_tokens, batch=b)
    stage = view.stage_of(curve.frame["threshold"].to_numpy()[:, None])
    share_ms = np.take_along_axis(shares, stage.T, axis=1).mean(0)
    assert np.abs(exact / share_ms - 1).max() > 0.01
    with pytest.raises(ValueError, match=f"time_sweep.*batch_size={b}"):
        lat.with_predicted_time(view, prof, cal.n_tokens, models=["m1", "m2"], batch=b)
    np.testing.assert_array_equal(lat.time_sweep(view, prof, n_tokens=cal.n_tokens, models=["m1", "m2"],
                                                 batch_size=b).frame["flops"], exact)


def test_choose_time_budget_refusals():
    from toolkit.analysis.engine import staged

    prof = profile()
    cal = cascade().select_members(["m1", "m2"])
    views = _views(cal, prof, [1, 8])
    with pytest.raises(ValueError, match="one budget"):
        lat.choose_time_budget(views, [1.0])
    with pytest.raises(ValueError, match="not costed in predicted ms"):
        lat.choose_time_budget([staged(cal)], [1.0])
    other = _views(cascade(seed=3).select_members(["m1", "m2"]).subset(np.arange(100)), prof, [1])[0]
    with pytest.raises(ValueError, match="same split"):
        lat.choose_time_budget([views[0], other], [1.0, 1.0])
    tiny = 0.5 * float(views[0].cost[:, 0].mean())  # below the first member alone
    with pytest.raises(ValueError, match="view 'view 0'"):
        lat.choose_time_budget(views[:1], [tiny])
    with pytest.raises(ValueError, match="pass cal="):
        lat.choose_time_budget(views[1:], [1e9])
    with pytest.raises(ValueError, match="not test"):
        test = cascade(split="test").select_members(["m1", "m2"])
        lat.choose_time_budget(_views(test, prof, [1]), [1e9])


# ---------------------------------------------------------------------------------------------- end to end

def _bench():
    spec = importlib.util.spec_from_file_location("bench_time_budget", REPO / "benchmarks" / "bench_time_budget.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paired_speedup_by_hand():
    got = _bench().paired([2.0, 4.0, 1.0], [1.0, 3.0, 0.8])  # ratios 0.5, 0.75, 0.8
    assert got["measured_share_paired"] == 0.75 and got["measured_speedup_paired"] == pytest.approx(4 / 3)
    assert got["measured_speedup_range"] == pytest.approx([1.25, 2.0])


@pytest.mark.slow
def test_bench_time_budget_end_to_end_on_tiny_models(tmp_path, tiny_encoder_dir, glue_dir, one_torch_thread):
    """Two tiny members from a config, collected into cal and test caches; the benchmark checks their identity,
    profiles them (quick grid), chooses on cal within the budget at two batch sizes, and runs the policy for real:
    the runtime's exits and predictions equal the cache's decisions, its metric the cache's at that point."""
    from toolkit.nn.encoder.collect import collect
    from toolkit.nn.encoder.models import MultiExitModel

    folders = []
    for layers in (1, 3):
        m = MultiExitModel.from_backbone(tiny_encoder_dir, 2, exit_layers=[layers], num_hidden_layers=layers, seed=layers)
        d = tmp_path / f"m{layers}"
        m.save_pretrained(d)
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tiny_encoder_dir).save_pretrained(d)
        folders.append(d)
    for split in ("cal", "test"):
        collect([str(f) for f in folders], "mrpc", split, tmp_path / f"{split}.parquet", data_dir=glue_dir,
                names=["small", "big"], batch_size=4, progress=False, command="test")
    out = tmp_path / "res.json"
    # budget 3x the big member alone: tiny models' times are mostly fixed overheads, noisy on a quick profile; the
    # choice itself is tested against brute force above
    args = ["--cal", str(tmp_path / "cal.parquet"), "--test", str(tmp_path / "test.parquet"), "--members",
            f"small={folders[0]}", f"big={folders[1]}", "--out", str(out), "--budget", "3", "--batch-sizes", "1",
            "4", "--repeats", "1", "--check", "4", "--quick-profile", "--profile-out", str(tmp_path / "prof.json"),
            "--n-boot", "20", "--data-dir", str(glue_dir)]
    bench = _bench()
    assert bench.main(args) == 0
    d = json.loads(out.read_text())
    assert [r["member"] for r in d["meta"]["identity"]] == ["small", "big"]
    assert all(r["max_abs_logit_diff"] < 1e-4 for r in d["meta"]["identity"])
    assert [r["batch_size"] for r in d["rows"]] == [1, 4]
    for r in d["rows"]:
        assert r["exits_equal_cache"] == 1.0 and r["predictions_equal_cache"] == 1.0
        assert r["real_metric"] == pytest.approx(r["cache_metric"]) and r["budget_held_test_share"] is not None
        assert r["cal_chosen_ms"] <= r["budget_ms"] * (1 + 1e-9)  # chosen within the budget on cal
        assert r["cal_chosen_ms"] == pytest.approx(r["cal_schedule_ms"], rel=1e-9)  # priced as the runtime runs
        assert r["predicted_method_ms"] > 0 and r["measured_method_ms"] > 0 and r["measured_speedup_paired"] > 0
    assert d["meta"]["choice"]["binding"] in ("batch 1", "batch 4", "joint")
    assert [m["weights_sha256"] for m in d["meta"]["policy"]["models"]] == [
        r["weights_sha256"] for r in d["meta"]["identity"]]
    assert "|" in bench.markdown_table(out)
    # a checkpoint other than the one the cache was collected with is refused before anything runs
    with pytest.raises(SystemExit, match="weights sha256"):
        bench.main([*args[:4], "--members", f"small={folders[1]}", f"big={folders[1]}", *args[7:]])
