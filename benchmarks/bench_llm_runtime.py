"""Real early-exit decoding of a causal LM: measured wall-clock speed-up against the FLOPs-predicted one.

For each batch size and each operating point (self-speculative (k, d); CALM (checked layers, thresholds)), decodes
the prompts greedily with the full model (plain loop, same layer stepping: the reference) and with the method,
interleaved, ``--repeats`` times, and reports the median decode time of each (prefill excluded: both prefill the
same prompt tokens), the measured speed-up (reference / method seconds per generated token) and the FLOPs-predicted one
(toolkit.analysis.cost.causal, from the offline prediction on the full model's own trajectory: self-speculative blocks
from the offline acceptance, CALM exits from teacher-forced confidences), with fidelity checks (self-speculative
output equal to greedy token for token; acceptance equal to the offline prediction). Also times Hugging Face
``generate`` (greedy) once per batch size for reference, and (``--hf-spec``) Hugging Face's own self-speculative
path (``generate(..., assistant_early_exit=k)``) at batch 1 against Hugging Face greedy ``generate``, its output
checked against greedy decoding too. Each configuration is independent (errors are recorded and
the run goes on); ``--time-budget`` stops starting new ones; rows are written after each configuration.

Prompts: AG News descriptions with a headline instruction (toolkit's test split, chat template). Needs the data
folder (``--data-dir``, default ../shared/data) but not the ``datasets`` package.

CPU here:  PYTHONPATH=. python benchmarks/bench_llm_runtime.py --threads 1 --out runs/bench_llm_cpu.json
GPU:       PYTHONPATH=. python benchmarks/bench_llm_runtime.py --device cuda --dtype bfloat16 --batch-sizes 1 8 32 \
               --prompts 64 --max-new-tokens 64 --time-budget 420 --out $OUT/bench_llm_gpu.json
Profile:   PYTHONPATH=. python benchmarks/bench_llm_runtime.py --profile --out runs/profile_llm.txt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_setup import (  # noqa: E402
    GGUF_NAME,
    calm_offline,
    calm_speedup,
    instruction_prompts,
    smollm2_folder,
    spec_predicted,
    write_rows_json,
)

DEFAULT_SPEC = ["8:2", "22:3", "28:2", "28:6"]
DEFAULT_CALM = ["8:0.77", "8:0.68", "6,10,14,18:0.67"]


def load_model(spec: str | None, device: str, dtype: str):
    """``spec``: a model folder, a .gguf file (dequantized here; needs the gguf package), or None for SmolLM2."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dt = getattr(torch, dtype)
    if spec and spec.endswith(".gguf"):
        p = Path(spec)
        model = AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, dtype=dt)
        tok = AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
        origin = f"{p.name} dequantized"
    else:
        folder = spec or smollm2_folder()
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dt)
        tok = AutoTokenizer.from_pretrained(folder)
        origin = f"{folder}" + ("" if spec else f" ({GGUF_NAME} dequantized to float32)")
    model.config._attn_implementation = "sdpa"
    return model.to(device).eval(), tok, origin


def parse_spec(s: str):
    k, d = s.split(":")
    return int(k), int(d)


def parse_calm(s: str):
    layers, thr = s.split(":")
    t = [float(x) for x in thr.split(",")]
    return [int(x) for x in layers.split(",")], (t[0] if len(t) == 1 else t)


def batches(prompts, size: int):
    order = np.argsort([len(p) for p in prompts], kind="stable")
    return [order[s:s + size].tolist() for s in range(0, len(order), size)]


def run_batched(decoder, prompts, groups, max_new):
    """Decode all groups; (tokens by prompt, decode seconds, prefill seconds, per-row extra)."""
    tokens, extra = [None] * len(prompts), [None] * len(prompts)
    dec_s = pre_s = 0.0
    for idx in groups:
        res = decoder.generate([prompts[i] for i in idx], max_new)
        dec_s += res.seconds
        pre_s += res.prefill_seconds
        for j, i in enumerate(idx):
            tokens[i] = res.tokens[j]
            extra[i] = res.accepted[j] if hasattr(res, "accepted") else res.exit_layers[j]
    return tokens, dec_s, pre_s, extra


def hf_generate_seconds(model, tok, prompts, groups, max_new, eos) -> float:
    import torch

    pad = eos if eos is not None else 0
    dev = next(model.parameters()).device
    t0 = time.perf_counter()
    for idx in groups:
        rows = [prompts[i] for i in idx]
        w = max(len(r) for r in rows)
        ids = torch.tensor([[pad] * (w - len(r)) + r for r in rows], device=dev)
        mask = torch.tensor([[0] * (w - len(r)) + [1] * len(r) for r in rows], device=dev)
        with torch.inference_mode():
            model.generate(ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False, pad_token_id=pad)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


class HFDecoder:
    """Hugging Face ``generate`` behind the decoders' interface, one prompt at a time (assisted generation takes
    batch 1): greedy, or (``k``, ``d``) its own self-speculative path, ``assistant_early_exit=k`` (the first k
    layers, then the model's final norm and LM head: the logit lens) with ``d`` draft tokens per block. transformers
    5.x reads the draft length, its schedule and the confidence threshold from the model's ``generation_config``:
    set there for the call (constant schedule, threshold 0, so every block drafts ``d``) and restored after.
    ``seconds`` include HF's prefill (it does not report it apart): compare with :class:`HFDecoder` greedy."""

    def __init__(self, model, k: int | None = None, d: int | None = None, eos=None):
        self.model, self.k, self.d, self.eos = model, k, d, eos

    def generate(self, prompts, max_new):
        import types

        import torch

        if len(prompts) != 1:
            raise ValueError("Hugging Face assisted generation decodes one prompt at a time: use batch size 1")
        gc = self.model.generation_config
        saved = {k: getattr(gc, k, None) for k in ("num_assistant_tokens", "num_assistant_tokens_schedule",
                                                   "assistant_confidence_threshold")}
        kw = {}
        if self.k is not None:
            gc.num_assistant_tokens, gc.num_assistant_tokens_schedule = self.d, "constant"
            gc.assistant_confidence_threshold = 0.0
            kw["assistant_early_exit"] = self.k
        dev = next(self.model.parameters()).device
        ids = torch.tensor([prompts[0]], device=dev)
        try:
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                                          do_sample=False, pad_token_id=self.eos, **kw)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            secs = time.perf_counter() - t0
        finally:
            for k, v in saved.items():
                setattr(gc, k, v)
        toks = out[0, ids.shape[1]:].cpu().numpy()
        if self.eos is not None and (toks == self.eos).any():  # generate pads after EOS; cut as greedy_decode does
            toks = toks[:int(np.argmax(toks == self.eos)) + 1]
        return types.SimpleNamespace(tokens=[toks], seconds=secs, prefill_seconds=0.0,
                                     accepted=[np.zeros(0, dtype=np.int64)])


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class Writer:
    def __init__(self, path: Path, meta: dict):
        self.path, self.meta, self.rows = path, meta, []

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.flush()

    def flush(self) -> None:
        import pandas as pd

        write_rows_json(self.path, self.meta, self.rows)
        flat = [{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in self.rows]
        csv = self.path.with_suffix(".csv")
        pd.DataFrame(flat).to_csv(csv.with_suffix(".csv.tmp"), index=False, float_format="%.4f")
        os.replace(csv.with_suffix(".csv.tmp"), csv)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder or .gguf file (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--spec", nargs="*", default=DEFAULT_SPEC, help="self-speculative K:D operating points")
    ap.add_argument("--hf-spec", nargs="*", default=["29:1"],
                    help="Hugging Face's own self-speculative path (assistant_early_exit) at K:D, batch 1, timed "
                         "against Hugging Face greedy generate")
    ap.add_argument("--calm", nargs="*", default=DEFAULT_CALM,
                    help="CALM operating points LAYERS:THRESHOLDS, e.g. 8:0.77 or 6,10:0.7,0.6 (max_prob)")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds; no configuration starts after it")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", help="results JSON (a CSV of the rows is written beside it)")
    ap.add_argument("--profile", action="store_true", help="profile one operating point of each method instead")
    ap.add_argument("--table", metavar="RESULTS_JSON", help="print a results file as a markdown table and exit")
    a = ap.parse_args(argv)
    if a.table:
        print(markdown_table(a.table))
        return 0
    if not a.out:
        ap.error("--out is required")
    t_start = time.perf_counter()

    import torch
    import transformers

    from toolkit.analysis.cost.causal import CausalLMDims
    from toolkit.nn.causal.decode import CalmDecoder, SelfSpeculativeDecoder, encode_prompts, greedy_decode
    from toolkit.nn.causal.reference import teacher_forced_exits  # TEMPORARY: branch llm's cache at merge

    if a.threads:
        torch.set_num_threads(a.threads)
    model, tok, origin = load_model(a.model, a.device, a.dtype)
    dims = CausalLMDims.from_config(model.config.to_dict())
    _, texts, _ = instruction_prompts("agnews", a.prompts, a.data_dir)
    prompts = encode_prompts(tok, texts)
    if a.profile:
        return profile(model, prompts, a, Path(a.out))

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        commit = None
    meta = dict(model=origin, dims=dims.__dict__, device=a.device, dtype=a.dtype, batch_sizes=a.batch_sizes,
                prompts=len(prompts), prompt_set="agnews test split (toolkit carving), first N, headline instruction",
                max_new_tokens=a.max_new_tokens, repeats=a.repeats, threads=torch.get_num_threads(),
                torch=torch.__version__, transformers=transformers.__version__, python=platform.python_version(),
                host=platform.node(), commit=commit, loadavg_start=loadavg(),
                gpu=torch.cuda.get_device_name() if a.device.startswith("cuda") else None)
    out = Writer(Path(a.out), meta)
    print(json.dumps(meta), flush=True)

    # the full model's greedy output (batch 1) and teacher-forced exits along it: the offline side
    t0 = time.perf_counter()
    ref = [greedy_decode(model, [p], a.max_new_tokens).tokens[0] for p in prompts]
    trajs = []
    for p, t in zip(prompts, ref):
        top1, conf = teacher_forced_exits(model, p, t, scores=("max_prob",))
        trajs.append(dict(n_prompt=len(p), tokens=t, top1=top1, conf_max_prob=conf["max_prob"]))
    n_prompt = [t["n_prompt"] for t in trajs]
    meta["reference_seconds"] = time.perf_counter() - t0
    meta["generated_tokens"] = int(sum(len(t) for t in ref))
    meta["eos_share"] = float(np.mean([len(t) < a.max_new_tokens for t in ref]))
    eos = model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos

    def over_budget():
        return a.time_budget is not None and time.perf_counter() - t_start > a.time_budget

    methods = ([("self_speculative", parse_spec(s)) for s in a.spec] + [("calm", parse_calm(s)) for s in a.calm]
               + [("hf_self_speculative", parse_spec(s)) for s in a.hf_spec])
    bases = {}
    for bs in a.batch_sizes:  # the greedy reference at each batch size, and HF generate once
        groups = batches(prompts, bs)
        try:
            g_tok, _, _, _ = run_batched(SelfSpeculativeDecoder(model, 1, 0), prompts, groups, a.max_new_tokens)
            hf_s = hf_generate_seconds(model, tok, prompts, groups, a.max_new_tokens, eos)
            bases[bs] = (groups, g_tok, dict(
                batch_size=bs, greedy_equal_batch1=float(np.mean([np.array_equal(x, y) for x, y in zip(g_tok, ref)])),
                hf_generate_seconds=hf_s))
        except Exception as e:  # noqa: BLE001
            out.add(dict(batch_size=bs, method="reference", error=f"{type(e).__name__}: {e}"))
            traceback.print_exc()
    for method, op in methods:  # every batch size of one operating point before the next (the budget cuts points)
        for bs, (groups, g_tok, base) in bases.items():
            if over_budget():
                out.add(dict(base, method=method, operating_point=str(op), skipped="time budget"))
                continue
            if method == "hf_self_speculative" and bs != 1:
                continue  # Hugging Face assisted generation decodes one prompt at a time
            row = dict(base, method=method, loadavg_before=loadavg())
            try:
                if method == "hf_self_speculative":
                    k, d = op
                    row.update(draft_layer=k, draft_length=d, operating_point=f"HF k={k} d={d}",
                               reference="Hugging Face greedy generate (prefill included in both)")
                    predicted, blocks = spec_predicted(trajs, k, d, a.max_new_tokens, dims)
                    dec = HFDecoder(model, k, d, eos)
                elif method == "self_speculative":
                    k, d = op
                    row.update(draft_layer=k, draft_length=d, operating_point=f"k={k} d={d}")
                    predicted, blocks = spec_predicted(trajs, k, d, a.max_new_tokens, dims)
                    dec = SelfSpeculativeDecoder(model, k, d)
                    row["offline_mean_accepted"] = float(np.mean(np.concatenate(blocks)))
                else:
                    checked, thr = op
                    row.update(checked_layers=checked, threshold=thr, operating_point=f"L{checked} t={thr}")
                    sim = calm_offline(trajs, checked, thr)
                    predicted = calm_speedup(n_prompt, [s[0] for s in sim], checked, dims)
                    row["offline_token_agreement"] = float(np.mean(np.concatenate([s[1] for s in sim])))
                    dec = CalmDecoder(model, checked, thr)
                greedy = HFDecoder(model, eos=eos) if method == "hf_self_speculative" else \
                    SelfSpeculativeDecoder(model, 1, 0)
                t_ref, t_m, pre_ref, pre_m = [], [], [], []
                for _ in range(a.repeats):  # interleaved: both see the same machine state
                    _, s, p, _ = run_batched(greedy, prompts, groups, a.max_new_tokens)
                    t_ref.append(s)
                    pre_ref.append(p)
                    toks, s, p, extra = run_batched(dec, prompts, groups, a.max_new_tokens)
                    t_m.append(s)
                    pre_m.append(p)
                # per generated token: a CALM output can be longer or shorter than the full model's
                n_ref, n_m = sum(len(x) for x in g_tok), sum(len(x) for x in toks)
                scale = n_m / n_ref
                row.update(predicted_speedup=predicted,
                           measured_speedup=scale * statistics.median(t_ref) / statistics.median(t_m),
                           reference_s=statistics.median(t_ref), method_s=statistics.median(t_m),
                           reference_tokens=n_ref, method_tokens=n_m,
                           reference_s_all=t_ref, method_s_all=t_m,
                           measured_min_max=[scale * min(t_ref) / max(t_m), scale * max(t_ref) / min(t_m)],
                           prefill_s=statistics.median(pre_m),
                           tokens_equal_greedy=float(np.mean([np.array_equal(x, y) for x, y in zip(toks, ref)])))
                if method == "hf_self_speculative":
                    pass  # HF does not report its blocks
                elif method == "self_speculative":
                    row["acceptance_equal_offline"] = float(np.mean([np.array_equal(x, y)
                                                                     for x, y in zip(extra, blocks)]))
                    row["mean_accepted"] = float(np.mean(np.concatenate(extra)))
                else:
                    row["real_flops_speedup"] = calm_speedup(n_prompt, extra, checked, dims)
                    row["real_mean_exit_layer"] = float(np.mean(np.concatenate(extra)))
                    row["offline_mean_exit_layer"] = float(np.mean(np.concatenate([s[0] for s in sim])))
                row["loadavg_after"] = loadavg()
                print(f"batch {bs:>3} {method:<16} {row['operating_point']:<28} predicted {predicted:5.2f}x "
                      f"measured {row['measured_speedup']:5.2f}x [{row['measured_min_max'][0]:.2f}, "
                      f"{row['measured_min_max'][1]:.2f}] equal {row['tokens_equal_greedy']:.3f} "
                      f"ref {row['reference_s']:.2f}s method {row['method_s']:.2f}s", flush=True)
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{type(e).__name__}: {e}"
                traceback.print_exc()
            out.add(row)
    meta["loadavg_end"] = loadavg()
    meta["seconds"] = time.perf_counter() - t_start
    out.flush()
    return 0


def markdown_table(path) -> str:
    """The rows of a results JSON as a markdown table (for benchmarks/RESULTS.md)."""
    d = json.loads(Path(path).read_text())
    head = ("| method | operating point | batch | predicted (FLOPs) | measured [min, max] | measured / predicted "
            "| realized FLOPs | equal to greedy | acceptance = offline | ref s | method s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in d["rows"]:
        if "measured_speedup" not in r:
            lines.append(f"| {r.get('method')} | {r.get('operating_point', '')} | {r.get('batch_size')} | "
                         f"{r.get('error') or r.get('skipped')} |" + " |" * 7)
            continue
        real = r.get("real_flops_speedup")
        acc = r.get("acceptance_equal_offline")
        lo, hi = r["measured_min_max"]
        lines.append(
            f"| {r['method']} | {r['operating_point']} | {r['batch_size']} | {r['predicted_speedup']:.2f}x | "
            f"{r['measured_speedup']:.2f}x [{lo:.2f}, {hi:.2f}] | {r['measured_speedup'] / r['predicted_speedup']:.2f} | "
            f"{'' if real is None else f'{real:.2f}x'} | {r['tokens_equal_greedy']:.2f} | "
            f"{'' if acc is None else f'{acc:.2f}'} | {r['reference_s']:.1f} | {r['method_s']:.1f} |")
    return "\n".join(lines)


def profile(model, prompts, a, path: Path) -> int:
    """Where the time goes at batch 1: cProfile by runtime function, torch.profiler by operator, and the time of one
    decoder layer call for 1 and for d+1 query tokens."""
    import cProfile
    import io
    import pstats

    import torch

    from toolkit.nn.causal.decode import CalmDecoder, LayerStepper, SelfSpeculativeDecoder

    k, d = parse_spec(a.spec[0] if a.spec else "22:3")
    checked, thr = parse_calm(a.calm[0] if a.calm else "8:0.77")
    p = prompts[: max(1, min(4, len(prompts)))]
    lines = [f"profile: batch 1, {len(p)} prompts, max_new_tokens {a.max_new_tokens}, "
             f"threads {torch.get_num_threads()}, loadavg {loadavg()}"]
    for name, dec in (("greedy", SelfSpeculativeDecoder(model, 1, 0)),
                      (f"self_speculative k={k} d={d}", SelfSpeculativeDecoder(model, k, d)),
                      (f"calm {checked} t={thr}", CalmDecoder(model, checked, thr))):
        for q in p[:1]:
            dec.generate([q], a.max_new_tokens)  # warm-up
        prof = cProfile.Profile()
        prof.enable()
        for q in p:
            dec.generate([q], a.max_new_tokens)
        prof.disable()
        s = io.StringIO()
        st = pstats.Stats(prof, stream=s)
        total = sum(v[3] for key, v in st.stats.items() if key[2] == "generate")
        lines.append(f"\n== {name}: generate {total:.2f} s ==")
        for fn in ("layer", "head", "__call__", "mask", "rope", "propagated_kv", "compact", "crop", "update",
                   "batch_select_indices", "embed", "tolist", "linear", "scaled_dot_product_attention", "cat"):
            hits = [(key, v) for key, v in st.stats.items() if key[2] == fn]
            for key, v in hits:
                cum = v[3]
                if cum > 0.005 * total:
                    lines.append(f"  {Path(key[0]).name}:{key[2]:<30} calls {v[1]:>7}  cumulative {cum:7.2f} s "
                                 f"({100 * cum / total:5.1f}%)  per call {1e3 * cum / max(v[1], 1):.3f} ms")
        st.sort_stats("tottime").print_stats(12)
        lines.append(s.getvalue()[-3500:])
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as tp:
            dec.generate([p[0]], a.max_new_tokens)
        lines.append(tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))
    # one layer for 1 and d+1 query tokens at a ~100-token context: FLOPs grow (d+1)x, time far less
    st = LayerStepper(model)
    dev = st.device
    with torch.inference_mode():
        for q in (1, d + 1, 8):
            cache = st.new_cache()
            ctx = torch.randint(0, 1000, (1, 100), device=dev)
            h = st.embed(ctx)
            st.layer(0, h, st.mask(torch.ones((1, 100), dtype=torch.bool, device=dev), 100),
                     st.rope(h, torch.arange(100, device=dev)[None]), cache)
            x = st.embed(torch.randint(0, 1000, (1, q), device=dev))
            valid = torch.ones((1, 100 + q), dtype=torch.bool, device=dev)
            rope = st.rope(x, torch.arange(100, 100 + q, device=dev)[None])
            mask = st.mask(valid, q)
            times = []
            for _ in range(30):
                t0 = time.perf_counter()
                st.layer(0, x, mask, rope, cache)
                times.append(time.perf_counter() - t0)
                cache.crop(-q)
            hd = time.perf_counter()
            for _ in range(30):
                st.head(x)
            head_ms = 1e3 * (time.perf_counter() - hd) / 30
            lines.append(f"one decoder layer, {q} query token(s) at context 100: median "
                         f"{1e3 * statistics.median(times):.3f} ms; LM head on {q} position(s): {head_ms:.3f} ms")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
