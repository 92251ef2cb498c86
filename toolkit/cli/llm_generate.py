"""``toolkit llm-generate``."""

from __future__ import annotations

import sys

from ._common import positive_int


def register(sub) -> None:
    p = sub.add_parser("llm-generate", help="generate with a causal LM and a saved early-exit policy",
                       description="Greedy generation with a saved LLM exit policy (JSON written by "
                                   "toolkit.nn.llm_runtime.LLMPolicy.save: model, exit (logit lens or trained), "
                                   "method self_speculative (draft_layer, draft_length; output equals the full "
                                   "model's) or calm (score, checked_layers, thresholds, temperature)). Reads one "
                                   "prompt per line (UTF-8; empty lines are refused) and writes one output line per "
                                   "prompt: line number, tokens generated, mean accepted drafts per block "
                                   "(self-speculative) or mean exit layer (CALM), and the text with \\\\, tab and "
                                   "newlines escaped.")
    p.add_argument("--policy", required=True, help="policy JSON")
    p.add_argument("--input", required=True, help="UTF-8 text file, one prompt per line")
    p.add_argument("--out", help="TSV to write (default: standard output)")
    p.add_argument("--batch-size", type=positive_int, default=1)
    p.add_argument("--max-new-tokens", type=positive_int, help="override the policy's max_new_tokens")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda ...)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.set_defaults(fn=run)


def read_prompts(path) -> list[str]:
    """One prompt per line; refuse invalid UTF-8, empty lines and empty files, naming the line."""
    from pathlib import Path

    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: invalid UTF-8; re-save the file as UTF-8") from None
    lines = text.lstrip("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln.rstrip("\r") for ln in lines]
    if not lines:
        raise ValueError(f"{path}: no prompts (one prompt per line)")
    for i, ln in enumerate(lines):
        if not ln.strip():
            raise ValueError(f"{path}:{i + 1}: empty line; every line is one prompt (remove it or write a prompt)")
    return lines


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def run(a) -> int:
    import contextlib
    import os
    import tempfile
    import time
    from pathlib import Path

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..nn.llm_runtime import LLMPolicy, decoder_from_policy, encode_prompts
    from ..nn.models import resolve_model

    policy = LLMPolicy.load(a.policy)
    prompts = read_prompts(a.input)
    folder = resolve_model(policy.model)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, a.dtype)).to(a.device).eval()
    try:
        decoder = decoder_from_policy(policy, model)
    except ValueError as e:
        raise ValueError(f"{a.policy}: {e}") from None
    ids = encode_prompts(tok, prompts, chat_template=policy.chat_template)
    max_new = a.max_new_tokens or policy.max_new_tokens
    t0 = time.perf_counter()
    tokens, stat = [], []
    for s in range(0, len(ids), a.batch_size):
        res = decoder.generate(ids[s:s + a.batch_size], max_new)
        tokens += res.tokens
        stat += ([float(np.mean(x)) for x in res.accepted] if policy.method == "self_speculative"
                 else [float(np.mean(x)) for x in res.exit_layers])
    seconds = time.perf_counter() - t0
    column = "mean_accepted" if policy.method == "self_speculative" else "mean_exit_layer"
    lines = [f"line\ttokens\t{column}\ttext"]
    lines += [f"{i + 1}\t{len(t)}\t{v:.3f}\t{escape(tok.decode(t, skip_special_tokens=True))}"
              for i, (t, v) in enumerate(zip(tokens, stat))]
    if a.out:
        out = Path(a.out)
        fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix=out.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, out)
    else:
        with contextlib.nullcontext(sys.stdout) as f:
            f.write("\n".join(lines) + "\n")
    n = sum(len(t) for t in tokens)
    print(f"{len(prompts)} prompts, {n} tokens in {seconds:.2f} s ({n / seconds:.1f} tokens/s); {policy.method}: "
          f"{column} {np.mean(stat):.3f}", file=sys.stderr)
    return 0
