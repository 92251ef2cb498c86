"""Predicted against measured wall-clock speed-ups: the latency profile (``toolkit profile``) proven on real runs.

In one run: profiles the models on this machine (or reads ``--profile``), then for each (policy, batch size) case
runs the real runtime and its baseline interleaved ``--repeats`` times (both see the same machine state; medians),
and prints, side by side, the speed-up predicted from the profile (:mod:`toolkit.analysis.cost.latency`, on the offline
prediction of what the policy does: exits from the full model's logits, CALM exits and self-speculative acceptance
along the full model's greedy trajectory) and the measured one, their relative error, the FLOPs-predicted speed-up,
absolute predicted and measured times and the load average; then the median relative error, the worst case and the
rank (Spearman) correlation of the cases' speed-ups.

Cases: encoder early exit (MiniLM-L6 with an exit after every layer; batch 1 and 32; baseline: the whole model),
cascades (MiniLM-L6 truncated to 2 layers, then MiniLM-L6; baseline: the last member alone), CALM (SmolLM2-135M,
logit-lens exits; batch 1 and 8) and self-speculative decoding (several (k, d) pairs; baseline: greedy decoding
with the same layer stepping). The encoders' exit heads are trained ones when ``runs/sst2/minilm6_me/final`` exists,
otherwise new (untrained) heads: time does not depend on head weights, only on where examples exit, which the
thresholds set here (chosen on the offline FLOPs speed-up, like benchmarks/bench_runtime.py).

Run (CPU, this machine):
    PYTHONPATH=. python benchmarks/bench_latency.py --threads 1 --out benchmarks/bench_latency.json
Table for RESULTS.md:  python benchmarks/bench_latency.py --table benchmarks/bench_latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_llm_runtime import batches, run_batched  # noqa: E402
from llm_setup import calm_offline, calm_speedup, instruction_prompts, spec_predicted, write_rows_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MINILM, SMOLLM2 = "all-MiniLM-L6-v2", "SmolLM2-135M-Instruct"


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def interleaved(baseline, method, repeats):
    """Median seconds of ``baseline()`` and ``method()`` (each returns seconds), alternated ``repeats`` times."""
    b, m = [], []
    for _ in range(repeats):
        b.append(baseline())
        m.append(method())
    return statistics.median(b), statistics.median(m), b, m


# ---------------------------------------------------------------------------------------------------- models

def encoders(device):
    """(name, model, tokenizer, trained heads?) for the early-exit model and the cascade's first member."""
    from transformers import AutoTokenizer

    from toolkit.nn.encoder.models import MultiExitModel, load_model, resolve_model

    folder = resolve_model(MINILM)
    tok = AutoTokenizer.from_pretrained(folder)
    trained = REPO / "runs/sst2/minilm6_me/final"
    if trained.exists():
        l6, heads = load_model(trained), "trained (runs/sst2/minilm6_me/final)"
    else:
        l6, heads = MultiExitModel.from_backbone(folder, 2), "new, untrained (no trained checkpoint here)"
    l2 = MultiExitModel.from_backbone(folder, 2, num_hidden_layers=2)
    return {MINILM: (l6.to(device).eval(), tok), f"{MINILM}@2": (l2.to(device).eval(), tok)}, heads


def smollm2(device):
    from bench_llm_runtime import load_model

    model, tok, origin = load_model(None, device, "float32")
    return model, tok, origin


# ---------------------------------------------------------------------------------------------------- encoders

def pick_thresholds(conf, cost, reference, targets):
    """Global thresholds whose offline FLOPs speed-up (``reference / mean cost``) is nearest each target."""
    from toolkit.analysis.engine.staged import exit_stage
    from toolkit.nn.encoder.runtime import midpoint_threshold

    cands = np.unique(np.quantile(conf[:, :-1], np.linspace(0, 1, 201)))
    stages = exit_stage(conf, cands[:, None])  # [T, N]
    speed = reference / cost[np.arange(conf.shape[0])[None, :], stages].mean(1)
    return [midpoint_threshold(conf[:, :-1], float(cands[np.abs(speed - t).argmin()])) for t in targets]


def encoder_cases(models, texts, prof, batch_sizes, repeats, targets, cascade_targets, out):
    import torch

    from toolkit.analysis.cost import latency as lat
    from toolkit.analysis.cost.encoder import exit_flops
    from toolkit.analysis.engine.staged import exit_stage
    from toolkit.analysis.scores.classification import confidence
    from toolkit.nn.common.inference import sorted_encoding
    from toolkit.nn.encoder.runtime import CascadeRunner, EarlyExitRunner

    (l6, tok), (l2, _) = models[MINILM], models[f"{MINILM}@2"]
    enc, _ = sorted_encoding(tok, texts, None, 128)
    n = np.array([len(x) for x in enc["input_ids"]])
    with torch.inference_mode():  # every exit's logits once (the offline side)
        import pandas as pd

        from toolkit.nn.common.inference import predict_logits

        frame = pd.DataFrame({"text_a": texts, "text_b": [None] * len(texts)})
        lg6, _ = predict_logits(l6, tok, frame, 32, 128, "cpu")
        lg2, _ = predict_logits(l2, tok, frame, 32, 128, "cpu")
    p6, p2 = prof.model(MINILM), prof.model(f"{MINILM}@2")
    exits6 = np.asarray(l6.exit_layers)
    # early exit
    conf = np.stack([confidence(lg6[:, e], score="max_prob", temperature=1.0) for e in range(lg6.shape[1])], 1)
    flops = exit_flops(n, l6.config.backbone, list(exits6), 2)
    for thr in pick_thresholds(conf, flops, flops[:, -1].mean(), targets):
        stage = exit_stage(conf, thr)
        for bs in batch_sizes:
            if out.over(f"early_exit {thr} b{bs}"):
                continue
            runner = EarlyExitRunner(l6, tok, thr)
            res = runner.run(texts, batch_size=bs)
            full_s, pol_s, fa, pa = interleaved(lambda: runner.run_full(texts, batch_size=bs),
                                                lambda: runner.run(texts, batch_size=bs).seconds, repeats)
            pred_full = lat.encoder_full_ms(p6, n, batch_size=bs)
            pred_pol = lat.encoder_run_ms(p6, n, exits6[stage], batch_size=bs)
            out.add(dict(method="early_exit", case=f"EE MiniLM-L6 thr={thr:.5f}", batch_size=bs,
                         operating_point=f"threshold {thr:.5f}", mean_exit_layer=float(exits6[stage].mean()),
                         flops_speedup=float(flops[:, -1].mean() / flops[np.arange(len(n)), stage].mean()),
                         exits_equal_offline=float((res.exit_stage == stage).mean()),
                         predicted_baseline_ms=pred_full, predicted_method_ms=pred_pol,
                         measured_baseline_ms=1e3 * full_s, measured_method_ms=1e3 * pol_s,
                         baseline_s_all=fa, method_s_all=pa))
    # cascade L2 -> L6 (last exits of each); baseline: L6 alone
    conf2 = np.stack([confidence(lg2[:, -1], score="max_prob", temperature=1.0), confidence(lg6[:, -1], score="max_prob", temperature=1.0)], 1)
    f2 = exit_flops(n, l2.config.backbone, list(l2.exit_layers), 2)[:, -1]
    cost = np.stack([f2, f2 + flops[:, -1]], 1)
    for thr in pick_thresholds(conf2, cost, flops[:, -1].mean(), cascade_targets):
        stage = exit_stage(conf2, thr)
        for bs in batch_sizes:
            if out.over(f"cascade {thr} b{bs}"):
                continue
            runner = CascadeRunner([l2, l6], [tok, tok], [thr])
            res = runner.run(texts, batch_size=bs)
            full_s, pol_s, fa, pa = interleaved(lambda: runner.run_full(texts, batch_size=bs),
                                                lambda: runner.run(texts, batch_size=bs).seconds, repeats)
            out.add(dict(method="cascade", case=f"cascade L2->L6 thr={thr:.5f}", batch_size=bs,
                         operating_point=f"threshold {thr:.5f}", escalated=float((stage > 0).mean()),
                         flops_speedup=float(flops[:, -1].mean() / cost[np.arange(len(n)), stage].mean()),
                         exits_equal_offline=float((res.exit_stage == stage).mean()),
                         predicted_baseline_ms=lat.encoder_full_ms(p6, n, batch_size=bs),
                         predicted_method_ms=lat.cascade_run_ms([p2, p6], n, stage, batch_size=bs),
                         measured_baseline_ms=1e3 * full_s, measured_method_ms=1e3 * pol_s,
                         baseline_s_all=fa, method_s_all=pa))


# ---------------------------------------------------------------------------------------------------- decoders

def llm_cases(model, tok, prof, a, out):
    from toolkit.analysis.cost import latency as lat
    from toolkit.analysis.cost.causal import CausalLMDims
    from toolkit.nn.causal.decode import CalmDecoder, SelfSpeculativeDecoder, encode_prompts, greedy_decode
    from toolkit.nn.causal.reference import teacher_forced_exits

    pm = prof.model(SMOLLM2)
    dims = CausalLMDims.from_config(model.config.to_dict())
    _, texts, _ = instruction_prompts("agnews", a.prompts, a.data_dir)
    prompts = encode_prompts(tok, texts)
    M = a.max_new_tokens
    ref = [greedy_decode(model, [p], M).tokens[0] for p in prompts]
    trajs = []
    for p, t in zip(prompts, ref):
        top1, conf = teacher_forced_exits(model, p, t, scores=("max_prob",))
        trajs.append(dict(n_prompt=len(p), tokens=t, top1=top1, conf_max_prob=conf["max_prob"]))
    out.meta.update(llm_prompts=len(prompts), prompt_tokens=[len(p) for p in prompts], max_new_tokens=M,
                    generated_tokens=int(sum(len(t) for t in ref)))
    greedy = SelfSpeculativeDecoder(model, 1, 0)
    cases = [("calm", c, bs) for c in a.calm for bs in a.llm_batch_sizes]
    cases += [("self_speculative", s, bs) for s in a.spec for bs in ([1, *a.llm_batch_sizes[1:]]
                                                                      if s in a.spec_batched else [1])]
    for method, op, bs in cases:
        if out.over(f"{method} {op} b{bs}"):
            continue
        groups = batches(prompts, bs)
        if method == "calm":
            layers, thr = op.split(":")
            checked = [int(x) for x in layers.split(",")]
            thr = float(thr)
            sim = calm_offline(trajs, checked, thr)
            dec = CalmDecoder(model, checked, thr)
            pred = sum(lat.calm_run_ms(pm, [sim[i][0] for i in g], checked, exit_pieces=dec.exit_pieces)
                       for g in groups)
            flops_speed = calm_speedup([t["n_prompt"] for t in trajs], [s[0] for s in sim], checked, dims)
            extra = dict(offline_mean_exit_layer=float(np.mean(np.concatenate([s[0] for s in sim]))))
        else:
            k, d = (int(x) for x in op.split(":"))
            flops_speed, blocks = spec_predicted(trajs, k, d, M, dims)
            dec = SelfSpeculativeDecoder(model, k, d)
            pred = sum(lat.self_speculative_run_ms(pm, [blocks[i] for i in g], k, d, M, exit_pieces=dec.exit_pieces)
                       for g in groups)
            extra = dict(offline_mean_accepted=float(np.mean(np.concatenate(blocks))))
        pred_ref = sum(lat.greedy_run_ms(pm, [len(ref[i]) for i in g]) for g in groups)
        toks = {}

        def run_method():
            t, s, _, x = run_batched(dec, prompts, groups, M)
            toks["m"], toks["x"] = t, x
            return s

        ref_s, m_s, ra, ma = interleaved(lambda: run_batched(greedy, prompts, groups, M)[1], run_method,
                                         a.llm_repeats or a.repeats)
        n_m = sum(len(x) for x in toks["m"])
        n_ref = sum(len(x) for x in ref)
        scale = n_m / n_ref  # per generated token: a CALM output can be longer or shorter than the full model's
        if method == "calm":  # the latency model on the exits the real decode took (its own error, apart from the
            real = sum(lat.calm_run_ms(pm, [toks["x"][i] for i in g], checked, exit_pieces=dec.exit_pieces)
                       for g in groups)  # exit estimate's)
            extra.update(realized_predicted_speedup=float(pred_ref / real * scale),
                         realized_flops_speedup=float(calm_speedup([t["n_prompt"] for t in trajs], toks["x"],
                                                                   checked, dims)),
                         real_mean_exit_layer=float(np.mean(np.concatenate(toks["x"]))))
        out.add(dict(method=method, case=f"{method} {op}", batch_size=bs, operating_point=op, **extra,
                     flops_speedup=float(flops_speed),
                     tokens_equal_greedy=float(np.mean([np.array_equal(x, y) for x, y in zip(toks["m"], ref)])),
                     predicted_baseline_ms=pred_ref, predicted_method_ms=pred,
                     measured_baseline_ms=1e3 * ref_s, measured_method_ms=1e3 * m_s / scale,
                     baseline_s_all=ra, method_s_all=ma, method_tokens=n_m, reference_tokens=n_ref))


# ---------------------------------------------------------------------------------------------------- output

class Writer:
    def __init__(self, path: Path, meta: dict, deadline: float | None = None):
        self.path, self.meta, self.rows, self.deadline = path, meta, [], deadline

    def over(self, case: str) -> bool:
        """Past the time budget: the case is listed as skipped."""
        if self.deadline is None or time.perf_counter() < self.deadline:
            return False
        self.meta.setdefault("skipped_over_time_budget", []).append(case)
        return True

    def add(self, row: dict) -> None:
        row.update(predicted_speedup=row["predicted_baseline_ms"] / row["predicted_method_ms"],
                   measured_speedup=row["measured_baseline_ms"] / row["measured_method_ms"], loadavg=loadavg())
        row["relative_error"] = abs(row["predicted_speedup"] - row["measured_speedup"]) / row["measured_speedup"]
        self.rows.append(row)
        print(f"{row['case']:<34} batch {row['batch_size']:>3}  predicted {row['predicted_speedup']:5.2f}x  "
              f"measured {row['measured_speedup']:5.2f}x  error {100 * row['relative_error']:5.1f}%  FLOPs "
              f"{row['flops_speedup']:5.2f}x  ms pred/meas {row['predicted_method_ms']:8.0f}/"
              f"{row['measured_method_ms']:8.0f} (base {row['predicted_baseline_ms']:8.0f}/"
              f"{row['measured_baseline_ms']:8.0f})  load {row['loadavg'][0]}", flush=True)
        self.flush()

    def flush(self) -> None:
        write_rows_json(self.path, self.meta, self.rows)


def summary(rows) -> dict:
    from toolkit.analysis.cost.latency import speedup_agreement

    ag = speedup_agreement([f"{r['case']} b{r['batch_size']}" for r in rows], [r["predicted_speedup"] for r in rows],
                           [r["measured_speedup"] for r in rows])
    flops = speedup_agreement([f"{r['case']} b{r['batch_size']}" for r in rows], [r["flops_speedup"] for r in rows],
                              [r["measured_speedup"] for r in rows])
    return {**ag.to_dict(), "flops_median_relative_error": flops.median_relative_error,
            "flops_spearman": flops.spearman}


def markdown_table(path) -> str:
    d = json.loads(Path(path).read_text())
    lines = ["| case | batch | predicted (profile) | measured | error | FLOPs-predicted | predicted ms | measured ms "
             "| load |", "|---|---|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        lines.append(f"| {r['case']} | {r['batch_size']} | {r['predicted_speedup']:.2f}x | "
                     f"{r['measured_speedup']:.2f}x | {100 * r['relative_error']:.1f}% | {r['flops_speedup']:.2f}x | "
                     f"{r['predicted_method_ms']:.0f} (base {r['predicted_baseline_ms']:.0f}) | "
                     f"{r['measured_method_ms']:.0f} (base {r['measured_baseline_ms']:.0f}) | {r['loadavg'][0]} |")
    s = d["meta"].get("summary")
    if s:
        lines.append(f"\n{s['cases']} cases: median relative error of the predicted speed-up "
                     f"{100 * s['median_relative_error']:.1f}% (FLOPs: {100 * s['flops_median_relative_error']:.1f}%), "
                     f"worst {s['worst_case']} ({100 * s['worst_relative_error']:.1f}%), Spearman "
                     f"{s['spearman']:.3f} (FLOPs: {s['flops_spearman']:.3f}).")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="results JSON")
    ap.add_argument("--profile", help="read this latency profile instead of profiling here (same machine and "
                                      "threads!)")
    ap.add_argument("--profile-out", default="runs/latency_profile.json", help="where this run's profile is written")
    ap.add_argument("--quick-profile", action="store_true", help="profile on the --quick grid (a smoke test)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--examples", type=int, default=200, help="SST-2 test sentences for the encoder cases")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32], help="encoder cases")
    ap.add_argument("--targets", type=float, nargs="+", default=[1.5, 2.0, 3.0], help="early-exit FLOPs speed-ups")
    ap.add_argument("--cascade-targets", type=float, nargs="+", default=[1.4, 2.0])
    ap.add_argument("--llm-repeats", type=int, help="repeats of the LLM cases (default --repeats)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--llm-batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--calm", nargs="*", default=["8:0.77", "6,10,14,18:0.67"])
    ap.add_argument("--spec", nargs="*", default=["2:1", "8:2", "22:3", "28:2", "28:6"])
    ap.add_argument("--spec-batched", nargs="*", default=["22:3", "28:2"], help="pairs also run at the LLM batch sizes")
    ap.add_argument("--what", nargs="+", default=["encoder", "llm"])
    ap.add_argument("--time-budget", type=float, help="seconds: no case starts after it (the rest are listed as "
                                                      "skipped)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--table", metavar="RESULTS_JSON")
    a = ap.parse_args(argv)
    if a.table:
        print(markdown_table(a.table))
        return 0
    if not a.out:
        ap.error("--out is required")
    import torch

    from toolkit.analysis.cost.latency import load_profile
    from toolkit.data.tasks import load_split
    from toolkit.nn.common.profile import machine_info, profile_models

    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    enc_models, heads = encoders("cpu") if "encoder" in a.what else ({}, None)
    lm, tok, origin = smollm2("cpu") if "llm" in a.what else (None, None, None)
    meta = dict(**machine_info(), threads=torch.get_num_threads(), repeats=a.repeats,
                llm_repeats=a.llm_repeats or a.repeats, encoder_heads=heads,
                llm=origin, loadavg_start=loadavg(), started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if a.profile:
        prof = load_profile(a.profile)
        meta["profile"] = a.profile
    else:
        models = {**enc_models, **({SMOLLM2: (lm, tok)} if lm is not None else {})}
        p = profile_models(models, quick=a.quick_profile, progress=lambda s: print(s, flush=True))
        Path(a.profile_out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.profile_out).write_text(json.dumps(p, indent=1))
        prof = load_profile(a.profile_out)
        meta.update(profile=a.profile_out, profile_seconds=p["seconds"])
    if prof.meta.get("threads") != torch.get_num_threads():
        print(f"warning: the profile was measured with {prof.meta.get('threads')} threads, this run uses "
              f"{torch.get_num_threads()}", flush=True)
    out = Writer(Path(a.out), meta, None if a.time_budget is None else t0 + a.time_budget)
    if "encoder" in a.what:
        texts = list(load_split("sst2", "test").frame["text_a"])[: a.examples]
        meta.update(encoder_examples=len(texts), encoder_data="SST-2 test split (toolkit carving), first N")
        encoder_cases(enc_models, texts, prof, a.batch_sizes, a.repeats, a.targets, a.cascade_targets, out)
    if "llm" in a.what:
        llm_cases(lm, tok, prof, a, out)
    meta.update(loadavg_end=loadavg(), seconds=time.perf_counter() - t0, summary=summary(out.rows))
    out.flush()
    s = meta["summary"]
    print(f"\n{s['cases']} cases: median relative error {100 * s['median_relative_error']:.1f}% (FLOPs-predicted: "
          f"{100 * s['flops_median_relative_error']:.1f}%), worst {s['worst_case']} "
          f"({100 * s['worst_relative_error']:.1f}%), Spearman {s['spearman']:.3f} (FLOPs: {s['flops_spearman']:.3f}); "
          f"load {meta['loadavg_start']} -> {meta['loadavg_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
