"""``toolkit import``: other tools' logs and records to a classification cache (no new inference).

``toolkit import lm-eval SAMPLES [SAMPLES ...] --out CACHE``: lm-evaluation-harness ``--log_samples`` files of a
multiple-choice task, one cascade stage per run, the cheapest first (:mod:`toolkit.imports.lmeval`).
``toolkit import chat-logprobs RECORDS [RECORDS ...] --labels FILE --label-word W[,FORM...] ... --out CACHE``:
OpenAI-style chat completions with top_logprobs (also vLLM's), one file per model (:mod:`toolkit.imports.logprobs`).
"""

from __future__ import annotations

from toolkit.cli._common import positive_float


def _cost(text: str) -> float:
    return positive_float(text) if text.strip() not in ("0", "0.0") else 0.0


def register(sub) -> None:
    p = sub.add_parser("import", help="import other tools' logs (lm-eval samples, chat logprobs) as a cascade cache",
                       description="Import existing runs into a classification cache the engine sweeps.")
    kinds = p.add_subparsers(dest="source", required=True)
    q = kinds.add_parser(
        "lm-eval", help="lm-evaluation-harness --log_samples files, one stage per run (cheapest first)",
        description="One stage per run, in the order given (smallest model first): logits = the logged per-choice "
                    "log-likelihoods, labels = the targets, runs joined on doc_id and refused when their documents, "
                    "task, choices or targets differ. No document text is stored. Cost per example: parameters x "
                    "tokens of the example's requests when every run's tokenizer is at hand (the model folder, or "
                    "--tokenizer), else parameters; --cost with --cost-unit overrides. Cumulative across stages.")
    q.add_argument("samples", nargs="+", help="samples_<task>_<time>.jsonl files (results_<time>.json beside each)")
    q.add_argument("--out", required=True, help="the cache to write (.parquet)")
    q.add_argument("--name", action="append", help="stage name, once per run (default: model folder name)")
    q.add_argument("--cost", action="append", type=_cost, help="cost per example, once per run (needs --cost-unit)")
    q.add_argument("--cost-unit", help="what --cost counts: seconds, dollars, FLOPs, 'parameters x tokens' ...")
    q.add_argument("--tokenizer", action="append",
                   help="tokenizer.json or a folder holding one, once per run ('-' for the run's own)")
    q.add_argument("--id-field", help="a column of the documents holding stable example ids (default task:doc_id)")
    q.add_argument("--task", help="task name in the header (default lm-eval's)")
    q.add_argument("--split", help="split name in the header (cal, test ...)")
    q.add_argument("--allow-different-tasks", action="store_true",
                   help="accept runs saved under different task names (the documents, choices and targets must "
                        "still match)")
    q.set_defaults(fn=run)
    r = kinds.add_parser(
        "chat-logprobs", help="chat-completion records with top_logprobs (OpenAI, vLLM), one file per model",
        description="Each record is read at the first generated position whose top_logprobs hold a label word; a "
                    "class scores the logsumexp of its forms there; a class missing from the top k gets the smallest "
                    "logprob listed (an upper bound), flagged per example in the header. Cost: usage.total_tokens "
                    "(unit tokens) unless --cost/--cost-unit. Ids: custom_id, else the record's line index.")
    r.add_argument("records", nargs="+", help="JSONL files of chat completions or Batch API output lines")
    r.add_argument("--labels", required=True, help="a text file: one label per record of the first file (an index "
                                                   "or a label word)")
    r.add_argument("--label-word", action="append", required=True,
                   help="one per class, in class order: the word and other surface forms, comma-separated "
                        "(e.g. negative,Negative)")
    r.add_argument("--out", required=True)
    r.add_argument("--name", action="append", help="stage name, once per file (default: the model in the records)")
    r.add_argument("--cost", action="append", type=_cost, help="cost per record, once per file (needs --cost-unit)")
    r.add_argument("--cost-unit")
    r.add_argument("--task")
    r.add_argument("--split")
    r.set_defaults(fn=run_logprobs)


def _print(c, out) -> None:
    from toolkit.caches.inputs import cost_label, cost_scale

    unit = c.meta["cost_unit"]
    scale, _ = cost_scale(unit)
    print(f"wrote {out}: {c}")
    print(f"cost: {c.meta['cost_rule']}")
    for e, s in enumerate(c.stages):
        print(f"  {s}: accuracy {c.correct[:, e].mean():.4f}, {cost_label(unit, 'cumulative cost per example')} "
              f"{c.flops[:, e].mean() / scale:.4g}")


def run_logprobs(a) -> int:
    from toolkit.cli._common import input_file, output_file
    from toolkit.imports import import_chat_logprobs

    output_file(a.out, "--out cache")  # refused before the records are read, not at the save

    labels = [int(x) if x.strip().isdigit() else x.strip()
              for x in input_file(a.labels, "labels file").read_text(encoding="utf-8").splitlines() if x.strip()]
    words = [tuple(w.split(",")) for w in a.label_word]
    c = import_chat_logprobs(a.records, labels, label_words=words, out=a.out, names=a.name, costs=a.cost,
                             cost_unit=a.cost_unit, task=a.task, split=a.split)
    _print(c, a.out)
    for m in c.meta["models"]:
        if m["floored"]:
            print(f"  {m['name']}: {m['floored']} label-word log-probabilities missing from the top k were floored "
                  f"({len(m['floored_ids'])} examples; see meta['models'])")
    return 0


def run(a) -> int:
    from toolkit.cli._common import output_file
    from toolkit.imports import import_lm_eval

    output_file(a.out, "--out cache")  # refused before the samples are read (and tokenized), not at the save

    toks = None if a.tokenizer is None else [None if t == "-" else t for t in a.tokenizer]
    c = import_lm_eval(a.samples, out=a.out, names=a.name, costs=a.cost, cost_unit=a.cost_unit, tokenizers=toks,
                       id_field=a.id_field, task=a.task, split=a.split,
                       allow_different_tasks=a.allow_different_tasks)
    _print(c, a.out)
    return 0
