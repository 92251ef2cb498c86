"""SmolLM2 as a multi-exit classifier beside the encoder zoo, from the shipped caches (notebook 10, section 4).

:func:`llm_classifier` computes, for one task, everything the section shows: per-stage accuracy and FLOPs of
SmolLM2's exits (zero-shot through the logit lens and the tuned exits, and per-layer probes) and of the multi-exit
encoders on the same test examples; the probes' early exit and the cascade MiniLM-L6 -> probe (its best cal layer,
``compose.cascade_caches``) chosen on cal with the ``drop`` rule; each member alone and the reference (SmolLM2's last
exit); the cascade's most accurate threshold on test itself (an upper bound); and the paired accuracy differences
cascade minus MiniLM-L6 and probe minus MiniLM-L6 on the cascade's test examples
(:func:`toolkit.analysis.llm.intervals.paired_stop_differences`). Speed-ups divide by SmolLM2's last exit (probe) on
every example.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from toolkit.analysis import engine
from toolkit.analysis.llm.intervals import PairedDifferences, paired_stop_differences
from toolkit.caches.compose import cascade_caches
from toolkit.zoo import catalogue
from toolkit.zoo.lineage import FIRST_BUILD

LLM_SETS = {"smollm2_zs_lens": "SmolLM2 zero-shot, lens", "smollm2_zs_tuned": "SmolLM2 zero-shot, tuned",
            "smollm2_probe": "SmolLM2 probes"}
ENCODERS = {"minilm6_me": "MiniLM-L6 multi-exit", "mpnet_me": "MPNet-base multi-exit"}
EARLY_EXIT = "SmolLM2 probes, early exit (cal, drop rule)"
CASCADE = "cascade MiniLM-L6 -> SmolLM2 probe (cal, drop rule)"
UPPER_BOUND = "cascade, most accurate threshold on test itself (upper bound)"


@dataclass(frozen=True, repr=False, eq=False)
class LLMClassifier:
    """One task's results. ``tables[name]``: per stage ``stage``, ``layer``, test ``accuracy``, ``cal accuracy``,
    ``gflops`` (test examples shared with the probe cache); ``k``: the probe stage index most accurate on cal
    (``layer`` its name); ``chance``: the majority class's share of test; ``ee``/``cev``: the early exit's and the
    cascade's :class:`~toolkit.analysis.engine.Evaluation` on test; ``alone``: each cascade member alone;
    ``reference``: SmolLM2's last exit; ``curve``: the cascade's sweep on test; ``either``: share of cascade test
    examples either member gets right; ``comparisons``: paired differences in test accuracy; ``n``: cascade test
    examples; ``cascade_view``: the cascade's test view (speed-ups against SmolLM2's last exit)."""

    task: str
    tables: Mapping
    k: int
    layer: str
    chance: float
    ee: engine.Evaluation
    cev: engine.Evaluation
    alone: Mapping
    reference: tuple
    curve: pd.DataFrame
    either: float
    n: int
    comparisons: PairedDifferences
    cascade_view: engine.Staged

    def operating_points(self) -> pd.DataFrame:
        """One row per policy on test: ``n``, ``accuracy`` with ``lo``/``hi``, ``drop vs last stage``, ``gflops``,
        ``speedup``, ``escalated``; the upper bound last (no interval)."""
        ref_name, ref_ev = self.reference
        rows = [{"task": self.task, "policy": name, "n": ev.n, "accuracy": ev["accuracy"],
                 "accuracy lo": ev.intervals["accuracy"][0], "accuracy hi": ev.intervals["accuracy"][1],
                 "drop vs last stage": ev.drop("accuracy"), "gflops": ev.flops / 1e9, "speedup": ev.speedup,
                 "escalated": ev.escalated}
                for name, ev in {EARLY_EXIT: self.ee, CASCADE: self.cev, **self.alone,
                                 f"{ref_name} (the reference)": ref_ev}.items()]
        top = self.curve[self.curve.accuracy >= self.curve.accuracy.max() - 1e-12].sort_values("flops").iloc[0]
        rows.append({"task": self.task, "policy": UPPER_BOUND, "n": self.n, "accuracy": top.accuracy,
                     "gflops": top.flops / 1e9, "speedup": top.speedup, "escalated": top.escalated})
        return pd.DataFrame(rows)

    def peaks(self) -> pd.DataFrame:
        """Per SmolLM2 exit family: the best test layer before the last (an upper bound: chosen on test), its test
        and cal accuracy, the last layer's accuracy, the majority class and the best cal layer."""
        return pd.DataFrame([{"task": self.task, "model": LLM_SETS[n],
                              "best test layer before the last": tab.stage.iloc[j],
                              "its test accuracy": tab.accuracy.iloc[j], "its cal accuracy": tab["cal accuracy"].iloc[j],
                              "last layer accuracy": tab.accuracy.iloc[-1], "majority class (test)": self.chance,
                              "best cal layer": tab.stage.iloc[int(tab["cal accuracy"].to_numpy().argmax())]}
                             for n, tab in self.tables.items() if n in LLM_SETS
                             for j in [int(tab.accuracy.iloc[:-1].to_numpy().argmax())]])

    def near_chance(self, within: float = 0.05) -> dict[str, int]:
        """Per zero-shot family: how many layers before the last are within ``within`` of the majority class."""
        return {k: int((np.abs(self.tables[k].accuracy.to_numpy()[:-1] - self.chance) <= within).sum())
                for k in ("smollm2_zs_lens", "smollm2_zs_tuned")}

    def stage_table(self) -> pd.DataFrame:
        """Per-stage rows as shown: every encoder stage, SmolLM2's every third layer and the probe's best cal layer."""
        rows = [(t if name in ENCODERS else t[(t.layer % 3 == 0) | (t.layer == self.k + 1)])
                .assign(task=self.task, model=LLM_SETS.get(name) or ENCODERS[name]) for name, t in self.tables.items()]
        return pd.concat(rows, ignore_index=True)[["task", "model", "stage", "accuracy", "cal accuracy", "gflops"]]


def llm_classifier(task: str, *, max_drop: float = 0.01, n_boot: int = catalogue.N_BOOT, seed: int = catalogue.SEED,
                   verbose: bool = True) -> LLMClassifier:
    """Section 4 of notebook 10 for ``task`` (``"sst2"`` or ``"agnews"``) from the shipped caches: operating points
    chosen on cal with ``rule="drop", max_drop=max_drop``, intervals from ``n_boot`` resamples of test examples
    (``seed``). The encoders are the first build's (``build="v1"``), trained on every training sentence.
    ``verbose``: print which encoder files were loaded (:func:`catalogue.load_seeds`)."""
    llm_c = {n: catalogue.load(task, n) for n in LLM_SETS}
    probe_cal, probe_test = llm_c["smollm2_probe"]
    ids = probe_test.example_ids
    # the encoders trained on every training sentence (the first build, "v1"): the CPU build's per-seed SST-2
    # MiniLM-L6 saw 20,000 of them and is 3.4 points weaker, a softer baseline for the LLM
    enc = {n: catalogue.load_seeds(task, n, verbose=verbose, build=FIRST_BUILD).first() for n in ENCODERS}
    tables = {}
    for n, (c_cal, c_test) in {**llm_c, **enc}.items():
        t = c_test if n in LLM_SETS else c_test.subset(np.flatnonzero(np.isin(c_test.example_ids, ids)))
        tables[n] = pd.DataFrame({"stage": t.stages, "layer": np.arange(1, t.n_stages + 1),
                                  "accuracy": t.correct.mean(0), "cal accuracy": c_cal.correct.mean(0),
                                  "gflops": t.flops.mean(0) / 1e9})
    k = int(probe_cal.correct.mean(0).argmax())  # the probe layer most accurate on cal
    chance = float(np.bincount(probe_test.labels).max() / probe_test.n_examples)
    ref_name = f"SmolLM2 last exit ({probe_test.stages[-1]})"
    view = lambda c: engine.staged(c, reference=catalogue.REFERENCE)  # noqa: E731
    v_cal, v_test = view(probe_cal), view(probe_test)
    ee = engine.choose(v_cal, rule="drop", max_drop=max_drop).evaluate(v_test, n_boot=n_boot, seed=seed)
    enc_cal, enc_test = enc["minilm6_me"]
    casc = {s: cascade_caches([e, p], names=["minilm6", "smollm2"], stages=[[e.stages[-1]], [p.stages[k]]],
                               subset=True)
            for s, e, p in (("cal", enc_cal, probe_cal), ("test", enc_test, probe_test))}
    cref = {"cal": pd.Series(probe_cal.flops[:, -1], index=probe_cal.example_ids),
            "test": pd.Series(probe_test.flops[:, -1], index=ids)}
    cv = {s: view(casc[s]).with_reference(cref[s].loc[casc[s].example_ids].to_numpy(), ref_name) for s in casc}
    cop = engine.choose(cv["cal"], rule="drop", max_drop=max_drop)
    cev = cop.evaluate(cv["test"], n_boot=n_boot, seed=seed)
    n = casc["test"].n_examples
    layer = probe_test.stages[k]
    alone = {name: engine.evaluation_at_stages(cv["test"], np.full(n, e), n_boot=n_boot, seed=seed)
             for name, e in (("MiniLM-L6 alone (last exit)", 0), (f"SmolLM2 probe {layer} alone", 1))}
    ref_ev = engine.evaluation_at_stages(v_test, np.full(probe_test.n_examples, probe_test.n_stages - 1),
                                         n_boot=n_boot, seed=seed)
    comparisons = paired_stop_differences(
        cv["test"], {"cascade minus MiniLM-L6 alone": (cv["test"].stage_of(cop.threshold), 0),
                     f"SmolLM2 probe {layer} minus MiniLM-L6 alone": (1, 0)}, n_boot=n_boot, seed=seed)
    return LLMClassifier(task=task, tables=tables, k=k, layer=layer, chance=chance, ee=ee, cev=cev, alone=alone,
                         reference=(ref_name, ref_ev), curve=engine.sweep(cv["test"]).frame,
                         either=float(casc["test"].correct.any(1).mean()), n=n, comparisons=comparisons,
                         cascade_view=cv["test"])


def plot_llm_classifier(results: Mapping, *, axes=None):
    """One panel per task (``results`` ``{task: LLMClassifier}``): test accuracy against GFLOPs (log) of every exit
    of each model, the early exit and the cascade chosen on cal with 95% error bars, the cascade at every threshold,
    the majority class and a note counting the zero-shot layers near it; one legend below."""
    from toolkit.analysis.plots.curves import FLOPS_LABEL

    if axes is None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(results), figsize=(14, 4.8), constrained_layout=True)
    axes = np.atleast_1d(axes)
    fig = axes[0].figure
    for a, (task, r) in zip(axes, results.items()):
        for i, (name, t) in enumerate(r.tables.items()):
            a.plot(t.gflops, t.accuracy, marker=".", ms=4, color=f"C{i}", label=LLM_SETS.get(name) or ENCODERS[name])
        for ev, mark, label in ((r.ee, "s", "SmolLM2 probes, early exit chosen on cal"),
                                (r.cev, "D", "cascade MiniLM-L6 -> probe, chosen on cal")):
            a.errorbar([ev.flops / 1e9], [ev["accuracy"]], yerr=[[ev["accuracy"] - ev.intervals["accuracy"][0]],
                                                                 [ev.intervals["accuracy"][1] - ev["accuracy"]]],
                       fmt=mark, color="k", mfc="white", ms=8, capsize=3, label=label)
        a.plot(r.curve.flops / 1e9, r.curve.accuracy, "k--", lw=1,
               label="cascade MiniLM-L6 -> probe, every threshold (test)")
        a.axhline(r.chance, color="gray", ls=":", lw=1, label="majority class")
        near = r.near_chance()
        a.text(0.02, 0.5, f"zero-shot exits within 5 points of the majority class:\nlens {near['smollm2_zs_lens']}, "
               f"tuned {near['smollm2_zs_tuned']} of the {len(r.tables['smollm2_zs_lens']) - 1} layers before the "
               f"last", transform=a.transAxes, ha="left", va="center", fontsize=8, color="dimgray")
        a.set_xscale("log")
        a.set_xlabel(FLOPS_LABEL + " (log)")
        a.set_ylabel("test accuracy")
        a.set_title(f"{task}: {r.n} test examples, every exit of each model")
        a.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    return fig
