"""Calibration shift: is the split that thresholds are fitted on exchangeable with the one they are reported on?
Compares the train-carve ``cal`` with ``test`` (the GLUE dev set), and the two seeded halves of ``test``
(:func:`toolkit.data.tasks.dev_halves`, stratified by label) with each other, per task, on the shipped caches: mean
tokens (all-MiniLM-L6-v2 tokenizer), label share, and the accuracy of each shipped model's last stage, averaged over
the set's training seeds (its per-seed files where it has any, else the single-seed pair): each example counts as
the share of seeds that get it right, so halves, gaps and their sd over halvings are those of the seed mean.

The ``sd`` columns put each gap in context: the standard deviation of the same half-A minus half-B difference over
``n_halvings`` random halvings of test (seeds 0..n-1), i.e. how large a gap pure sampling gives between exchangeable
halves.

>>> from toolkit.zoo.cal_shift import cal_shift
>>> print(cal_shift().markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.caches.classification import load_cache
from toolkit.data.tasks import dev_halves
from toolkit.zoo import catalogue

TASKS = ("sst2", "mrpc", "rte", "cola", "agnews")
SECTION = "cal-shift"
# (cache set, stage, column name): each shipped model's last stage
MODELS = (("minilm6_me", "L6", "MiniLM-L6 me"), ("mpnet_me", "L12", "MPNet me"), ("cascade", "minilm-l2:L2", "L2"),
          ("cascade", "minilm-l6:L6", "L6"), ("cascade", "mpnet:L12", "MPNet"))
SPLIT_ROWS = ("cal (train carve)", "test", "test half A", "test half B")


def label_indicator(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """1.0 where the label is the one whose share is reported: the last class of a binary task (SST-2 positive,
    MRPC equivalent, RTE not entailment, CoLA acceptable), class 0 otherwise (AG News: World)."""
    target = labels.max() if n_classes == 2 else 0
    return (labels == target).astype(float)


def halving_sd(values: np.ndarray, half_a: np.ndarray) -> float:
    """Standard deviation over halvings of the half-A minus half-B mean of ``values`` ``[N]``; ``half_a``: ``[S, N]``
    bool, True where an example is in half A of halving ``s``."""
    a = half_a
    gap = (a * values).sum(1) / a.sum(1) - (~a * values).sum(1) / (~a).sum(1)
    return float(np.std(gap))


def _halvings(example_ids, labels, n: int) -> np.ndarray:
    return np.stack([dev_halves(example_ids, labels, seed=s) for s in range(n)]) == 0  # [S, N] True: half A


def _files(data: Path, task: str, s: str, split: str) -> list[Path]:
    """The caches of set ``s``: one per training seed where per-seed files exist, else the single-seed file."""
    seeds = catalogue.seeds_on_disk(task, s, data=data) or (None,)
    return [catalogue.cache_file(task, s, split, seed=seed, data=data) for seed in seeds]


def _stage_seed(cache, stage: str):
    """The training seed of the model behind ``stage`` (a borrowed member keeps its one seed in every set's seed)."""
    model = cache.meta.get("models", [])[cache.stage_info[cache.stages.index(stage)]["model_index"]]
    return model.get("train_seed")


def _caches(data: Path, task: str) -> dict:
    """``(set, split) -> [cache per training seed]``, every one on the same examples in the same order."""
    caches = {(s, split): [(f, load_cache(f, verify_data=False)) for f in _files(data, task, s, split)]
              for s in dict.fromkeys(m[0] for m in MODELS) for split in catalogue.SPLITS}
    ref = {split: caches[(MODELS[0][0], split)][0] for split in catalogue.SPLITS}
    for (_, split), held in caches.items():  # a split's caches must hold the same examples in the same order
        for f, c in held:
            ids = ref[split][1].example_ids
            if len(c.example_ids) != len(ids) or not (c.example_ids == ids).all():
                raise ValueError(f"{f}: its examples differ from {ref[split][0]}'s (ids or order); rebuild the caches "
                                 f"of {task} together")
    return {k: [c for _, c in held] for k, held in caches.items()}


@dataclass(frozen=True, repr=False, eq=False)
class CalShift:
    """Per task: cal, test and test's two halves side by side, and what exchangeable halves differ by.

    ``frame``: one row per task and split (``SPLIT_ROWS``): ``task, split, n, tokens`` (mean tokens), ``pos``
    (label share, :func:`label_indicator`) and one accuracy column per model (``MODELS``' names); ``sd``: one row
    per task, the standard deviation over halvings of each column's half-A minus half-B gap, and ``seeds <model>``: the
    distinct training seeds each accuracy column averages (a borrowed member counts once); ``label_balance``: task
    -> (sd of the A - B label share over halvings stratified by label, the same unstratified).
    """

    frame: pd.DataFrame
    sd: pd.DataFrame
    label_balance: dict
    seed: int
    n_halvings: int

    @property
    def models(self) -> list[str]:
        return [m[2] for m in MODELS]

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()

    def to_dict(self) -> dict:
        return {"seed": self.seed, "n_halvings": self.n_halvings, "rows": self.frame.to_dict("records"),
                "sd": self.sd.to_dict("records"), "label_balance": {k: list(v) for k, v in self.label_balance.items()}}

    def gaps(self) -> pd.DataFrame:
        """Per task: cal minus test, half A minus half B and its sd over halvings, for tokens, label share and each
        model's accuracy (one row per task and quantity)."""
        cols = ["tokens", "pos", *self.models]
        rows = []
        for task, g in self.frame.groupby("task", sort=False):
            r = g.set_index("split")
            sd = self.sd.set_index("task").loc[task]
            for c in cols:
                rows.append({"task": task, "quantity": c, "cal - test": r.loc[SPLIT_ROWS[0], c] - r.loc["test", c],
                             "A - B": r.loc[SPLIT_ROWS[2], c] - r.loc[SPLIT_ROWS[3], c], "sd over halvings": sd[c]})
        return pd.DataFrame(rows)

    def markdown(self) -> str:
        """The table of the calibration-shift results page."""
        names = self.models
        sd = self.sd.set_index("task")
        out = ["| task | split | n | mean tokens | label share | " + " | ".join(f"acc {n}" for n in names) + " |\n"
               + "|---" * (5 + len(names)) + "|"]
        for task, g in self.frame.groupby("task", sort=False):
            r = g.set_index("split")
            for split in SPLIT_ROWS:
                x = r.loc[split]
                out.append(f"| {task} | {split} | {int(x['n'])} | {x['tokens']:.1f} | {x['pos']:.3f} | "
                           + " | ".join(f"{x[n]:.3f}" for n in names) + " |")
            c, t, a, b = (r.loc[s] for s in SPLIT_ROWS)
            s = sd.loc[task]
            out.append(f"| {task} | **cal - test** | | {c['tokens'] - t['tokens']:+.1f} | {c['pos'] - t['pos']:+.3f} | "
                       + " | ".join(f"{c[n] - t[n]:+.3f}" for n in names) + " |")
            out.append(f"| {task} | **A - B** (sd over halvings) | | {a['tokens'] - b['tokens']:+.1f} "
                       f"({s['tokens']:.1f}) | {a['pos'] - b['pos']:+.3f} ({s['pos']:.3f}) | "
                       + " | ".join(f"{a[n] - b[n]:+.3f} ({s[n]:.3f})" for n in names) + " |")
            out.append(f"| {task} | training seeds | | | | " + " | ".join(f"{int(s[f'seeds {n}'])}" for n in names)
                       + " |")
        return "\n".join(out)

    def label_balance_note(self) -> str:
        """sd of the A - B label share, stratified vs plain permutation (why the halving is stratified)."""
        parts = [f"{task} {s:.3f} vs {u:.3f}" for task, (s, u) in self.label_balance.items()]
        return "sd of the A - B label share over halvings, stratified vs unstratified: " + "; ".join(parts)

    def section(self) -> str:
        """The published section (the table between the cal-shift markers, docs/results/cal-shift.md)."""
        from toolkit.zoo.readme import markers

        start, end = markers(SECTION)
        return f"{start}\n{self.markdown()}\n{end}"

    def _repr_html_(self) -> str:
        return (f"<b>{html.escape(f'Calibration shift (halving seed {self.seed}, {self.n_halvings} halvings)')}</b>"
                + self.frame.to_html(index=False, float_format="{:.3f}".format))

    def __repr__(self) -> str:
        return f"CalShift({self.frame.task.nunique()} tasks, halving seed {self.seed}, {self.n_halvings} halvings)"


def task_shift(data: Path, task: str, *, seed: int = 0, n_halvings: int = 1000) -> tuple[list[dict], dict, tuple]:
    """One task's rows (``SPLIT_ROWS``), the sd of each half-A minus half-B gap over halvings, and the label-share
    sd stratified vs unstratified."""
    caches = _caches(Path(data), task)
    cal, test = (caches[(MODELS[0][0], s)][0] for s in catalogue.SPLITS)
    correct = {split: {name: np.mean([c.correct[:, c.stages.index(stage)] for c in caches[(s, split)]], 0)
                       for s, stage, name in MODELS} for split in catalogue.SPLITS}
    seeds = {name: len({_stage_seed(c, stage) for c in caches[(s, "test")]}) for s, stage, name in MODELS}
    values = {split: {"tokens": c.n_tokens.astype(float), "pos": label_indicator(c.labels, test.n_classes),
                      **correct[split]} for split, c in (("cal", cal), ("test", test))}
    half = dev_halves(test.example_ids, test.labels, seed=seed)
    rows = []
    for name, split, rows_of in ((SPLIT_ROWS[0], "cal", slice(None)), (SPLIT_ROWS[1], "test", slice(None)),
                                 (SPLIT_ROWS[2], "test", half == 0), (SPLIT_ROWS[3], "test", half == 1)):
        v = values[split]
        rows.append({"task": task, "split": name, "n": int(len(v["pos"][rows_of])),
                     **{k: float(x[rows_of].mean()) for k, x in v.items()}})
    stratified = _halvings(test.example_ids, test.labels, n_halvings)
    sd = {"task": task, **{k: halving_sd(x, stratified) for k, x in values["test"].items()}}
    plain = _halvings(test.example_ids, None, n_halvings)
    balance = (sd["pos"], halving_sd(values["test"]["pos"], plain))
    return rows, {**sd, **{f"seeds {k}": v for k, v in seeds.items()}}, balance


def cal_shift(data: Path | None = None, *, tasks=TASKS, seed: int = 0, n_halvings: int = 1000) -> CalShift:
    """The calibration shift of every task in ``tasks`` on the caches in ``data`` (default
    :func:`toolkit.zoo.catalogue.data_dir`); ``seed``: the halving shown as A/B; ``n_halvings``: halvings (seeds
    0..n-1) the sd columns are over."""
    data = Path(data) if data is not None else catalogue.data_dir()
    rows, sds, balance = [], [], {}
    for task in tasks:
        r, sd, b = task_shift(data, task, seed=seed, n_halvings=n_halvings)
        rows += r
        sds.append(sd)
        balance[task] = b
    return CalShift(pd.DataFrame(rows), pd.DataFrame(sds), balance, seed, n_halvings)
