"""Fidelity of real early-exit decoding on SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to float32), CPU.

Prompts: the first 60 examples of AG News (toolkit's test split: "write a short headline" for the description;
reference = the title) and the first 40 of SST-2 (GLUE dev: "say whether this review is positive or negative, and why"), each
as a user turn of the chat template. Greedy decoding, max_new_tokens 48.

Stages (each resumable; results under runs/llm_fidelity/):
  trajectories  the full model's greedy output per prompt (plain loop, batch 1; Hugging Face generate on a subset as
                a cross-check) and the teacher-forced per-layer logit-lens top-1 and confidences along it
  spec          self-speculative decoding for several (k, d) at batch 1 and batch 8: output equal to the full
                model's token for token? per-block accepted counts equal to the offline prediction?
  calm          CALM-style decoding at operating points chosen offline on the trajectories (predicted FLOPs
                speed-up targets): offline teacher-forced estimate vs the real decode
  summary       tables (also written to benchmarks/llm_fidelity.json)

Run: PYTHONPATH=. python benchmarks/llm_fidelity.py all [--n-agnews 60 --n-sst2 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_setup import (  # noqa: E402
    REPO,
    calm_offline,
    calm_speedup,
    instruction_prompts,
    smollm2_folder,
    spec_predicted,
)

OUT = REPO / "runs" / "llm_fidelity"
SCORES = ("max_prob", "margin", "entropy")
SPEC_CONFIGS = {8: [(8, 2), (16, 3), (22, 4), (26, 2), (28, 6)], 1: [(22, 4), (28, 6)]}  # batch size -> (k, d)
CALM_TARGETS = (0.9, 1.0, 1.1, 1.25)  # predicted FLOPs speed-ups to pick CALM operating points for


def load(threads: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    folder = smollm2_folder()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder), folder


def prompt_set(tok, n_agnews: int, n_sst2: int):
    from toolkit.nn.causal.decode import encode_prompts

    ids, texts, refs = [], [], []
    for task, n in (("agnews", n_agnews), ("sst2", n_sst2)):
        i, t, r = instruction_prompts(task, n)
        ids += i
        texts += t
        refs += r if r is not None else [None] * len(i)
    return ids, encode_prompts(tok, texts), refs


def save_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def traj_path(i: int) -> Path:
    return OUT / "traj" / f"{i:04d}.npz"


def stage_trajectories(model, prompts, max_new: int, n_hf: int) -> None:
    import torch

    from toolkit.nn.causal.decode import greedy_decode
    from toolkit.nn.causal.reference import teacher_forced_exits

    (OUT / "traj").mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(prompts):
        if traj_path(i).exists():
            continue
        t0 = time.perf_counter()
        tokens = greedy_decode(model, [p], max_new).tokens[0]
        hf_equal = -1
        if i % max(1, len(prompts) // n_hf) == 0:
            with torch.inference_mode():
                hf = model.generate(torch.tensor([p]), max_new_tokens=max_new, do_sample=False)[0, len(p):].numpy()
            hf_equal = int(np.array_equal(hf, tokens))
        top1, conf = teacher_forced_exits(model, p, tokens, scores=SCORES)
        with torch.inference_mode():  # the full model's top-1 minus top-2 logit at each position (tie margin)
            ids = torch.tensor([list(p) + tokens[:-1].tolist()])
            z = model(ids).logits[0, len(p) - 1:].float()
            gap = (z.topk(2, -1).values[:, 0] - z.topk(2, -1).values[:, 1]).numpy()
        tmp = traj_path(i).with_suffix(".tmp.npz")
        np.savez(tmp, tokens=tokens, top1=top1.astype(np.int32), gap=gap, n_prompt=len(p), hf_equal=hf_equal,
                 **{f"conf_{s}": c.astype(np.float32) for s, c in conf.items()})
        os.replace(tmp, traj_path(i))
        print(f"traj {i}: {len(tokens)} tokens, {time.perf_counter() - t0:.1f} s, hf_equal={hf_equal}", flush=True)


def trajectories(n: int) -> list[dict]:
    return [dict(np.load(traj_path(i))) for i in range(n)]


def batches(prompts, size: int):
    """Rows grouped by prompt length (as a server would), in batches of ``size``."""
    order = np.argsort([len(p) for p in prompts], kind="stable")
    return [order[s:s + size] for s in range(0, len(order), size)]


def stage_spec(model, prompts, trajs, max_new: int, configs) -> None:
    from toolkit.analysis.cost.causal import CausalLMDims
    from toolkit.nn.causal.decode import SelfSpeculativeDecoder

    dims = CausalLMDims.from_config(model.config.to_dict())
    for bs, pairs in configs.items():
        for k, d in pairs:
            path = OUT / f"spec_k{k}_d{d}_b{bs}.json"
            if path.exists():
                continue
            predicted, blocks = spec_predicted(trajs, k, d, max_new, dims)
            dec = SelfSpeculativeDecoder(model, k, d)
            rows, t0 = [None] * len(prompts), time.perf_counter()
            for idx in batches(prompts, bs):
                res = dec.generate([prompts[i] for i in idx], max_new)
                for j, i in enumerate(idx):
                    tr, want = trajs[i], blocks[i]
                    got, ref = res.tokens[j], tr["tokens"]
                    n = min(len(got), len(ref))
                    diff = np.flatnonzero(got[:n] != ref[:n])
                    first = int(diff[0]) if len(diff) else (-1 if len(got) == len(ref) else n)
                    rows[i] = dict(equal=bool(np.array_equal(got, ref)), first_mismatch=first,
                                   gap_at_mismatch=float(tr["gap"][first]) if 0 <= first < len(ref) else None,
                                   accepted_equal=bool(np.array_equal(res.accepted[j], want)),
                                   accepted=res.accepted[j].tolist(), offline=want.tolist())
            save_json(path, dict(k=k, d=d, batch_size=bs, seconds=time.perf_counter() - t0,
                                 predicted_flops_speedup=predicted, rows=rows))
            eq = np.mean([r["equal"] for r in rows])
            acc = np.mean([r["accepted_equal"] for r in rows])
            print(f"spec k={k} d={d} batch={bs}: outputs equal {eq:.3f}, acceptance equal {acc:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)


CALM_CHECKED = [[8], [12], [16], [20], [8, 16], [12, 20], [8, 14, 20], [6, 10, 14, 18]]


def choose_calm(trajs, dims, targets=CALM_TARGETS, score: str = "max_prob"):
    """For each target predicted speed-up, the (checked layers, global threshold) with the highest offline token
    agreement among those predicted at least that fast (thresholds: 200 quantiles of the checked confidences)."""
    from toolkit.nn.encoder.runtime import midpoint_threshold

    n_prompt = [int(t["n_prompt"]) for t in trajs]
    cands = []
    for checked in CALM_CHECKED:
        conf = np.concatenate([t[f"conf_{score}"][:, np.asarray(checked) - 1] for t in trajs])
        for q in np.linspace(0.5, 0.999, 200):
            thr = midpoint_threshold(conf, float(np.quantile(conf, q)))
            sim = calm_offline(trajs, checked, thr, score)
            cands.append((calm_speedup(n_prompt, [s[0] for s in sim], checked, dims),
                          float(np.concatenate([s[1] for s in sim]).mean()), checked, thr))
    chosen = []
    for tgt in targets:
        ok = [c for c in cands if c[0] >= tgt]
        if ok:
            chosen.append(max(ok, key=lambda c: (c[1], -c[0])))
    return chosen


def first_divergence(got, ref) -> int:
    n = min(len(got), len(ref))
    diff = np.flatnonzero(got[:n] != ref[:n])
    return int(diff[0]) if len(diff) else (-1 if len(got) == len(ref) else n)


def stage_calm(model, tok, prompts, refs, trajs, max_new: int, batch_size: int) -> None:
    from toolkit.analysis.cost.causal import CausalLMDims
    from toolkit.analysis.metrics.generation import chrf_stats, corpus_chrf
    from toolkit.nn.causal.decode import CalmDecoder

    dims = CausalLMDims.from_config(model.config.to_dict())
    n_prompt = [int(t["n_prompt"]) for t in trajs]
    has_ref = [i for i, r in enumerate(refs) if r is not None]
    full_text = [tok.decode(trajs[i]["tokens"], skip_special_tokens=True).strip() for i in has_ref]
    full_chrf = float(corpus_chrf(chrf_stats(full_text, [refs[i] for i in has_ref]).sum(0)))
    for n, (pred, agree, checked, thr) in enumerate(choose_calm(trajs, dims)):
        path = OUT / f"calm_{n}.json"
        if path.exists():
            continue
        t0 = time.perf_counter()
        dec = CalmDecoder(model, checked, thr, score="max_prob")
        tokens, exits = [None] * len(prompts), [None] * len(prompts)
        for idx in batches(prompts, batch_size):
            res = dec.generate([prompts[i] for i in idx], max_new)
            for j, i in enumerate(idx):
                tokens[i], exits[i] = res.tokens[j], res.exit_layers[j]
        sim = calm_offline(trajs, checked, thr)
        real = calm_speedup(n_prompt, exits, checked, dims)
        first_real = [first_divergence(tokens[i], trajs[i]["tokens"]) for i in range(len(prompts))]
        # offline prediction of the first divergence: the first teacher-forced exit whose token disagrees
        first_sim = [int(np.argmin(s[1])) if not s[1].all() else -1 for s in sim]
        pos_agree = [np.mean(tokens[i][:min(len(tokens[i]), len(trajs[i]["tokens"]))]
                             == trajs[i]["tokens"][:min(len(tokens[i]), len(trajs[i]["tokens"]))])
                     for i in range(len(prompts))]
        calm_text = [tok.decode(tokens[i], skip_special_tokens=True).strip() for i in has_ref]
        save_json(path, dict(
            checked_layers=checked, threshold=thr, score="max_prob", batch_size=batch_size,
            seconds=time.perf_counter() - t0,
            offline=dict(predicted_speedup=pred, token_agreement=agree,
                         mean_exit_layer=float(np.concatenate([s[0] for s in sim]).mean()),
                         first_divergence=first_sim),
            real=dict(flops_speedup=real, mean_exit_layer=float(np.concatenate(exits).mean()),
                      positionwise_agreement=float(np.mean(pos_agree)),
                      identical_outputs=float(np.mean([f == -1 for f in first_real])),
                      first_divergence=first_real,
                      exit_layers_until_divergence_equal=float(np.mean([
                          np.array_equal(exits[i][:f + 1 if f >= 0 else None], sim[i][0][:f + 1 if f >= 0 else None])
                          for i, f in enumerate(first_real)])),
                      chrf_full=full_chrf,
                      chrf=float(corpus_chrf(chrf_stats(calm_text, [refs[i] for i in has_ref]).sum(0))),
                      tokens=[t.tolist() for t in tokens], exit_layers=[e.tolist() for e in exits])))
        print(f"calm {checked} thr={thr:.4f}: predicted {pred:.2f}x agreement {agree:.3f} | real FLOPs "
              f"{real:.2f}x identical {np.mean([f == -1 for f in first_real]):.3f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)


def stage_summary(n: int) -> dict:
    trajs = trajectories(n)
    out = {"prompts": n, "tokens": int(sum(len(t["tokens"]) for t in trajs)),
           "hf_generate_equal": [int(t["hf_equal"]) for t in trajs if int(t["hf_equal"]) >= 0],
           "spec": [], "calm": []}
    for path in sorted(OUT.glob("spec_*.json")):
        r = json.loads(path.read_text())
        rows = r["rows"]
        out["spec"].append(dict(k=r["k"], d=r["d"], batch_size=r["batch_size"], prompts=len(rows),
                                predicted_flops_speedup=r["predicted_flops_speedup"],
                                outputs_equal=sum(x["equal"] for x in rows),
                                acceptance_equal=sum(x["accepted_equal"] for x in rows),
                                blocks=sum(len(x["accepted"]) for x in rows),
                                mean_accepted=float(np.mean(np.concatenate([x["accepted"] for x in rows]))),
                                mismatches=[(i, x["first_mismatch"], x["gap_at_mismatch"])
                                            for i, x in enumerate(rows) if not x["equal"]]))
    for path in sorted(OUT.glob("calm_*.json")):
        r = json.loads(path.read_text())
        o, re_ = r["offline"], r["real"]
        fr = np.asarray(re_["first_divergence"])
        fs = np.asarray(o["first_divergence"])
        out["calm"].append(dict(
            checked_layers=r["checked_layers"], threshold=r["threshold"],
            offline_predicted_speedup=o["predicted_speedup"], offline_token_agreement=o["token_agreement"],
            offline_mean_exit_layer=o["mean_exit_layer"], real_flops_speedup=re_["flops_speedup"],
            real_mean_exit_layer=re_["mean_exit_layer"], real_positionwise_agreement=re_["positionwise_agreement"],
            real_identical_outputs=re_["identical_outputs"],
            offline_identical_outputs=float(np.mean(fs == -1)),
            first_divergence_histogram=np.histogram(fr[fr >= 0], bins=[0, 1, 2, 4, 8, 16, 32, 49])[0].tolist(),
            first_divergence_predicted_exactly=float(np.mean(fr == fs)),
            first_divergence_earlier_than_predicted=float(np.mean((fr >= 0) & ((fs == -1) | (fr < fs)))),
            exit_layers_until_divergence_equal=re_["exit_layers_until_divergence_equal"],
            chrf_full=re_["chrf_full"], chrf_calm=re_["chrf"]))
    save_json(REPO / "benchmarks" / "llm_fidelity.json", out)
    print(json.dumps({k: v for k, v in out.items() if k != "hf_generate_equal"}, indent=1))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["trajectories", "spec", "calm", "summary", "all"])
    ap.add_argument("--n-agnews", type=int, default=60)
    ap.add_argument("--n-sst2", type=int, default=40)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hf-checks", type=int, default=20, help="prompts also decoded with HF generate")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    model, tok, _ = load(a.threads)
    ids, prompts, refs = prompt_set(tok, a.n_agnews, a.n_sst2)
    if a.stage in ("trajectories", "all"):
        stage_trajectories(model, prompts, a.max_new_tokens, a.hf_checks)
    if a.stage in ("spec", "calm", "all"):
        trajs = trajectories(len(prompts))
    if a.stage in ("spec", "all"):
        stage_spec(model, prompts, trajs, a.max_new_tokens, SPEC_CONFIGS)
    if a.stage in ("calm", "all"):
        stage_calm(model, tok, prompts, refs, trajs, a.max_new_tokens, 8)
    if a.stage in ("summary", "all"):
        stage_summary(len(prompts))


if __name__ == "__main__":
    main()
