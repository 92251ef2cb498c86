"""``toolkit sweep``: the exact sweep of any cache, its summary and its frontier, speed-ups against a named
reference."""

from __future__ import annotations

from toolkit.cli._common import engine_args, positive_float, positive_int, profile_args


def register(sub) -> None:
    from toolkit.analysis.scores.classification import SCORES
    from toolkit.analysis.scores.tokens import AGGREGATIONS

    p = sub.add_parser("sweep", help="exact threshold sweep of a cache: summary and Pareto frontier",
                       description="Every distinct threshold of 'stop at the first stage whose confidence clears "
                                   "it', exactly. Classification caches (exits, cascades), generation caches "
                                   "(Swift/Super routing) and LLM token caches (CALM-style exit per token) alike. Optima on the swept split are upper bounds; choose "
                                   "operating points on cal (toolkit plot --cal, or the engine's choose()).")
    p.add_argument("cache")
    p.add_argument("--score", choices=list(SCORES), help="confidence score (default: max_prob for classification, "
                                                         "energy for generation)")
    p.add_argument("--how", choices=list(AGGREGATIONS),
                   help="generation caches: aggregation of token scores over the generated sequence (default mean)")
    p.add_argument("--temperature", type=positive_float, help="temperature of the score (default 1)")
    p.add_argument("--metric", help="headline metric (default: the cache's task metric)")
    p.add_argument("--family", help="LLM token caches: the exit family (default: the cache's first, e.g. lens)")
    p.add_argument("--checked-layers", type=positive_int, nargs="+",
                   help="LLM token caches: the layers whose exits are checked (default: every layer)")
    p.add_argument("--drop-metric", help="metric of the summary's drop and budgets (default: accuracy where the "
                                         "cache has it, else the headline metric)")
    p.add_argument("--max-drop", type=positive_float, default=0.01,
                   help="summary: tolerated absolute drop of --drop-metric against the last stage (default 0.01)")
    profile_args(p, what="cost")
    engine_args(p)
    p.set_defaults(fn=run)


# flags that do not apply to a cache kind (refused rather than ignored), and why
NOT_FOR = {"llm_tokens": {"--reference": "speed-ups are against the full model", "--metric": "the metric is "
                          "agreement with the full model's token", "--how": "exits are per token"},
           "generation": {"--family": "LLM token caches only", "--checked-layers": "LLM token caches only"},
           "classification": {"--family": "LLM token caches only", "--checked-layers": "LLM token caches only",
                              "--how": "generation caches only"}}


def view_of(a, *, models=None):
    """The engine view of the cache named on the command line (any kind), after refusing flags that do not apply
    to its kind."""
    from toolkit.analysis.engine import staged
    from toolkit.caches.kinds import kind_of

    kind = kind_of(a.cache)
    given = {"--reference": a.reference, "--metric": a.metric, "--how": getattr(a, "how", None),
             "--family": getattr(a, "family", None), "--checked-layers": getattr(a, "checked_layers", None)}
    bad = [f"{flag} ({why})" for flag, why in NOT_FOR[kind.name].items() if given.get(flag) is not None]
    if bad:
        raise ValueError(f"{a.cache}: a {kind.name} cache; these flags do not apply to it: {'; '.join(bad)}")
    c = kind.loader()(a.cache)
    reference = a.reference or "last"
    if kind.name == "llm_tokens":
        return c, staged(c, family=getattr(a, "family", None), score=a.score or "max_prob",
                         temperature=1.0 if a.temperature is None else a.temperature,
                         checked_layers=getattr(a, "checked_layers", None))
    if kind.name == "generation":
        t = 1.0 if a.temperature is None else a.temperature
        return c, staged(c, models=models, score=a.score or "energy", how=a.how or "mean", temperature=t,
                         metric=a.metric, reference=reference)
    return c, staged(c, score=a.score or "max_prob", temperature=a.temperature, metric=a.metric,
                     reference=reference)


def family_line(cache, view) -> dict:
    """For an LLM token view: which exit family it used (the sweep names it)."""
    fam = view.meta.get("family")
    if fam is None:
        return {}
    line = {"exit family": f"{fam} (the cache holds {', '.join(cache.family_names)}; --family picks one)"}
    if "propagate" in view.meta:
        line["K/V propagation"] = ("on (skipped layers' keys/values costed, as the CALM decoder runs)"
                                   if view.meta["propagate"] else "off (not costed; the CALM decoder cannot run so)")
    return line


def report(a, cache, view, extra: dict | None = None, curve=None) -> int:
    """The sweep of ``view`` (or ``curve``, its sweep costed otherwise: a CALM time curve at a batch size)."""
    import pandas as pd

    from toolkit.analysis.engine import pareto_front, summarize, sweep
    from toolkit.caches.inputs import cost_scale
    from toolkit.caches.io import CacheError, write_atomic
    from toolkit.cli._common import evenly, print_json, readable

    curve = sweep(view) if curve is None else curve
    summary = summarize(curve, metric=getattr(a, "drop_metric", None), max_drop=a.max_drop)
    front = pareto_front(curve)
    if a.csv:
        write_atomic(a.csv, curve.to_frame().to_csv(index=False), error=CacheError)
    unit = curve.meta.get("cost_unit", "FLOPs")  # the cache's cost unit: FLOPs, parameters x tokens, ms, dollars ...
    ref_cost = float(curve.meta.get("reference_ms", view.reference_cost.mean()))
    if a.json:  # costs in the cache's own unit (a row's "flops" column too), named by "cost_unit"
        print_json({"cache": a.cache, "task": view.meta.get("task"), "split": view.split, "n": view.n_examples,
                    "stages": list(view.stage_names), "score": view.meta.get("score"), "reference": curve.reference,
                    "reference_cost": ref_cost, "cost_unit": unit,
                    **(extra or {}), "summary": summary.to_dict(), "frontier": front.to_dict("records")})
        return 0
    print(cache)
    scale, shown = cost_scale(unit)
    print(f"speed-ups against {curve.reference}: {ref_cost / scale:.4g} {shown} per example "
          f"(score {view.meta.get('score')}, {view.split} split, N={view.n_examples})")
    for k, v in (extra or {}).items():
        print(f"{k}: {v}")
    s = summary
    print(f"{s.metric} with every example at the last stage: {s.final:.4f}")
    print(f"largest speed-up within {s.max_drop:g} of it (upper bound: best threshold on this split): "
          f"{s.speedup_at_drop_upper_bound:.2f}x")
    for k, v in s.metric_at_upper_bound.items():
        print(f"best {s.metric} at >= {k:g}x (upper bound): " + ("not reached" if v != v else f"{v:.4f}"))
    print(f"area under the {s.metric}/speed-up frontier (mean over speed-ups): {s.auc:.4f}")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(f"\nPareto frontier ({len(front)} rows; {min(a.rows, len(front))} shown, cheapest to most accurate):")
        print(readable(evenly(front, a.rows), view.metric_names, unit=unit).to_string(index=False))
    return 0


def timed(a, cache, view):
    """With ``--profile``: the view costed in predicted ms at batch 1
    (:func:`toolkit.analysis.cost.latency.with_predicted_time`, exact per example) and the line naming the profile;
    at ``--batch`` > 1 the view as it is and the exact sweep in predicted ms of the runtime's batches
    (:func:`~toolkit.analysis.cost.latency.time_sweep`: the encoder runtimes', or the CALM decoder's on batches of
    prompts in the cache's order). Returns ``(view, line, curve or None)``."""
    if not getattr(a, "profile", None):
        return view, {}, None
    from toolkit.analysis.cost.latency import load_profile, models_for, time_sweep, with_predicted_time

    prof = load_profile(a.profile)
    if view.meta.get("kind") == "llm_tokens":
        names, n_tokens = [(a.profile_model or [cache.model.get("path")])[0]], None
        line = {"latency profile": f"{prof.label}; model {prof.model(names[0]).name}; batch {a.batch}"}
    elif hasattr(cache, "n_tokens"):
        names, n_tokens = a.profile_model or models_for(cache.meta, prof), cache.n_tokens
        line = {"latency profile": f"{prof.label}; models {', '.join(names)}; batch {a.batch}"}
    else:
        raise ValueError(f"{a.cache}: --profile costs classification caches (early exit, cascades) and LLM token "
                         f"caches only")
    if a.batch == 1:
        return with_predicted_time(view, prof, n_tokens, models=names), line, None
    # at a batch size the runtime's batches at every threshold (a row's share of a full batch misprices them)
    return view, line, time_sweep(view, prof, n_tokens=n_tokens, models=names, batch_size=a.batch)


def run(a) -> int:
    from toolkit.cli._common import input_file, output_file

    if getattr(a, "profile", None):
        input_file(a.profile, "latency profile")
    if getattr(a, "csv", None):
        output_file(a.csv, "--csv file")
    cache, view = view_of(a)
    view, extra, curve = timed(a, cache, view)
    return report(a, cache, view, {**family_line(cache, view), **extra}, curve)
