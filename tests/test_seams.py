"""Issue 26: hostile tests of the seams (invariants on load, bring-your-own entry points, identity checks where
two caches meet, the CLI going through the library's checks). Each test names the finding it covers; each fails
on 28afd11 (checked by running this file against that commit)."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.caches.io import CacheError, read_cache_table, write_cache_table
from toolkit.caches.tokens import LLMTokenCache, load_llm_cache, save_llm_cache

DIMS = dict(layers=3, hidden=8, heads=2, kv_heads=1, head_dim=4, intermediate=16, vocab=50)


def llm_cache(N=4, L=3, seed=0, stats_dtype="float32", **changes) -> LLMTokenCache:
    """A valid token cache whose statistics obey every inequality; ``changes`` replace constructor arguments."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 5, N)
    S = int(lengths.sum())
    tokens = rng.integers(0, 50, S).astype(np.int32)
    top1 = np.repeat(tokens[:, None], L, 1).astype(np.int32)
    top1[:, 0] = (tokens + 1) % 50
    mx = rng.normal(5, 2, (S, L))
    stats = np.stack([mx, mx - rng.exponential(1, (S, L)), mx + rng.exponential(0.5, (S, L)),
                      rng.exponential(1, (S, L))], -1).astype(np.float32)
    args = dict(example_ids=np.array([f"t:test:{i}" for i in range(N)]), labels=rng.integers(0, 2, N),
                n_prompt=rng.integers(3, 9, N).astype(np.int32), tokens=tokens,
                offsets=np.concatenate([[0], np.cumsum(lengths)]), top1={"lens": top1}, stats={"lens": stats},
                temperatures=(1.0,), model={"path": "toy", "dims": dict(DIMS, layers=L)}, stats_dtype=stats_dtype,
                meta={"task": "sst2", "split": "test", "decoding": {"max_new_tokens": 8}})
    return LLMTokenCache(**{**args, **changes})


def _with_stats(c: LLMTokenCache, fn) -> dict:
    st = c.stats["lens"].copy()
    fn(st)
    return {"stats": {"lens": st}}


# ------------------------------------------------------------------------------- 2. invariants on load (LLM caches)
@pytest.mark.parametrize("what,fn", [
    ("lse@1 below max_logit", lambda st: st.__setitem__((0, 0, 2), st[0, 0, 0] - 3.0)),
    ("entropy@1 negative", lambda st: st.__setitem__((0, 1, 3), -0.5)),
    ("second_logit above max_logit", lambda st: st.__setitem__((1, 0, 1), st[1, 0, 0] + 2.0)),
])
def test_impossible_token_statistics_are_refused(tmp_path, what, fn):
    c = llm_cache()
    with pytest.raises(CacheError, match=what.split()[0]):
        llm_cache(**_with_stats(c, fn))
    path = save_llm_cache(c, tmp_path / "ok.parquet")
    table, head = read_cache_table(path, kind="llm_tokens", schema_version=2)
    import pyarrow as pa

    st = c.stats["lens"].copy()
    fn(st)
    col = pa.ListArray.from_arrays(pa.array((c.offsets * 3 * 4).astype(np.int32)), pa.array(st.reshape(-1)))
    bad = write_cache_table(table.set_column(table.column_names.index("lens/stats"), "lens/stats", col),
                            tmp_path / "bad.parquet", head)
    with pytest.raises(CacheError, match=rf"bad\.parquet.*{what.split()[0]}"):
        load_llm_cache(bad)


def test_float16_rounding_is_tolerated():
    """lse == max (one token holds all the mass) rounded to float16 on both sides still loads."""
    c = llm_cache(stats_dtype="float16")
    st = c.stats["lens"].copy()
    st[..., 2] = st[..., 0] - np.float32(0.004) * np.abs(st[..., 0]) * 0.1  # within float16 rounding
    st[..., 3] = -1e-4
    llm_cache(stats_dtype="float16", stats={"lens": st})


@pytest.mark.parametrize("field,value,match", [
    ("tokens", lambda c: np.where(np.arange(c.n_tokens) == 0, -1, c.tokens).astype(np.int32), "token ids"),
    ("tokens", lambda c: np.where(np.arange(c.n_tokens) == 0, 50, c.tokens).astype(np.int32), "token ids"),
    ("top1", lambda c: {"lens": np.where(np.arange(3) == 0, 77, c.top1["lens"]).astype(np.int32)}, "top-1 ids"),
    ("top1", lambda c: {"lens": np.where(np.arange(3) == 0, -5, c.top1["lens"]).astype(np.int32)}, "top-1 ids"),
    ("model", lambda c: {"path": "toy", "dims": dict(DIMS, vocab=10)}, "vocab"),
    ("temperatures", lambda c: (0.0,), "temperatures"),
    ("temperatures", lambda c: (-1.0,), "temperatures"),
    ("temperatures", lambda c: (float("nan"),), "temperatures"),
    ("labels", lambda c: c.labels.astype(np.float64) + 0.5, "labels must be integers"),
    ("n_prompt", lambda c: c.n_prompt.astype(np.float64) + 0.7, "n_prompt must be integers"),
    ("families", lambda c: ["lens"], "families"),
    ("meta", lambda c: {"decoding": "greedy"}, "decoding"),
    ("meta", lambda c: {"decoding": {"max_new_tokens": "8"}}, "max_new_tokens"),
    ("model", lambda c: {"path": "toy", "dims": [3, 8]}, "model.dims"),
])
def test_token_cache_values_and_header_structures_are_checked(field, value, match):
    c = llm_cache()
    if field == "tokens":  # keep the last layer equal to the tokens, so only the id range is wrong
        t = value(c)
        top1 = c.top1["lens"].copy()
        top1[:, -1] = t
        changes = {"tokens": t, "top1": {"lens": np.clip(top1, 0, None)}}
    else:
        changes = {field: value(c)}
    with pytest.raises(CacheError, match=match):
        llm_cache(**changes)


def _rewrite(tmp_path, c, *, columns=None, header=None, name="bad.parquet"):
    path = save_llm_cache(c, tmp_path / "ok.parquet")
    table, head = read_cache_table(path, kind="llm_tokens", schema_version=2)
    for k, col in (columns or {}).items():
        table = table.set_column(table.column_names.index(k), k, col)
    return write_cache_table(table, tmp_path / name, {**head, **(header or {})})


def test_float_labels_and_prompt_lengths_in_a_file_are_not_truncated(tmp_path):
    import pyarrow as pa

    c = llm_cache()
    for k, v in (("label", c.labels + 0.5), ("n_prompt", c.n_prompt + 0.7)):
        bad = _rewrite(tmp_path, c, columns={k: pa.array(v.astype(np.float64))})
        with pytest.raises(CacheError, match=rf"bad\.parquet.*{k}"):
            load_llm_cache(bad)


def test_per_row_list_boundaries_must_agree(tmp_path):
    """Rows 0 and 1 trade statistics (totals unchanged): the old loader flattened and reshaped, silently."""
    import pyarrow as pa

    c = llm_cache()
    width = 3 * 4
    off = (c.offsets * width).astype(np.int32)
    off[1] += width  # row 0 claims one token's statistics of row 1
    col = pa.ListArray.from_arrays(pa.array(off), pa.array(c.stats["lens"].reshape(-1)))
    bad = _rewrite(tmp_path, c, columns={"lens/stats": col})
    with pytest.raises(CacheError, match=r"bad\.parquet.*boundaries"):
        load_llm_cache(bad)


def test_stats_dtype_must_match_the_column(tmp_path):
    bad = _rewrite(tmp_path, llm_cache(), header={"stats_dtype": "float16"})  # column stays float32
    with pytest.raises(CacheError, match=r"bad\.parquet.*stats_dtype"):
        load_llm_cache(bad)


@pytest.mark.parametrize("header,key", [({"temperatures": ["hot"]}, "temperatures"),
                                        ({"temperatures": [0.0]}, "temperatures"),
                                        ({"model": {"path": "toy", "dims": "big"}}, "model.dims"),
                                        ({"model": {"path": "toy", "dims": dict(DIMS, heads=None)}}, "model.dims"),
                                        ({"families": ["lens"]}, "families"),
                                        ({"meta": {"decoding": [32]}}, "decoding")])
def test_header_structures_are_checked_at_load_with_the_file_name(tmp_path, header, key):
    bad = _rewrite(tmp_path, llm_cache(), header=header)
    with pytest.raises(CacheError, match=rf"bad\.parquet.*{key}"):
        load_llm_cache(bad)


# ------------------------------------------------------------------------------- 3. bring-your-own entry points
from toolkit.caches.classification import from_arrays  # noqa: E402


def _two_class(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    lg = rng.normal(size=(n, 2, 2))
    lg[np.arange(n), :, y] += 1.0
    return lg, y


def test_a_float32_cast_that_flips_a_prediction_is_refused():
    with pytest.raises(CacheError, match="changes the prediction"):
        from_arrays(np.array([[[1e8, 1e8 + 3]]]), [1], [1.0])
    assert from_arrays(np.array([[[0.0, 3.0]]]), [1], [1.0]).predictions.tolist() == [[1]]  # centred: kept


@pytest.mark.parametrize("logits", [np.array([[[1, 2]]], dtype=complex), np.array([[[True, False]]]),
                                    np.array([[["1.0", "2.0"]]]), np.array([[[1.0, 2.0]]], dtype=object)])
def test_complex_bool_string_and_object_logits_are_refused(logits):
    with pytest.raises(CacheError, match="real numbers"):
        from_arrays(logits, [1], [1.0])


def test_numeric_string_costs_are_refused():
    with pytest.raises(CacheError, match="real numbers"):
        from_arrays(np.array([[[1.0, 2.0]]]), [1], ["1"])


def test_probabilities_given_as_logits_are_refused_with_the_explicit_path():
    p = np.random.default_rng(0).dirichlet([1.0, 1.0, 1.0], size=(12, 2))  # 24 rows in [0, 1] summing to 1
    with pytest.raises(CacheError, match="from_probabilities"):
        from_arrays(p, np.zeros(12, int), [1.0, 2.0])
    with pytest.warns(UserWarning, match="from_probabilities"):  # three rows: too little evidence to refuse
        from_arrays(np.array([[[0.2, 0.8]], [[0.9, 0.1]], [[0.6, 0.4]]]), [1, 0, 0], [1.0])


def test_minus_infinity_logits_get_a_clear_message():
    with pytest.raises(CacheError, match="-inf.*from_log_probs"):
        from_arrays(np.array([[[0.0, -np.inf]], [[1.0, 2.0]]]), [0, 1], [1.0])


@pytest.mark.parametrize("flops", [[0.0, 0.0], [0.0, 2.0]])
def test_a_stage_that_costs_nothing_is_refused(flops):
    lg, y = _two_class()
    with pytest.raises(CacheError, match="costs nothing"):
        from_arrays(lg, y, flops)


def test_a_nan_threshold_is_not_never_exit():
    from toolkit.analysis.engine import evaluation, from_classification

    lg, y = _two_class()
    with pytest.raises(ValueError, match="threshold is NaN"):
        evaluation(from_classification(from_arrays(lg, y, [1.0, 2.0])), np.nan)


@pytest.mark.parametrize("kw,match", [({"n_boot": 2.5}, "n_boot must be an integer"),
                                      ({"n_boot": 1}, "one resample is not an interval"),
                                      ({"n_boot": 50, "ci": 1.5}, "ci must be a coverage"),
                                      ({"n_boot": 50, "ci": 0.0}, "ci must be a coverage")])
def test_bootstrap_settings_get_clear_messages(kw, match):
    from toolkit.analysis.engine import crossfit, evaluation, from_classification

    lg, y = _two_class()
    s = from_classification(from_arrays(lg, y, [1.0, 2.0]))
    with pytest.raises(ValueError, match=match):
        evaluation(s, 0.7, **kw)
    with pytest.raises(ValueError, match=match):
        crossfit(s, rule="budget", budget=1.2, **kw)


def test_a_tiny_temperature_gets_a_clear_message():
    from toolkit.analysis.engine import from_classification

    lg, y = _two_class()
    with pytest.raises(ValueError, match="too small for these logits"):
        from_classification(from_arrays(lg, y, [1.0, 2.0]), temperature=1e-310)


def test_crossfit_on_one_example_says_why():
    from toolkit.analysis.engine import crossfit, from_classification

    lg, y = _two_class()
    s = from_classification(from_arrays(lg, y, [1.0, 2.0])).subset([0])
    with pytest.raises(ValueError, match="two non-empty halves"):
        crossfit(s, rule="budget", budget=1.2)


# ------------------------------------------------------------------------------- 1. identity where two caches meet
def _cache(task="sst2", split="test", n=60, C=2, seed=0, models=("minilm6_me",), ids=None, labels=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n) if labels is None else labels
    lg = rng.normal(size=(n, 3, C))
    lg[np.arange(n), :, y] += np.linspace(0.5, 2.0, 3)
    meta = {"task": task, "split": split, "models": [{"name": m, "path": f"runs/{task}/{m}/final"} for m in models]}
    return from_arrays(lg, y, [1.0, 2.0, 3.0], meta=meta, example_ids=ids)


def _view(c, **kw):
    from toolkit.analysis.engine import from_classification

    return from_classification(c, **kw)


@pytest.mark.parametrize("other,match", [
    (lambda: _cache(task="mrpc", seed=1), "different tasks"),
    (lambda: _cache(split="cal", seed=1), "different splits"),
    (lambda: _cache(C=3, seed=1), "class counts"),
    (lambda: _cache(task=None, split=None, seed=5), "gold labels differ"),  # ids 0..N-1 on both, other data
    (lambda: _cache(n=40, seed=1, labels=_cache().labels[:40]), "different examples.*subset=True"),
])
@pytest.mark.parametrize("fn", ["compare", "compare_speedups", "compare_crossfit"])
def test_compare_refuses_two_sides_about_different_things(other, match, fn):
    from toolkit.analysis import engine

    a, b = _view(_cache()), _view(other())
    kw = {"rule": "budget", "budget": 1.2} if fn == "compare_crossfit" else {}
    with pytest.raises(ValueError, match=match):
        getattr(engine, fn)(a, b, n_boot=20, **kw)
    with pytest.raises(ValueError, match=match):
        getattr(engine, fn)(b, a, n_boot=20, **kw)


def test_compare_allows_other_models_and_a_subset_only_when_asked():
    from toolkit.analysis import engine

    a = _cache()
    other_model = _view(from_arrays(np.random.default_rng(3).normal(size=(60, 3, 2)), a.labels, [1.0, 2.0, 4.0],
                                    meta={**a.meta, "models": [{"name": "mpnet_me"}]}))
    assert len(engine.compare(_view(a), other_model, n_boot=20)) == 3
    part = _view(a).subset(np.arange(40))
    assert len(engine.compare(part, other_model, n_boot=20, subset=True)) == 3


@pytest.mark.parametrize("cal,match", [(lambda: _cache(task="mrpc", split="cal", seed=1), "task"),
                                       (lambda: _cache(split="cal", seed=1, models=("minilm6_me_w50",)), "models"),
                                       (lambda: _cache(split="cal", seed=1, C=3), "class count")])
def test_an_operating_point_moves_only_between_caches_of_one_task_and_models(cal, match):
    from toolkit.analysis.engine import choose

    op = choose(_view(cal()), rule="budget", budget=1.2)
    test = _view(_cache())
    if match == "class count":  # 3 classes: other stages' outcomes, the same stage names
        with pytest.raises(ValueError, match=match):
            op.evaluate(test)
        return
    with pytest.raises(ValueError, match=rf"{match}.*cal.*test"):
        op.evaluate(test)
    assert op.evaluate(test, transfer=True).n == 60  # a deliberate transfer, named


def test_cascade_members_of_different_tasks_or_examples_are_refused():
    from toolkit.caches.compose import cascade_caches

    a = _cache()
    with pytest.raises(CacheError, match="different tasks"):
        cascade_caches([a, _cache(task="mrpc", seed=1)])
    with pytest.raises(CacheError, match="different examples"):
        cascade_caches([a, _cache(n=40, seed=1, labels=a.labels[:40])])
    assert cascade_caches([a, _cache(n=40, seed=1, labels=a.labels[:40])], subset=True).n_examples == 40


def test_the_explorer_refuses_a_cal_of_another_task_or_model():
    pytest.importorskip("ipywidgets")
    from toolkit.analysis.explore.app import explore

    test = _cache()
    for cal, match in ((_cache(task="mrpc", split="cal", seed=1), "task"),
                       (_cache(split="cal", seed=1, models=("minilm6_me_w50",)), "models")):
        with pytest.raises(ValueError, match=match):
            explore(cal, test)
    assert explore(_cache(split="cal", seed=1), test).view is not None


# ------------------------------------------------------------------------------- one record per kind; toolkit.load
def test_toolkit_load_reads_every_shipped_cache_kind():
    import sys
    from pathlib import Path

    import toolkit

    data = Path(__file__).resolve().parents[1] / "data"
    files = {"classification": data / "sst2" / "minilm6_me-test.parquet",
             "generation": data / "sst2" / "t2t-test.parquet",
             "llm_tokens": data / "llm" / "smollm2_qnli_answer-test.parquet"}
    from toolkit.caches.kinds import KINDS, kind_of

    assert set(files) == set(KINDS)
    for kind, f in files.items():
        c = toolkit.load(f, verify_data=False)
        assert isinstance(c, KINDS[kind].cache_class) and kind_of(f).name == kind
    import subprocess

    code = f"import sys, toolkit; toolkit.load({str(files['llm_tokens'])!r}, verify_data=False); " \
           f"assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0  # toolkit.load needs no torch


# ------------------------------------------------------------------------------- 4. the CLI through the library
def _small_cache_file(tmp_path, name="c.parquet"):
    from toolkit.caches.classification import save_cache

    return save_cache(_cache(n=30), tmp_path / name)


@pytest.mark.parametrize("command", ["info", "sweep"])
def test_cli_on_a_fifo_refuses_without_hanging(tmp_path, command):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "cache.parquet"
    os.mkfifo(fifo)
    try:
        r = subprocess.run([sys.executable, "-m", "toolkit", command, str(fifo)], capture_output=True, text=True,
                           timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"toolkit {command} FIFO hung")
    assert r.returncode == 2 and "not a regular file" in r.stderr


def _with_raw_header(tmp_path, raw: bytes):
    import pyarrow.parquet as pq

    from toolkit.caches.io import META_KEY

    good = _small_cache_file(tmp_path, "good.parquet")
    bad = tmp_path / "bad.parquet"
    pq.write_table(pq.read_table(good).replace_schema_metadata({META_KEY: raw}), bad)
    return bad


@pytest.mark.parametrize("raw,match", [(b"[1, 2]", "JSON object"), (b"{not json", "not valid JSON")])
@pytest.mark.parametrize("command", ["info", "sweep"])
def test_cli_header_defects_are_clear_errors_naming_the_file(tmp_path, capsys, raw, match, command):
    from toolkit.cli import main

    bad = _with_raw_header(tmp_path, raw)
    assert main([command, str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and match in err


def test_sweep_refuses_flags_that_do_not_apply_and_names_the_family(tmp_path, capsys):
    from toolkit.cli import main

    llm = save_llm_cache(llm_cache(), tmp_path / "tokens.parquet")
    for flags in (["--reference", "all"], ["--metric", "f1"], ["--how", "max"]):
        assert main(["sweep", str(llm), *flags]) == 2
        assert flags[0] in capsys.readouterr().err
    clf = _small_cache_file(tmp_path)
    for flags in (["--family", "lens"], ["--checked-layers", "2"]):
        assert main(["sweep", str(clf), *flags]) == 2
        assert flags[0] in capsys.readouterr().err
    assert main(["sweep", str(llm), "--family", "lens"]) == 0
    assert "exit family: lens" in capsys.readouterr().out


@pytest.mark.parametrize("flags", [["--n-boot", "1000000000"], ["--dpi", "100000"], ["--n-boot", "1"]])
def test_plot_resource_arguments_are_bounded(tmp_path, flags):
    from toolkit.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["plot", "c.parquet", "--out", str(tmp_path / "f.png"), *flags])


def test_plot_refuses_a_cal_of_another_task_unless_transfer(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from toolkit.caches.classification import save_cache
    from toolkit.cli import main

    test = save_cache(_cache(n=120), tmp_path / "x-test.parquet")
    cal = save_cache(_cache(task="mrpc", split="cal", n=120, seed=1), tmp_path / "y-cal.parquet")
    out = tmp_path / "f.png"
    args = ["plot", str(test), "--cal", str(cal), "--rule", "budget", "--budget", "1.2", "--n-boot", "20",
            "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "task" in err and str(cal) in err and str(test) in err
    assert main([*args, "--transfer"]) == 0


def _schema1(tmp_path, name="c.parquet"):
    import json

    import pyarrow.parquet as pq

    from toolkit.caches.io import META_KEY

    p = _small_cache_file(tmp_path, name)
    t = pq.read_table(p)
    head = json.loads(t.schema.metadata[META_KEY])
    old = {"schema_version": 1, "shape": head["shape"], "stages": head["stages"], "meta": head["meta"]}
    pq.write_table(t.replace_schema_metadata({META_KEY: json.dumps(old).encode()}), p)
    return p, old


def test_upgrade_keeps_a_read_only_file_read_only(tmp_path):
    import os
    import stat

    from toolkit.caches.upgrade import upgrade_cache

    p, _ = _schema1(tmp_path)
    os.chmod(p, 0o444)
    assert upgrade_cache(p) is True
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o444


def test_upgrade_never_replaces_a_symlink(tmp_path):
    from toolkit.caches.upgrade import upgrade_cache

    p, _ = _schema1(tmp_path)
    link = tmp_path / "link.parquet"
    link.symlink_to(p)
    with pytest.raises(CacheError, match="symbolic link"):
        upgrade_cache(link)
    assert link.is_symlink()


def test_upgrade_errors_name_the_users_file_not_the_temporary_one(tmp_path):
    import json

    import pyarrow.parquet as pq

    from toolkit.caches.io import META_KEY
    from toolkit.caches.upgrade import upgrade_cache

    p, old = _schema1(tmp_path)
    t = pq.read_table(p)
    old["shape"] = [old["shape"][0], old["shape"][1], 5]  # a defect only the loader of the new file sees
    pq.write_table(t.replace_schema_metadata({META_KEY: json.dumps(old).encode()}), p)
    with pytest.raises(CacheError) as err:
        upgrade_cache(p)
    assert str(err.value).startswith(str(p)) and ".upgrade.parquet" not in str(err.value)


def test_generation_caches_refuse_impossible_step_statistics():
    from toolkit.caches.generation import GenCache
    from toolkit.testing import random_generation_cache

    c = random_generation_cache(30)
    g = c.models["swift"]
    g.stats[0, 2] = g.stats[0, 0] - 5.0  # lse@1 below the top logit: max-prob above 1
    with pytest.raises(CacheError, match="lse@1"):
        GenCache(c.example_ids, c.labels, c.models, c.temperatures, meta=c.meta)


def test_a_concatenation_of_token_caches_knows_its_tasks_so_a_transfer_is_named():
    from toolkit.analysis.engine import staged
    from toolkit.caches.identity import cache_identity, check_transfer
    from toolkit.caches.tokens import concat_token_caches

    a = llm_cache(meta={"prompt_set": "sst2_sentiment", "split": "cal", "decoding": {"max_new_tokens": 8}})
    b = llm_cache(seed=1, meta={"prompt_set": "agnews_headline", "split": "cal", "decoding": {"max_new_tokens": 8}})
    b.example_ids = np.array([f"u:cal:{i}" for i in range(b.n_examples)])
    cal = concat_token_caches([a, b])
    assert cache_identity(cal)["task"] == "agnews+sst2"
    qnli = llm_cache(seed=2, meta={"task": "qnli", "split": "test", "decoding": {"max_new_tokens": 8}})
    with pytest.raises(ValueError, match="task.*transfer=True"):
        check_transfer(staged(cal), staged(qnli))
    check_transfer(staged(cal), staged(qnli), transfer=True)
