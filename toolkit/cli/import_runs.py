"""``toolkit import``: other tools' logs and records to a classification cache (no new inference).

``toolkit import lm-eval SAMPLES [SAMPLES ...] --out CACHE``: lm-evaluation-harness ``--log_samples`` files of a
multiple-choice task, one cascade stage per run, the cheapest first (:mod:`toolkit.imports.lmeval`).
"""

from __future__ import annotations

from ._common import positive_float


def _cost(text: str) -> float:
    return positive_float(text) if text.strip() not in ("0", "0.0") else 0.0


def register(sub) -> None:
    p = sub.add_parser("import", help="import other tools' logs (lm-eval samples) as a cascade cache",
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


def run(a) -> int:
    from ..analysis.inputs import cost_label, cost_scale
    from ..imports import import_lm_eval

    toks = None if a.tokenizer is None else [None if t == "-" else t for t in a.tokenizer]
    c = import_lm_eval(a.samples, out=a.out, names=a.name, costs=a.cost, cost_unit=a.cost_unit, tokenizers=toks,
                       id_field=a.id_field, task=a.task, split=a.split,
                       allow_different_tasks=a.allow_different_tasks)
    unit = c.meta["cost_unit"]
    scale, _ = cost_scale(unit)
    print(f"wrote {a.out}: {c}")
    print(f"cost: {c.meta['cost_rule']}")
    for e, s in enumerate(c.stages):
        print(f"  {s}: accuracy {c.correct[:, e].mean():.4f}, {cost_label(unit, 'cumulative cost per example')} "
              f"{c.flops[:, e].mean() / scale:.4g}")
    return 0
