"""Small frictions a newcomer hit (issue 28, item 5): units, wording, reprs, stage numbering, plot axes, packaging."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.caches.classification import from_arrays


def test_from_arrays_default_stage_names_count_from_one():
    c = from_arrays(np.zeros((4, 3, 2)) + [2.0, -1.0], [0, 0, 1, 1], [1.0, 2.0, 3.0])
    assert c.stages == ["stage1", "stage2", "stage3"]


def _dollar_cache(tmp_path, unit="parameters x tokens"):
    from toolkit.caches.classification import save_cache
    from toolkit.testing import random_classification_cache

    c = random_classification_cache(120, 3, 2, seed=0)
    c = from_arrays(c.logits, c.labels, [1.2e6, 3.0e6, 8.5e6], meta={"task": "toy", "split": "test",
                                                                     "cost_unit": unit})
    save_cache(c, tmp_path / "c.parquet")
    return tmp_path / "c.parquet"


def _keys(obj):
    if isinstance(obj, dict):
        return {k for k in obj} | {x for v in obj.values() for x in _keys(v)}
    return {x for v in obj for x in _keys(v)} if isinstance(obj, list) else set()


def test_sweep_json_is_unit_neutral(tmp_path, capsys):
    import json

    from toolkit.cli import main

    assert main(["sweep", str(_dollar_cache(tmp_path)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cost_unit"] == "parameters x tokens" and out["reference_cost"] == 8.5e6  # not 0.0085 "GFLOPs"
    assert not any("gflops" in k.lower() for k in _keys(out))
    assert out["frontier"][0]["flops"] == 1.2e6  # every cost in the cache's own unit
    assert main(["sweep", str(_dollar_cache(tmp_path)), "--rows", "3"]) == 0
    text = capsys.readouterr().out
    assert "8.5e+06 parameters x tokens per example" in text and "GFLOPs" not in text


def test_speedup_axes_are_log_base_two_with_the_region_below_one_explained(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    from toolkit.analysis.engine import staged, sweep
    from toolkit.analysis.plots import plot_tradeoff
    from toolkit.testing import random_classification_cache

    before = dict(matplotlib.rcParams)
    curve = sweep(staged(random_classification_cache(150, 4, 2, seed=1)))
    fig, ax = plt.subplots()
    assert plot_tradeoff({"early exit": curve}, ax=ax) is ax
    fig.canvas.draw()
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    shown = {t.get_text() for t in ax.get_xticklabels() if t.get_text()}
    assert {"1x", "2x", "4x"} <= shown
    left, right = ax.get_xlim()
    assert left < 1 and right >= curve.frame["speedup"].max()
    below = [t.get_text() for t in ax.get_legend().get_texts() if t.get_text().startswith("below 1x")]
    assert below == ["below 1x: costs more than last exit (stage4)"]
    assert dict(matplotlib.rcParams) == before  # no global style touched
    lin = plot_tradeoff({"early exit": curve}, log_speedup=False)
    assert lin.get_xscale() == "linear" and plot_tradeoff({"c": curve}, x="flops").get_xscale() == "linear"
    plt.close("all")


def test_toolkit_plot_draws_speedups_on_a_log_axis(tmp_path):
    from toolkit.cli import build_parser, main
    from toolkit.cli.plot import figure

    path = _dollar_cache(tmp_path)
    a = build_parser().parse_args(["plot", str(path), "--cal", "none", "--n-boot", "20", "--out", "x.png"])
    fig, _ = figure(a)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and any(t.get_text().startswith("below 1x") for t in ax.get_legend().get_texts())
    assert main(["plot", str(path), "--cal", "none", "--n-boot", "20", "--out", str(tmp_path / "f.png")]) == 0


def test_info_says_what_data_verified_means(tmp_path, capsys, monkeypatch):
    from toolkit.caches.classification import save_cache
    from toolkit.cli import main

    path = _dollar_cache(tmp_path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "data verified" not in out and "False" not in out
    assert "examples checked against the data folder: no (the cache names no source files" in out
    monkeypatch.setenv("TOOLKIT_DATA_DIR", str(tmp_path / "nowhere"))
    c = from_arrays(np.zeros((4, 2, 2)) + [2.0, -1.0], [0, 0, 1, 1], [1.0, 2.0],
                    meta={"task": "sst2", "split": "test", "data": {"source": "local", "data_dir": str(tmp_path),
                                                                   "files": {"sst2/train.tsv": "0" * 64}}})
    save_cache(c, tmp_path / "named.parquet")
    assert main(["info", str(tmp_path / "named.parquet"), "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["data_verified"] is False and "no data folder holding its 1 source file(s) was found" in out[
        "data_check"]


def _results():
    from toolkit.analysis import engine as en
    from toolkit.testing import random_classification_cache

    cal = en.staged(random_classification_cache(300, 4, 2, seed=1, split="cal"))
    test = en.staged(random_classification_cache(300, 4, 2, seed=2))
    op = en.choose(cal, rule="drop", max_drop=0.02)
    return en, cal, test, op, op.evaluate(test, n_boot=50)


def _readable(text: str, title: str, max_lines: int = 40, width: int = 120) -> list[str]:
    lines = text.splitlines()
    assert lines[0].startswith(title) and 3 <= len(lines) <= max_lines, text
    assert max(map(len, lines)) <= width, text
    return lines


def test_script_reprs_of_engine_results_are_readable_tables():
    en, cal, test, op, ev = _results()
    lines = _readable(repr(ev), "Evaluation on test (speed-up against last exit (stage4); cost in FLOPs)")
    acc = next(x for x in lines if x.startswith("accuracy "))
    lo, hi = ev.intervals["accuracy"]
    assert acc.split()[1:] == [f"{ev['accuracy']:.4g}", f"[{lo:.4g},", f"{hi:.4g}]"]  # interval beside the value
    assert "<b>" in ev._repr_html_()  # notebooks keep the HTML table
    summary = en.summarize(en.sweep(test))
    lines = _readable(repr(summary), "Summary")
    assert any(x.split() == ["auc", f"{summary.auc:.4g}"] for x in lines)


def test_script_reprs_of_choices_are_readable_tables():
    from toolkit.analysis.operating import operating_point
    from toolkit.testing import random_classification_cache

    en, cal, test, op, ev = _results()
    lines = _readable(repr(op), "Operating point (chosen on cal")
    assert any(x.split() == ["threshold", f"{op.threshold:.4g}"] for x in lines)
    fit = en.crossfit(test, rule="drop", max_drop=0.02, n_boot=20)
    lines = _readable(repr(fit), "Cross-fit")
    assert lines[1].split() == ["fold", "1", "(A", "->", "B)", "fold", "2", "(B", "->", "A)", "combined"]
    assert "nan" not in repr(fit)  # folds carry no intervals: shown without brackets
    report = operating_point(random_classification_cache(200, 3, 2, seed=3, split="cal"),
                             random_classification_cache(200, 3, 2, seed=4))
    _readable(repr(report), "Operating point: chosen on cal, evaluated on test")


def test_script_reprs_of_latency_results_are_readable_tables():
    from toolkit.analysis.cost.latency import TimeBudgetChoice, speedup_agreement

    agree = speedup_agreement([f"case {i}" for i in range(30)], np.linspace(1, 4, 30), np.linspace(1.1, 4.2, 30))
    lines = _readable(repr(agree), "Predicted vs measured speed-ups, 30 cases: median relative error", max_lines=30)
    assert lines[-1].strip().startswith("...") and "to_frame()" in lines[-1]  # truncated, and says where the rest is
    op = _results()[3]
    choice = TimeBudgetChoice(op, ("batch 1", "batch 8"), (1.0, 2.0), (0.9, 1.5), (2.0, 3.0), "batch 1")
    lines = _readable(repr(choice), f"Operating point within a time budget (chosen on cal): threshold "
                                    f"{op.threshold:.4g}, binding view 'batch 1'")
    assert lines[1].split()[:3] == ["view", "budget_ms", "cal_ms"] and len(lines) == 4


def test_script_reprs_of_calibration_and_speculative_choices():
    import pandas as pd

    from toolkit.analysis.llm.exits import SpeculativeChoice
    from toolkit.analysis.metrics.calibration import crossfit_temperatures
    from toolkit.testing import random_classification_cache

    cft = crossfit_temperatures(random_classification_cache(200, 3, 2, seed=5), seed=0)
    assert list(cft.to_frame()["stage"]) == [1, 2, 3]  # stage numbers count from 1
    lines = _readable(repr(cft), "Cross-fitted temperatures (halves of ")
    assert len(lines) == 5 and lines[1].split()[:2] == ["stage", "T"]
    table = pd.DataFrame({"layer": [4, 4, 8], "draft_length": [1, 2, 1], "memory_bound_speedup": [1.1, 1.3, 0.9],
                          "speedup": [1.0, 1.2, 0.8], "acceptance": [0.5, 0.6, 0.7]})
    lines = _readable(repr(SpeculativeChoice("tuned", 4, 2, table)), "Self-speculative pair (chosen on cal")
    assert ["cal_memory_bound_speedup", "1.3"] in [x.split() for x in lines]


def _project():
    from pathlib import Path

    import pytest

    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]


def _closure(extras: dict, name: str, project: str) -> set[str]:
    """Requirement names an extra pulls in, following the project's own extras (``project[a,b]``)."""
    import re

    out = set()
    for req in extras[name]:
        m = re.match(r"([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?", req)
        if m.group(1) == project:
            out |= {x for e in m.group(2).split(",") for x in _closure(extras, e.strip(), project)}
        else:
            out.add(m.group(1).lower())
    return out


def test_the_distribution_has_a_specific_name_and_is_imported_as_toolkit():
    import toolkit
    from toolkit.data.provenance import DISTRIBUTION, package_versions

    project = _project()
    assert project["name"] == DISTRIBUTION == "adaptive-inference-toolkit"
    assert package_versions()["toolkit"] == toolkit.__version__  # found whatever the distribution is called
    reqs = [r for extra in project["optional-dependencies"].values() for r in extra]
    assert sum(r.startswith(f"{DISTRIBUTION}[") for r in reqs) == 2  # notebooks and dev take other extras
    assert not [r for r in reqs if r.startswith("toolkit[")]


def test_docs_and_notebooks_extras_are_light_and_dev_holds_them():
    project = _project()
    extras, name = project["optional-dependencies"], project["name"]
    heavy = {"jupyterlab", "playwright", "hypothesis", "ruff", "pytest"}
    docs, notebooks, dev = (_closure(extras, e, name) for e in ("docs", "notebooks", "dev"))
    assert {"mkdocs", "mkdocs-material", "mkdocstrings", "mkdocs-jupyter"} <= docs and not docs & (heavy | {"torch"})
    assert {"nbconvert", "jupytext", "ipykernel", "ipywidgets"} <= notebooks and not notebooks & heavy
    assert docs | notebooks <= dev


def test_policy_result_repr_says_where_examples_stopped():
    from toolkit.analysis.policies import early_exit
    from toolkit.testing import random_classification_cache

    c = random_classification_cache(100, 3, 2, seed=6)
    r = early_exit(c, 0.8)
    counts = np.bincount(r.exit_stage, minlength=3)
    text = repr(r)
    assert text.startswith("PolicyResult: 100 examples") and "\n" not in text and "array(" not in text
    assert all(f"stage {e + 1}: {n}" in text for e, n in enumerate(counts) if n)


def test_calm_time_curves_repr_is_a_short_table():
    import pandas as pd

    from toolkit.analysis.cost.latency import CalmTimeCurves
    from toolkit.analysis.engine import Curve

    def curve(speedups):
        return Curve(pd.DataFrame({"threshold": [np.inf, 0.9, 0.5], "agreement": [1.0, 0.95, 0.7],
                                   "speedup": speedups}), "agreement", "full model", 3)

    tc = CalmTimeCurves(curve([1.0, 1.4, 2.0]), {1: curve([1.0, 1.2, 1.5])}, "lens, checked layers 4,8", "toy")
    lines = _readable(repr(tc), "CALM in FLOPs and predicted time (lens, checked layers 4,8; profile toy)")
    assert lines[-2].rsplit(None, 1) == ["best speed-up at agreement >= 0.9, upper bound (FLOPs)", "1.4"] and len(lines) == 4


def test_info_says_what_a_verified_cache_was_checked_for():
    """A verified cache (classification or LLM tokens) was checked for rows and labels, not only file hashes."""
    from pathlib import Path

    import toolkit
    from toolkit.cli.info import data_check

    data = Path(__file__).resolve().parents[1] / "data"
    for rel in ("sst2/minilm6_me-test.parquet", "llm/smollm2_sst2_sentiment-test.parquet"):
        path = data / rel
        if not path.exists():
            pytest.skip(f"{path} not shipped")
        cache = toolkit.load(path)
        if not cache.meta.get("data_verified"):
            pytest.skip("../shared/data not found: shipped caches cannot be verified here")
        said = data_check(cache)
        assert said.startswith("yes") and "row of its split" in said and "label" in said, said
