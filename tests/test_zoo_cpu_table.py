"""The CPU zoo's CPU-seconds table (toolkit.zoo.cpu): exact sums from a hand-made manifest, unknown parts shown as
unknown (never a number), borrowed members not counted, one collect job counted once for its cal and test caches."""

import json

import numpy as np
import pytest

from toolkit.zoo import cpu_spent, cpu_table, cpu_totals


def _model(name, cpu=None, *, device="cpu", borrowed=None, objective="joint"):
    rec = {"name": name, "objective": objective, "device": device, "train_wall_s": 1.0}
    if cpu is not None:
        rec["train_cpu_s"] = cpu
    if borrowed:
        rec = {"name": name, "borrowed_from": borrowed}
    return rec


def _entry(split, seed, models, collect=None):
    e = {"split": split, "train_seed": seed, "models": models, "stage_metrics": []}
    if collect is not None:
        e["collect_cpu_s"] = collect
    return e


def _write(tmp_path, caches):
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"caches": caches}))
    return tmp_path


@pytest.fixture
def data(tmp_path):
    mpnet = _model("mpnet", borrowed="mrpc/mpnet_me-test")
    known = [_model("minilm-l2", 300.0), _model("minilm-l6", 900.0), mpnet]
    part = [_model("minilm-l2-da", None, objective="ranking"), _model("minilm-l6-da", 1800.0, objective="ranking"), mpnet]
    caches = {}
    for split in ("cal", "test"):  # one collect job makes both: 36.0 must count once
        caches[f"mrpc/cascade-s43-{split}"] = _entry(split, 43, known, collect=36.0)
        caches[f"mrpc/cascade_da-s42-{split}"] = _entry(split, 42, part, collect=20.0)
        caches[f"mrpc/minilm6_me-s44-{split}"] = _entry(split, 44, [_model("minilm6_me", None)])
        caches[f"mrpc/cascade-s45-{split}"] = _entry(split, 45, [_model("minilm-l2", 5.0, device="cuda"), mpnet], 1.0)
    caches["mrpc/cascade-test"] = {"split": "test", "models": [_model("minilm-l2", 7.0)]}  # v1: no train_seed
    return _write(tmp_path, caches)


def test_spent_rows_and_totals(data):
    spent = cpu_spent(data)
    assert spent[["set", "seed", "part", "member"]].fillna("").values.tolist() == [
        ["cascade", 43, "train", "minilm-l2"], ["cascade", 43, "train", "minilm-l6"], ["cascade", 43, "collect", ""],
        ["cascade_da", 42, "train", "minilm-l2-da"], ["cascade_da", 42, "train", "minilm-l6-da"],
        ["cascade_da", 42, "collect", ""], ["minilm6_me", 44, "train", "minilm6_me"], ["minilm6_me", 44, "collect", ""]]
    assert np.isnan(spent["cpu_s"].iloc[3]) and spent["cpu_s"].iloc[4] == 1800.0  # unknown stays NaN
    t = cpu_totals(spent)
    assert t.loc[("mrpc", "cascade", 43)].to_dict() == {"known_cpu_s": 1236.0, "n_unknown": 0, "cpu_s": 1236.0,
                                                         "cpu_hours": 1236.0 / 3600}
    row = t.loc[("mrpc", "cascade_da", 42)]
    assert (row["known_cpu_s"], row["n_unknown"]) == (1820.0, 1) and np.isnan(row["cpu_s"])
    assert t.loc[("mrpc", "minilm6_me", 44), "n_unknown"] == 2


def test_table_exact(data):
    assert cpu_table(data).splitlines() == [
        "| task | set | seed | trained members: CPU s (device) | collect CPU s | total CPU s | CPU-hours |",
        "|---|---|---|---|---|---|---|",
        "| mrpc | cascade | 43 | minilm-l2 300.0 (cpu); minilm-l6 900.0 (cpu) | 36.0 | 1,236.0 | 0.34 |",
        "| mrpc | cascade_da | 42 | minilm-l2-da – (cpu); minilm-l6-da 1,800.0 (cpu) | 20.0 | ≥ 1,820.0 | ≥ 0.51 |",
        "| mrpc | minilm6_me | 44 | minilm6_me – (cpu) | – | – | – |",
        "",
        "Total: 0.34 CPU-hours over the sets with every part known (1); sets with unknown parts: 2, whose known "
        "parts add 0.51 CPU-hours (a lower bound)."]


def test_cal_and_test_collect_disagree(data):
    caches = json.loads((data / "MANIFEST.json").read_text())["caches"]
    caches["mrpc/cascade-s43-cal"]["collect_cpu_s"] = 37.0
    with pytest.raises(ValueError, match="cascade-s43-test and its cal twin"):
        cpu_spent(_write(data, caches))


def test_no_cpu_zoo_entries(tmp_path):
    _write(tmp_path, {"mrpc/cascade-test": {"split": "test", "models": []}})
    assert cpu_spent(tmp_path).empty
    assert cpu_table(tmp_path).splitlines()[-1].startswith("Total: 0.00 CPU-hours over the sets with every part known (0);")
