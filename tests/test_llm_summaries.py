"""What notebook 10 reads off its results (``toolkit.zoo.llm_summaries``): each count, extreme and quoted point is
recomputed independently from the shipped token caches and the committed benchmark JSON (by hand: prompt-weighted
sums, percentiles, plain loops over rows, ``json.load``), and the numbers the notebook printed before they moved
into the library (commit ad445d9, N_BOOT = 1000, SEED = 0) are reproduced exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.analysis.llm import exits as llm
from toolkit.analysis.llm import intervals as li
from toolkit.zoo import catalogue, llm_results
from toolkit.zoo import llm_summaries as S
from toolkit.zoo.llm_token_caches import smollm2_token_caches

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
TARGET, L = 0.95, 30
DESIGNS = ("every 3rd layer", "one checked layer")


def norm(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def sm():
    return smollm2_token_caches()


@pytest.fixture(scope="module")
def weights(sm):
    return sm.weights(n_boot=catalogue.N_BOOT, seed=catalogue.SEED)


# ------------------------------------------------------------------------------------------------ reliability
@pytest.fixture(scope="module")
def reliability(sm, weights):
    table = li.layer_reliability_table(sm.test, ("lens", "tuned"), weights["test"])
    return table, S.reliability_summary(table, sm.test)


def by_hand_draws(cache, family, w, n_bins=15):
    """Agreement and ECE per resample and layer 1..L-1, from the cache's arrays: a token weighs its prompt's count."""
    wt = w[:, cache.example_index]  # [R, S]
    top1, stats = cache.family(family)
    agree = (top1 == cache.tokens[:, None])[:, :-1].astype(float)
    names = cache.stat_names
    stats = stats.astype(np.float64)
    conf = np.exp(stats[..., names.index("max_logit")] - stats[..., names.index("lse@1")])[:, :-1]
    ece = np.zeros((len(w), agree.shape[1]))
    for j in range(agree.shape[1]):
        b = np.minimum((conf[:, j] * n_bins).astype(int), n_bins - 1)
        for k in np.unique(b):
            m = b == k
            ece[:, j] += np.abs(wt[:, m] @ (agree[m, j] - conf[m, j]))
    total = wt.sum(1, keepdims=True)
    return wt @ agree / total, ece / total, agree.mean(0), conf.mean(0)


def test_reliability_counts_equal_recounting_from_the_cache(sm, weights, reliability):
    _, s = reliability
    (a_lens, e_lens, agr_lens, conf_lens), (a_tuned, e_tuned, agr_tuned, conf_tuned) = (
        by_hand_draws(sm.test, f, weights["test"]) for f in ("lens", "tuned"))
    layers = np.arange(1, L)
    lo = lambda d: np.quantile(d[1:], 0.025, axis=0)  # noqa: E731
    hi = lambda d: np.quantile(d[1:], 0.975, axis=0)  # noqa: E731
    assert s.agrees_more == tuple(layers[lo(a_tuned - a_lens) > 0])
    assert s.ece_lower == tuple(layers[hi(e_tuned - e_lens) < 0])
    assert s.ece_higher == tuple(layers[lo(e_tuned - e_lens) > 0])
    assert s.overconfident == {"lens": int((conf_lens > agr_lens).sum()), "tuned": int((conf_tuned > agr_tuned).sum())}
    assert s.underconfident == {"lens": int((conf_lens < agr_lens).sum()),
                                "tuned": int((conf_tuned < agr_tuned).sum())}
    d = e_tuned.mean(1) - e_lens.mean(1)
    assert (s.mean_ece_difference["difference"], s.mean_ece_difference["lo"], s.mean_ece_difference["hi"]) == \
        pytest.approx((d[0], *np.quantile(d[1:], [0.025, 0.975])))
    assert s.quoted[15]["tuned agreement"][0] == pytest.approx(agr_tuned[14])
    assert s.quoted[29]["lens confidence"] == pytest.approx(conf_lens[28], rel=1e-5)  # float32 logits
    assert (s.n_prompts, s.n_tokens, s.n_layers) == (sm.test.n_examples, sm.test.n_tokens, L - 1)


def test_reliability_summary_reproduces_the_printed_numbers(reliability):
    table, s = reliability
    assert repr(s).splitlines()[1] == (
        "layers where tuned agrees more (paired interval above 0): 29 of 29; tuned ECE lower: 26, higher: 2 [28, 29]; "
        "lens overconfident (mean max-prob > agreement): 29; tuned underconfident: 29")
    assert S._r(s.mean_ece) == {"lens": (0.476, 0.468, 0.485), "tuned": (0.12, 0.105, 0.139)}
    md = norm(s.markdown())
    for said in ("at layer 15 the logit lens 0.059 [0.049, 0.070], tuned exits 0.466 [0.419, 0.521]",
                 "at layer 29 the lens 0.461 [0.434, 0.486], tuned 0.844 [0.827, 0.861]",
                 "the higher at 2 (28, 29)", "a difference of -0.357 [-0.376, -0.333]",
                 "at 29 of 29 layers (at layer 15: 0.619 for 0.059)", "(at layer 15: 0.383 for 0.466)"):
        assert said in md
    shown = s.shown(table)
    assert shown.loc[1, "tuned - lens"] == "0.323 [0.278, 0.371]" and shown.loc[1, "lens ECE"] == "0.607 [0.591, 0.622]"
    assert s.to_frame().shape[0] == 1 and "28" in s._repr_html_()


def test_reliability_summary_refuses_what_it_cannot_read(sm, weights, reliability):
    table, _ = reliability
    with pytest.raises(KeyError, match="not in the table"):
        S.reliability_summary(table, sm.test, layers=(15, 30))
    one = li.layer_reliability_table(sm.test, ("lens",), weights["test"][:3])
    with pytest.raises(ValueError, match="two families"):
        S.reliability_summary(one, sm.test)


# ------------------------------------------------------------------------------------------------------ CALM
@pytest.fixture(scope="module")
def calm(sm, weights):
    sets = {"test": (sm.test, weights["test"]), "qnli (transfer)": (sm.qnli, weights["qnli"])}
    designs = {(f, d): (list(range(3, L, 3)) if d == DESIGNS[0] else [li.best_single_layer(sm.cal, f, target=TARGET)])
               for f in S.FAMILIES for d in DESIGNS}
    points = {(f, d): li.calm_operating_points(sm.cal, sets, f, checked_layers=c, targets=(0.9, 0.95, 0.99),
                                               only_at={"qnli (transfer)": (TARGET,)}, transfer=("qnli (transfer)",))
              for (f, d), c in designs.items()}
    diffs = li.calm_family_differences({d: points["tuned", d] for d in DESIGNS},
                                       {d: points["lens", d] for d in DESIGNS}, target=TARGET, on="test")
    return points, diffs, S.calm_summary(points, diffs, target=TARGET)


def test_calm_summary_equals_recounting_the_tokens(sm, calm):
    points, diffs, s = calm
    for (f, d), p in points.items():
        top1, stats = sm.test.family(f)
        names = sm.test.stat_names
        conf = np.exp(stats[..., names.index("max_logit")] - stats[..., names.index("lse@1")])
        checked = [k - 1 for k in p.checked_layers]
        g = p.frame[(p.frame.rule == "global") & (p.frame["evaluated on"] == "test")]
        never = [t for t, th in zip(g["target (cal)"], g.threshold) if not (conf[:, checked] >= th).any()]
        assert s.never_exit[f"{f} | {d}"] == never  # no token clears the threshold at any checked layer
    for _, r in diffs.frame.iterrows():
        c = s.comparisons[f"{r.design} | {r.rule} | {r.statistic}"]
        assert c["verdict"] == ("tuned ahead" if r.lo > 0 else "lens ahead" if r.hi < 0 else "no difference shown")
    assert S._r(dict(s.oracle_speedup)) == {"lens | every 3rd layer": 0.41, "lens | one checked layer": 0.905,
                                            "tuned | every 3rd layer": 0.724, "tuned | one checked layer": 1.172}
    assert s.never_exit["lens | every 3rd layer"] == [0.95, 0.99]
    md = norm(s.markdown())
    for said in ("gives 0.960 [0.949, 0.969] agreement at 0.45x [0.44, 0.46], 42.7% of tokens exiting early on test",
                 "speed-up +0.10 [0.09, 0.11] (tuned ahead) and agreement -0.040 [-0.051, -0.031] (lens ahead)",
                 "Transfer to QNLI (no cal of its own), one checked layer: lens 0.946 [0.936, 0.954] agreement"):
        assert said in md, said
    table = S.calm_table(points)
    assert len(table) == sum(len(p) for p in points.values())
    assert (table.agreement.iloc[0], table["speed-up"].iloc[0]) == ("0.935 [0.922, 0.949]", "0.378x [0.375, 0.380]")


# ------------------------------------------------------------------------------------------- self-speculative
@pytest.fixture(scope="module")
def spec(sm, weights):
    cases = {split: pd.concat([llm.self_speculative(c, f, draft_lengths=range(1, 9)) for f in S.FAMILIES],
                              ignore_index=True) for split, c in (("cal", sm.cal), ("test", sm.test))}
    points = {f: li.self_speculative_points(sm.cal, {"test": (sm.test, weights["test"]),
                                                     "qnli (transfer)": (sm.qnli, weights["qnli"])}, f,
                                            shallow=(15, 4), draft_lengths=range(1, 9), transfer=("qnli (transfer)",))
              for f in S.FAMILIES}
    diffs = li.spec_family_differences(points["tuned"], points["lens"])
    ceiling = llm.memory_bound_ceiling(sm.test, "lens", L - 1, 1)
    return cases, S.self_speculative_summary(cases["cal"], cases["test"], points, diffs, ceiling=ceiling,
                                             ceiling_at=(L - 1, 1))


def test_self_speculative_counts_equal_a_loop_over_the_cases(sm, spec):
    cases, s = spec
    above_cal = {f: 0 for f in S.FAMILIES}
    below, above, best = 0, 0, {f: (0.0, 0.0) for f in S.FAMILIES}
    for r in cases["cal"].itertuples():
        above_cal[r.family] += r.memory_bound_speedup > 1
    for r in cases["test"].itertuples():
        below += r.speedup < 1
        above += r.memory_bound_speedup > 1
        best[r.family] = (max(best[r.family][0], r.speedup), max(best[r.family][1], r.memory_bound_speedup))
    assert s.cal_above_1x_memory_bound == above_cal
    assert (s.test_below_1x_flops, s.test_above_1x_memory_bound, s.n_cases) == (below, above, len(cases["test"]))
    assert {f: (s.best_flops[f], s.best_memory_bound[f]) for f in S.FAMILIES} == best
    # the ceiling by hand: a block of one accepted draft through layers 1..29 and the lens (final norm + tied head),
    # then every layer and the head for the verify pass, emits two tokens; greedy reads every layer and the head
    d = sm.test.model["dims"]
    h, kv = d["hidden"], d["kv_heads"] * d["head_dim"]
    layer = 2 * h * h + 2 * h * kv + 3 * h * d["intermediate"] + 2 * h
    head = d["vocab"] * h + h
    assert s.ceiling == pytest.approx(2 * (L * layer + head) / ((L - 1) * layer + head + L * layer + head), rel=1e-3)


def test_self_speculative_summary_reproduces_the_printed_numbers(spec):
    _, s = spec
    assert repr(s).splitlines()[0] == (
        "464 (family, layer, draft length) cases per split; pairs chosen on cal by the memory-bound speed-up; cases "
        "above 1x on cal (memory-bound): lens 0, tuned 4; on test, below 1x in FLOPs: 464, above 1x memory-bound: 3")
    assert S._r(dict(s.best_memory_bound)) == {"lens": 0.839, "tuned": 1.055}
    assert round(s.ceiling, 3) == 1.013
    md = norm(s.markdown())
    assert "464 of the 464 cases cost more FLOPs than the full model, as argued above, and 3 read fewer" in md
    assert "the best memory-bound speed-up of any pair is 0.839x for the logit lens and 1.055x for tuned exits" in md
    with pytest.raises(ValueError, match="lacks columns"):
        S.self_speculative_summary(pd.DataFrame({"family": []}), pd.DataFrame(), {}, None, ceiling=1.0,
                                   ceiling_at=(1, 1))


# -------------------------------------------------------------------------------------------------- runtime
PRINTED_NUMBERS_FROM = {  # sha256 (first 16 hex) of the benchmark files notebook 10 printed from (commit ad445d9)
    "llm_cache_fidelity.json": "7d09c167995032ec", "llm_calm_fidelity.json": "4fa273a2f213e6de",
    "bench_llm_cpu.json": "5e877032363c02ae", "bench_llm_hf_cpu.json": "2942b62c43b3931e"}


def runtime(chosen=None):
    return S.runtime_summary(llm_results.cache_fidelity(BENCH / "llm_cache_fidelity.json", chosen=chosen),
                             llm_results.calm_fidelity(BENCH / "llm_calm_fidelity.json"),
                             llm_results.runtime_runs(BENCH))


def test_runtime_summary_equals_recounting_the_json():
    s = runtime()
    if (BENCH / "llm_cache_fidelity.json").exists():
        res = json.loads((BENCH / "llm_cache_fidelity.json").read_text())["results"]
        assert (s.fidelity["decodes"], s.fidelity["tokens equal"], s.fidelity["accepted equal"]) == (
            sum(r["prompts"] for r in res), sum(r["tokens_equal"] for r in res), sum(r["accepted_equal"] for r in res))
    if (BENCH / "llm_calm_fidelity.json").exists():
        res = [r for r in json.loads((BENCH / "llm_calm_fidelity.json").read_text())["results"]
               if r["threshold"] is not None and np.isfinite(float(r["threshold"]))]
        gaps = [r["offline"]["agreement"] - r["real"]["positionwise_agreement"] for r in res]
        assert s.calm_gap["points"] == len(res)
        assert s.calm_gap["gap"] == pytest.approx((min(gaps), max(gaps)))
        worst = res[int(np.argmax(gaps))]
        assert (s.calm_gap["largest"]["family"], s.calm_gap["largest"]["design"]) == (worst["family"], worst["design"])
        assert s.calm_gap["real speedup"] == pytest.approx((min(r["real"]["flops_speedup"] for r in res),
                                                            max(r["real"]["flops_speedup"] for r in res)))
    rows = [(p.name, r) for p in sorted(BENCH.glob("bench_llm_*.json"))
            for d in [json.loads(p.read_text())] if {"meta", "rows"} <= set(d)
            for r in d["rows"] if "measured_speedup" in r]
    if rows:
        ratios = [r["measured_speedup"] / r["predicted_speedup"] for _, r in rows]
        assert s.speed["runs"] == len(rows) and s.speed["ratio"] == pytest.approx((min(ratios), max(ratios)))
        equal = {}
        for _, r in rows:
            e, n = equal.get(r["method"], (0, 0))
            equal[r["method"]] = (e + (r.get("tokens_equal_greedy") == 1), n + 1)
        assert s.speed["equal to greedy"] == equal
        assert s.speed["fastest"]["measured"] == max(r["measured_speedup"] for _, r in rows)


def test_runtime_summary_reproduces_the_printed_numbers(sm):
    files = {name: BENCH / name for name in ("llm_cache_fidelity.json", "llm_calm_fidelity.json", "bench_llm_cpu.json",
                                             "bench_llm_hf_cpu.json")}
    digest = {n: hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.exists() else None for n, p in files.items()}
    if digest != PRINTED_NUMBERS_FROM:
        pytest.skip(f"the benchmark files changed since notebook 10 printed these numbers ({digest}); the "
                    f"recount test above still checks the summary")
    chosen = {f: (c.layer, c.draft_length) for f in S.FAMILIES for c in [llm.choose_self_speculative(sm.cal, f)]}
    assert chosen == {"lens": (1, 1), "tuned": (2, 1)}  # the pairs chosen on cal, as notebook 10 printed them
    s = runtime(chosen)
    assert s.fidelity["families checked"] == ("lens",)
    lines = repr(s).splitlines()
    assert lines[0] == ("decodes: 1080; output equal to the cache: 1080; accepted counts equal: 1080; pairs chosen on "
                        "cal here among those checked: True")
    assert lines[2] == ("runs: 14; measured / predicted from 0.802 to 1.514; runs whose output equals greedy decoding "
                        "(equal, runs): {'calm': (0, 4), 'hf_self_speculative': (2, 2), 'self_speculative': (8, 8)}")
    md = norm(s.markdown())
    for said in ("at the 6 operating points that exit at all, the real decode agrees with the full model's output "
                 "position by position 0.040 to 0.484 less",
                 "the largest gap is tuned (every 3rd layer) on agnews_headline: estimated 0.931, real 0.447, with "
                 "0.08 of outputs identical and quality (chrf) 21.711 against the full model's 23.040",
                 "range from 0.41x to 1.93x against estimates of 0.40x to 1.27x",
                 "the fastest run is calm at L[6, 10, 14, 18] t=0.67, batch 1, 1.59x measured for 1.30x predicted",
                 "Self-speculative outputs equal greedy decoding in 8 of 8 runs; CALM outputs (which may differ by "
                 "design) equal it in 0 of 4",
                 "ran at HF k=29 d=1 0.54x [0.43, 0.65], HF k=1 d=1 0.63x [0.55, 0.72], output equal to greedy "
                 "decoding in 2 of 2 runs; this project's decoder in the same run: k=29 d=1 0.49x [0.34, 0.74], k=1 "
                 "d=1 0.68x [0.59, 0.76]",
                 "those of lens are among those checked (the others need exits not in this checkout)"):
        assert said in md, said


def test_runtime_summary_says_what_is_absent(tmp_path):
    s = S.runtime_summary(llm_results.cache_fidelity(tmp_path / "none.json"),
                          llm_results.calm_fidelity(tmp_path / "none.json"), llm_results.runtime_runs(tmp_path))
    assert (s.fidelity, s.calm_gap, s.speed, s.peer) == (None, None, None, None)
    md = s.markdown()
    assert "`llm_cache_fidelity.json` is absent" in md and "no runtime benchmark results are committed" in md
    assert repr(s) == "" and s.to_frame().shape == (1, 4)


# ------------------------------------------------------------------------------------------------ classifier
@pytest.fixture(scope="module")
def classifier():
    from toolkit.zoo.llm_classifier import llm_classifier

    results = {t: llm_classifier(t, max_drop=0.01, n_boot=catalogue.N_BOOT, seed=catalogue.SEED, verbose=False)
               for t in ("sst2", "agnews")}
    return results, S.classifier_summary(results, max_drop=0.01)


def test_classifier_summary_equals_reading_the_tables_by_hand(classifier):
    results, s = classifier
    for t, r in results.items():
        v = s.tasks[t]
        for fam, key in (("smollm2_zs_lens", "lens"), ("smollm2_zs_tuned", "tuned")):
            acc = r.tables[fam].accuracy.tolist()
            best = max(range(len(acc) - 1), key=lambda j: (acc[j], -j))  # the first best layer before the last
            assert (v[f"{key} best accuracy"], v[f"{key} last accuracy"]) == (acc[best], acc[-1])
        assert v["tuned best layer"] == r.tables["smollm2_zs_tuned"].stage.iloc[
            int(np.argmax(r.tables["smollm2_zs_tuned"].accuracy.to_numpy()[:-1]))]
        assert v["probe accuracy"] == r.tables["smollm2_probe"].accuracy.iloc[r.k] and v["either member right"] == r.either
        assert v["cascade escalated"] == r.cev.escalated and v["early exit speedup"] == r.ee.speedup
    assert s.max_escalated == max(r.cev.escalated for r in results.values())
    tables = S.classifier_tables(results)
    assert set(tables["peaks"].task) == set(results) and len(tables["comparisons"]) == sum(
        len(r.comparisons.frame) for r in results.values())


def test_classifier_summary_reproduces_the_printed_numbers(classifier):
    _, s = classifier
    md = norm(s.markdown())
    for said in ("zero-shot through the lens is at most 0.537 before the last layer (majority class 0.520) and 0.640 at "
                 "it (15.66 GFLOPs); through the tuned exits, before the last layer, it peaks at 0.565 at L23 (a layer "
                 "picked on test; cal's best is L30, against 0.640 at the last layer)",
                 "The probe at L17 (best on cal) reaches 0.795 on test at 8.88 GFLOPs, against MiniLM-L6's 0.897 at "
                 "0.53 GFLOPs: -10.2 points [-14.2, -6.2]",
                 "0.730 [0.685, 0.775] at 2.95x, 4.2 points below the last exit where the rule allowed 1 on cal",
                 "escalates a share of 0.003 of the examples: 0.897 [0.865, 0.927] at 0.56 GFLOPs, +0.0 points "
                 "[+0.0, +0.0] against MiniLM-L6 alone; even its most accurate threshold on test itself reaches only "
                 "0.897 (either member right: 0.938)",
                 "it peaks at 0.562 at L23 (also the best layer on cal, against 0.450 at the last layer)",
                 "0.825 [0.785, 0.858] at 1.67x, 0.8 points below", "(either member right: 0.953)",
                 "escalates at most 0.003 of the examples", "(../docs/results/cal-shift.md)"):
        assert said in md, said
    assert (ROOT / "docs" / "results" / "cal-shift.md").exists()  # the page the conclusion links to


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_runtime_summary_equals_a_loop_on_any_records(data):
    n = data.draw(st.integers(1, 8))
    unit = st.floats(0, 1)
    rows = [{"cache": f"c{i}", "family": data.draw(st.sampled_from(S.FAMILIES)), "design": "d",
             "threshold": data.draw(st.sampled_from([np.inf, 0.5, 0.9])), "offline agreement": data.draw(unit),
             "real agreement": data.draw(unit), "identical outputs": 0.5, "quality": "chrf", "real quality": 1.0,
             "full model quality": 1.0, "real speed-up": data.draw(st.floats(0.1, 3)),
             "offline speed-up": data.draw(st.floats(0.1, 3))} for i in range(n)]
    methods = data.draw(st.lists(st.sampled_from(["calm", "self_speculative", "hf_self_speculative"]), max_size=6))
    runs = [{"file": "bench_llm_x.json", "device": "cpu", "batch": data.draw(st.sampled_from([1, 8])), "method": m,
             "operating point": f"p{i}", "predicted (FLOPs)": data.draw(st.floats(0.1, 3)),
             "measured": data.draw(st.floats(0.1, 3)), "measured min": 0.1, "measured max": 3.0,
             "equal to greedy": data.draw(st.sampled_from([0.0, 1.0]))} for i, m in enumerate(methods)]
    for r in runs:
        r["measured / predicted"] = r["measured"] / r["predicted (FLOPs)"]
    s = S.runtime_summary(None, llm_results.Records(pd.DataFrame(rows), "x/calm.json", "t"),
                          llm_results.Records(pd.DataFrame(runs), "x", "t"))
    moved = [r for r in rows if r["threshold"] != np.inf]
    if not moved:
        assert s.calm_gap is None
    else:
        gaps = [r["offline agreement"] - r["real agreement"] for r in moved]
        assert s.calm_gap["gap"] == (min(gaps), max(gaps)) and s.calm_gap["points"] == len(moved)
        assert s.calm_gap["largest"]["cache"] == moved[gaps.index(max(gaps))]["cache"]
        assert s.calm_gap["file"] == "calm.json"
    if not runs:
        assert s.speed is None and s.peer is None and "no runtime benchmark results" in s.markdown()
        return
    equal = {}
    for r in runs:
        e, k = equal.get(r["method"], (0, 0))
        equal[r["method"]] = (e + int(r["equal to greedy"] == 1), k + 1)
    assert s.speed["equal to greedy"] == equal and s.speed["runs"] == len(runs)
    assert s.speed["fastest"]["measured"] == max(r["measured"] for r in runs)
    hf = [r for r in runs if r["method"] == "hf_self_speculative"]
    assert (s.peer is None) == (not hf)
    if hf:
        mine = [r for r in runs if r["method"] == "self_speculative" and r["batch"] == 1]
        assert [x[0] for x in s.peer["this decoder"]] == [r["operating point"] for r in mine]
    s.markdown()
