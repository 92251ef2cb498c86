"""The analysis commands on the shipped caches: units, named references, valid JSON, the top of the frontier,
figures, and arguments refused by the parser."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toolkit.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
CASCADE = DATA / "sst2" / "cascade-test.parquet"
T2T = DATA / "sst2" / "t2t-test.parquet"
pytestmark = pytest.mark.skipif(not CASCADE.exists(), reason="no shipped caches")


def _json(text):
    def no_nan(x):
        raise ValueError(f"non-standard JSON constant {x}")

    return json.loads(text, parse_constant=no_nan)


def test_sweep_reports_speedups_against_the_last_member_alone(capsys):
    assert main(["sweep", str(CASCADE), "--json"]) == 0
    out = _json(capsys.readouterr().out)
    assert out["reference"] == "mpnet alone"
    import toolkit

    c = toolkit.load_cache(CASCADE)
    mpnet = (c.flops[:, 2] - c.flops[:, 1]).mean()
    assert out["reference_cost"] == pytest.approx(mpnet) and out["cost_unit"] == "FLOPs"
    assert main(["sweep", str(CASCADE), "--json", "--reference", "all"]) == 0
    every = _json(capsys.readouterr().out)
    assert every["reference"] == "every stage in turn"
    ratio = every["summary"]["speedup_at_drop_upper_bound"] / out["summary"]["speedup_at_drop_upper_bound"]
    assert ratio == pytest.approx(c.flops[:, 2].mean() / mpnet)
    # the frontier's top (most accurate) row is listed
    top = max(r["accuracy"] for r in out["frontier"])
    assert out["frontier"][-1]["accuracy"] == top == pytest.approx(out["summary"]["best_upper_bound"])


def test_sweep_text_has_units_and_the_top_row(capsys):
    assert main(["sweep", str(CASCADE), "--rows", "3"]) == 0
    text = capsys.readouterr().out
    assert "speed-ups against mpnet alone: 4.302 GFLOPs per example" in text
    assert "upper bound" in text and "GFLOPs" in text and "x " in text and "%" in text
    rows = text.split("cheapest to most accurate):\n")[1].strip().splitlines()
    assert len(rows) == 4 and rows[-1].split()[1] == "0.9232"  # header + 3 rows, the last is the top
    assert "e+0" not in text  # no raw FLOPs in e-notation


def test_route_and_info_on_a_generation_cache(capsys, tmp_path):
    assert main(["route", str(T2T), "--score", "max_prob", "--json", "--compare"]) == 0
    out = _json(capsys.readouterr().out)
    assert out["reference"] == "super alone" and "oracle" in out["references"] and len(out["routers"]) == 20
    assert main(["sweep", str(T2T), "--score", "energy", "--csv", str(tmp_path / "s.csv")]) == 0
    assert "speed-ups against super alone" in capsys.readouterr().out and (tmp_path / "s.csv").exists()
    assert main(["route", str(T2T), "--rows", "2"]) == 0
    text = capsys.readouterr().out
    assert "super alone" in text and "e+0" not in text and "GFLOPs" in text
    assert main(["info", str(T2T), "--json"]) == 0
    assert [r["model"] for r in _json(capsys.readouterr().out)["rows"]] == ["swift", "super"]
    assert main(["route", str(CASCADE)]) == 2
    assert "route reads generation caches" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["png", "svg", "pdf"])
def test_plot_writes_figures_with_the_chosen_point(tmp_path, capsys, suffix):
    out = tmp_path / f"f.{suffix}"
    assert main(["plot", str(CASCADE), "--out", str(out), "--n-boot", "50", "--json"]) == 0
    shown = _json(capsys.readouterr().out)
    assert out.stat().st_size > 1000 and shown["reference"] == "mpnet alone"
    op = shown["operating_point"]
    assert op["rule"] == "risk" and op["cal_n"] == 2000 and op["test_split"] == "test"
    assert np.isfinite(op["test_speedup"]) and op["test_speedup_lo"] <= op["test_speedup"] <= op["test_speedup_hi"]


def test_plot_generation_and_refusals(tmp_path, capsys):
    assert main(["plot", str(T2T), "--out", str(tmp_path / "g.png"), "--score", "max_prob", "--rule", "budget",
                 "--budget", "3", "--rule-metric", "exact_match", "--n-boot", "20"]) == 0
    assert "chosen on cal by budget" in capsys.readouterr().out
    assert main(["plot", str(CASCADE), "--out", str(tmp_path / "g.gif")]) == 2
    assert "png, .svg or .pdf" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["sweep", "x.parquet", "--rows", "0"], "must be >= 1"),
    (["plot", "x.parquet", "--out", "f.png", "--delta", "1.5"], "must be < 1"),
    (["sweep", "x.parquet", "--score", "confidence"], "invalid choice"),
    (["sweep", "x.parquet", "--temperature", "nan"], "not a finite number"),
])
def test_parser_refuses_bad_values(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_version(capsys):
    import toolkit

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"toolkit {toolkit.__version__}"


def test_sweep_reads_llm_token_caches(capsys):
    """`toolkit sweep` on a per-token LLM cache: CALM-style exit of one family at the checked layers, the engine's
    summary exactly."""
    import json
    from pathlib import Path

    from toolkit.analysis.engine import staged, summarize, sweep
    from toolkit.caches.tokens import load_llm_cache
    from toolkit.cli import main

    path = Path(__file__).resolve().parents[1] / "data" / "llm" / "smollm2_sst2_sentiment-test.parquet"
    assert main(["sweep", str(path), "--family", "tuned", "--checked-layers", "3", "9", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    view = staged(load_llm_cache(path), family="tuned", checked_layers=[3, 9])
    want = summarize(sweep(view))
    assert out["stages"] == ["L3", "L9", "L30"] and out["n"] == view.n_examples
    assert out["summary"]["speedup_at_drop_upper_bound"] == pytest.approx(want.speedup_at_drop_upper_bound)
    assert main(["sweep", str(path), "--family", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
