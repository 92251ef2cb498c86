"""The shipped-cache catalogue (toolkit.zoo.catalogue), cross-fitted temperatures (analysis.calibration) and the
notebooks' rendering (toolkit.report): checked against brute force, and no process-wide warning filter anywhere."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from toolkit import report
from toolkit.analysis import engine
from toolkit.analysis.metrics.calibration import DegenerateFitWarning, crossfit_temperatures, fit_temperature
from toolkit.caches.classification import from_arrays, save_cache
from toolkit.zoo import catalogue


def _cache(n: int = 200, stages: int = 3, seed: int = 0, flat_first: bool = False, meta=None):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    signal = (2 * labels - 1)[:, None] * np.linspace(0.3, 2.0, stages)[None]
    z = signal + rng.normal(0, 1.2, (n, stages))
    if flat_first:
        z[:, 0] = 0.0  # no signal in the first exit: its temperature fit runs into a bound
    logits = np.stack([np.zeros_like(z), z], -1)
    return from_arrays(logits, labels, np.arange(1.0, stages + 1), example_ids=[f"e{i}" for i in range(n)],
                       meta=meta)


# ------------------------------------------------------------------------------------------------- catalogue
def test_load_seeds_takes_every_seed_with_both_splits(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_NB_DATA", str(tmp_path))
    (tmp_path / "toy").mkdir()
    for s in (7, 3):
        for split in ("cal", "test"):
            save_cache(_cache(seed=s + (split == "test")), tmp_path / "toy" / f"me-s{s}-{split}.parquet")
    save_cache(_cache(seed=9), tmp_path / "toy" / "me-s9-test.parquet")  # seed 9 has no cal: not taken
    save_cache(_cache(seed=1), tmp_path / "toy" / "me2-s5-test.parquet")  # another set's prefix: not taken
    assert catalogue.seeds_on_disk("toy", "me") == (3, 7)
    sets = catalogue.load_seeds("toy", "me", verbose=False)
    assert sets.per_seed and sets.seeds == (3, 7) and len(sets) == 2 and "2 training seeds (3, 7)" in sets.source
    views = sets.views()
    assert [v.reference for v in views] == ["last exit (stage3)"] * 2
    assert all((v.example_ids == views[0].example_ids).all() for v in views)
    with pytest.raises(ValueError, match="split 'dev'"):
        sets.views("dev")


def test_load_seeds_falls_back_to_the_v1_pair_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_NB_DATA", str(tmp_path))
    (tmp_path / "toy").mkdir()
    meta = {"models": [{"name": "m", "train_seed": 42}]}
    for split in ("cal", "test"):
        save_cache(_cache(meta=meta), tmp_path / "toy" / f"me-{split}.parquet")
    sets = catalogue.load_seeds("toy", "me", verbose=False)
    assert not sets.per_seed and sets.seeds == (42,) and "single-seed files" in sets.source
    with pytest.raises(FileNotFoundError, match="neither per-seed files"):
        catalogue.load_seeds("toy", "absent", verbose=False)


def test_single_seed_reads_the_first_builds_pair_beside_per_seed_files(tmp_path, monkeypatch):
    """Per-seed files of another recipe take over load_seeds; single_seed=True still reads the first build's pair
    (what the slenderized copies were pruned from), and refuses where there is none."""
    monkeypatch.setenv("TOOLKIT_NB_DATA", str(tmp_path))
    (tmp_path / "toy").mkdir()
    first = {"models": [{"name": "m", "train_seed": 42}]}
    for split in ("cal", "test"):
        save_cache(_cache(seed=1, meta=first), tmp_path / "toy" / f"me-{split}.parquet")
        save_cache(_cache(seed=2), tmp_path / "toy" / f"me-s42-{split}.parquet")
        save_cache(_cache(seed=3), tmp_path / "toy" / f"only-s42-{split}.parquet")
    pair = catalogue.load_seeds("toy", "me", verbose=False, single_seed=True)
    assert not pair.per_seed and pair.seeds == (42,) and "chosen over the per-seed files of seeds 42" in pair.source
    assert np.array_equal(pair.test[0].logits, _cache(seed=1).logits)
    assert catalogue.load_seeds("toy", "me", verbose=False).per_seed  # without it, the per-seed files
    with pytest.raises(FileNotFoundError, match=r"no single-seed pair toy/only-\{cal,test\}.parquet.*seeds \(42,\)"):
        catalogue.load_seeds("toy", "only", verbose=False, single_seed=True)


def test_data_dir_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.delenv("TOOLKIT_NB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # neither ./data nor ../data holds a manifest: the checkout's data folder
    assert catalogue.data_dir() == REPO / "data"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "MANIFEST.json").write_text("{}")
    assert catalogue.data_dir() == Path("data")  # the working directory's, when it has one


# ------------------------------------------------------------------------------------------------- temperatures
def test_crossfit_temperatures_equal_per_half_fits():
    cache = _cache(flat_first=True)
    cft = crossfit_temperatures(cache, seed=4)
    a, b = engine.halves(cache.example_ids, seed=4, strata=cache.labels)
    assert sorted(np.concatenate([a, b]).tolist()) == list(range(cache.n_examples))
    for half, fitted in ((a, cft.fitted[0]), (b, cft.fitted[1])):
        for e in range(cache.n_stages):  # one stage, one half at a time
            with warnings.catch_warnings():  # the flat first stage warns; the verdicts are checked below
                warnings.simplefilter("ignore", DegenerateFitWarning)
                want = fit_temperature(cache.logits[half, e], cache.labels[half]).temperature
            assert fitted[e] == pytest.approx(want)
    np.testing.assert_array_equal(cft.per_example[a], np.broadcast_to(cft.fitted[1], (len(a), cache.n_stages)))
    np.testing.assert_array_equal(cft.per_example[b], np.broadcast_to(cft.fitted[0], (len(b), cache.n_stages)))
    assert len(cft.degenerate) == 2 and all(d.startswith(f"stage {cache.stages[0]}:") for d in cft.degenerate)
    scaled = cft.apply(cache)
    np.testing.assert_allclose(scaled.logits, cache.logits / cft.per_example[..., None], rtol=1e-6)
    np.testing.assert_array_equal(scaled.predictions, cache.predictions)
    with pytest.raises(ValueError, match="apply them to the cache they were fitted on"):
        cft.apply(cache.subset(np.arange(10)))
    assert list(cft.to_frame(stages=cache.stages)["stage"]) == list(cache.stages)


# ------------------------------------------------------------------------------------------------- report
def test_setup_sets_no_warning_filter(capsys):
    before = list(warnings.filters)
    report.setup()
    assert warnings.filters == before
    assert "speed-ups against" in capsys.readouterr().out


def _process_wide_filters(path: Path) -> list[int]:
    """Lines of ``warnings.filterwarnings``/``simplefilter`` calls outside a ``with warnings.catch_warnings()``."""
    tree = ast.parse(path.read_text())
    scoped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any("catch_warnings" in ast.unparse(i.context_expr) for i in node.items):
            scoped.update(id(n) for n in ast.walk(node))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("filterwarnings", "simplefilter") and id(n) not in scoped]


@pytest.mark.parametrize("path", sorted((REPO / "toolkit").rglob("*.py")) + sorted((REPO / "notebooks").glob("*.py")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_no_process_wide_warning_filter(path):
    assert not _process_wide_filters(path), \
        f"{path.name}: a warning filter outside `with warnings.catch_warnings()` (lines {_process_wide_filters(path)})"


def test_the_scan_finds_a_process_wide_filter(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("import warnings\nwarnings.filterwarnings('ignore')\nwith warnings.catch_warnings():\n"
                 "    warnings.simplefilter('ignore')\n")
    assert _process_wide_filters(p) == [2]


def test_point_row_and_crossfit_table_are_the_engines_numbers():
    v = engine.staged(_cache(n=300))
    ev = engine.choose(v, rule="drop", max_drop=0.02).evaluate(v, n_boot=50, seed=1)
    row = report.point_row("p", ev)
    assert row["accuracy"] == ev["accuracy"] and (row["accuracy_lo"], row["accuracy_hi"]) == ev.intervals["accuracy"]
    assert row["accuracy_drop"] == pytest.approx(ev.final["accuracy"] - ev["accuracy"]) and row["speedup"] == ev.speedup
    t = report.crossfit_table({"a": v, "b": [v, v]}, rule="drop", max_drop=0.02, n_boot=40, seed=2)
    cf = engine.crossfit(v, rule="drop", max_drop=0.02, n_boot=40, seed=2).combined
    assert list(t.policy) == ["a", "b", "b"] and list(t.seed) == [0, 0, 1]
    assert (t.accuracy == cf["accuracy"]).all() and (t.speedup_lo == cf.intervals["speedup"][0]).all()


def test_operating_points_conclusion_quotes_the_evaluations():
    v = engine.staged(_cache(n=400))
    cf = {r: engine.crossfit(v, rule=r, max_drop=0.02, delta=0.02, n_boot=30).combined for r in ("drop", "risk")}
    oc = {r: engine.choose(v, rule=r, max_drop=0.02, delta=0.02).evaluate(v, n_boot=30) for r in ("drop", "risk")}
    sel = engine.evaluation(v, engine.threshold_on_sweep(engine.sweep(v), rule="drop", max_drop=0.02))
    text = report.operating_points_conclusion(crossfit_drop=cf["drop"], crossfit_risk=cf["risk"], cal_drop=oc["drop"],
                                              cal_risk=oc["risk"], test_selected=sel, max_drop=0.02, split="toy")
    assert text.startswith("**Reading the numbers above.** On toy the last exit is at")
    for x in (f"{cf['drop']['accuracy']:.3f}", f"{cf['drop'].speedup:.2f}x", f"{sel.speedup:.2f}x",
              report.ci(*cf["drop"].intervals["accuracy"]), f"{100 * oc['risk'].drop():.1f} points"):
        assert x in text
    assert ("lands beyond it" in text) == (cf["drop"].speedup > sel.speedup)


def test_report_text_helpers():
    assert report.ci(0.1, 0.25, digits=2) == "[0.10, 0.25]" and report.share(1) == "100.0%"
    assert report.round_frame(pd.DataFrame({"x": [0.12345]})).x[0] == 0.123
    with pytest.raises(ValueError, match="alt text"):
        report.show(None, alt=" ")
