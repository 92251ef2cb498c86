"""Issue 26, second hostile pass (/tmp/hostile26): tests of the findings fixed after that pass. Each test names its
finding and fails on the code before its fix (af78376)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from toolkit.caches.inputs import LOG_FLOOR, RAISE_BELOW, from_log_probs, from_probabilities

sys.path.insert(0, str(Path(__file__).parent))

DATA = Path(__file__).resolve().parents[1] / "data"


def _softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ----------------------------------------------------------------- A1: log-probabilities below the float32 floor
def test_log_probs_below_floor_keep_their_order():
    lp = np.array([[-120.0, -95.0], [-300.0, -301.0], [-1.0, -200.0]])
    c = from_log_probs(lp, np.array([1, 0, 0]), [1.0])
    assert np.array_equal(c.logits[:, 0].argmax(-1), [1, 0, 0])
    np.testing.assert_allclose(_softmax(c.logits[:, 0]), _softmax(lp), rtol=1e-5, atol=1e-30)
    assert c.meta["input"] == {"kind": "log_probs", "floored": 1, "raised": 2}


def test_probabilities_below_float32_tiny_keep_their_order():
    c = from_probabilities([[1e-40, 1e-39], [0.0, 1e-45]], [1, 1], [1.0])
    assert np.array_equal(c.logits[:, 0].argmax(-1), [1, 1])
    np.testing.assert_allclose(_softmax(c.logits[0, 0]), [1 / 11, 10 / 11], rtol=1e-5)
    assert c.meta["input"]["floored"] == 1 and c.meta["input"]["raised"] == 2


def test_rows_above_raise_below_are_stored_as_given():
    """Energy keeps the mass for rows whose top is above RAISE_BELOW; zeros still floor and are counted."""
    lp = np.array([[-2.0, -np.inf], [-40.0, -41.0]])
    c = from_log_probs(lp, [0, 0], [1.0])
    np.testing.assert_array_equal(c.logits[:, 0], np.array([[-2.0, LOG_FLOOR], [-40.0, -41.0]], np.float32))
    assert c.meta["input"] == {"kind": "log_probs", "floored": 1}
    assert RAISE_BELOW == LOG_FLOOR / 2


def test_import_lm_eval_of_long_choices_keeps_accuracy(tmp_path):
    from support.lmeval_logs import write_run
    from toolkit.analysis.engine import evaluation, staged
    from toolkit.imports import import_lm_eval
    targets = np.arange(12) % 2
    lls = np.where(np.eye(2)[targets] == 1, -95.0, -120.0)  # the target always the likelier choice
    samples = write_run(tmp_path / "a", lls, targets)
    cache = import_lm_eval([samples])
    assert evaluation(staged(cache), 0.0).metrics["accuracy"] == 1.0


@pytest.mark.parametrize("name", ["sst2-smollm2-cal", "sst2-smollm2-test"])
def test_shipped_lmeval_caches_untouched_by_the_shift(name):
    """The shipped lm-eval caches' rows all have tops above RAISE_BELOW: importing again gives the same logits."""
    import toolkit
    c = toolkit.load(DATA / "lmeval" / f"{name}.parquet")
    assert "raised" not in c.meta["input"] and float(c.logits.max(-1).min()) > RAISE_BELOW


# ----------------------------------------------------------------- A2: the exit family of an operating point
@pytest.fixture(scope="module")
def llm_sst2():
    import toolkit
    return (toolkit.load(DATA / "llm" / "smollm2_sst2_sentiment-cal.parquet"),
            toolkit.load(DATA / "llm" / "smollm2_sst2_sentiment-test.parquet"))


def test_operating_point_refuses_a_view_of_another_exit_family(llm_sst2):
    from toolkit.analysis import engine as E
    cal, test = llm_sst2
    op = E.choose(E.staged(cal, family="lens"), rule="target", target=0.7, metric="agreement")
    assert op.meta["family"] == "lens" and op.to_dict()["family"] == "lens"
    with pytest.raises(ValueError, match="family='lens'.*family='tuned'"):
        op.evaluate(E.staged(test, family="tuned"))
    assert op.evaluate(E.staged(test, family="lens")).n > 0


def test_policy_from_operating_point_refuses_an_exit_of_another_family(llm_sst2):
    from toolkit.analysis import engine as E
    from toolkit.policy import Policy, PolicyError
    cal, _ = llm_sst2  # its header records the weights' fingerprint: no weights= needed
    lens = E.choose(E.staged(cal, family="lens"), rule="target", target=0.7, metric="agreement")
    tuned = E.choose(E.staged(cal, family="tuned"), rule="target", target=0.7, metric="agreement")
    folder = cal.families["tuned"]["folder"]
    with pytest.raises(PolicyError, match="chosen on exit family 'lens'"):
        Policy.from_operating_point(lens, models="m", exit=folder)
    with pytest.raises(PolicyError, match="chosen on exit family 'tuned'"):
        Policy.from_operating_point(tuned, models="m", exit="lens")
    with pytest.raises(PolicyError, match="chosen on exit family 'tuned'"):
        Policy.from_operating_point(tuned, models="m", exit="runs/llm/another_tuned")
    assert Policy.from_operating_point(lens, models="m").params["exit"] == {"kind": "lens"}
    assert Policy.from_operating_point(tuned, models="m").params["exit"] == {"kind": "tuned", "folder": folder}


# ----------------------------------------------------------------- A3: temperatures checked for every score
@pytest.fixture(scope="module")
def agnews_test():
    import toolkit
    return toolkit.load(DATA / "agnews" / "minilm6_me-test.parquet")


@pytest.mark.parametrize("score", ["max_prob", "margin", "entropy"])
@pytest.mark.parametrize("temperature, match", [
    (-1, "finite and > 0, got -1.0"), (0, "finite and > 0, got 0.0"), (np.inf, "finite and > 0, got inf"),
    (np.nan, "finite and > 0, got nan"), ("2", "real number.*'2'.*str"), (True, "real number.*True.*bool"),
    ([1, 1, 1, 1, 1, -1], r"got -1.0 \(stage 5\)"), ([1, 2], r"one per stage \(6 stages\), got shape \(2,\)")])
def test_bad_temperatures_are_refused_for_every_score(agnews_test, score, temperature, match):
    from toolkit.analysis import engine as E
    with pytest.raises(ValueError, match=f"temperature.*{match}"):
        E.staged(agnews_test, score=score, temperature=temperature)


def test_good_temperatures_still_pass(agnews_test):
    from toolkit.analysis import engine as E
    a = E.staged(agnews_test, temperature=2)
    b = E.staged(agnews_test, temperature=[2.0] * 6)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    assert float(a.confidence.min()) >= 0.25 - 1e-12  # max_prob of 4 classes never below 1/C


# ----------------------------------------------------------------- A4: Cache.select_stages with hostile indices
@pytest.fixture(scope="module")
def sst2_test():
    import toolkit
    return toolkit.load(DATA / "sst2" / "minilm6_me-test.parquet")


def test_select_stages_negative_indices_keep_the_cost(sst2_test):
    c = sst2_test
    for sel, names in (([-1], ["L6"]), ([-2, -1], ["L5", "L6"]), ([0, -1], ["L1", "L6"])):
        s = c.select_stages(sel)
        assert s.stages == names
        np.testing.assert_array_equal(s.flops, c.select_stages(names).flops)
        np.testing.assert_array_equal(s.flops[:, -1], c.flops[:, -1])  # the last kept exit pays every layer


@pytest.mark.parametrize("sel, match", [([1.7, 3], "integer indices, got 1.7"), ([True, 3], "got True of type bool"),
                                        ([9], "index 9 is out of range for 6"), ([-7], "-7 is out of range"),
                                        (["zz"], "no stage 'zz'")])
def test_select_stages_refuses_floats_bools_and_out_of_range(sst2_test, sel, match):
    with pytest.raises(ValueError, match=match):
        sst2_test.select_stages(sel)


# ----------------------------------------------------------------- A5, A6, A10: compare's sides and options
@pytest.fixture(scope="module")
def sst2_views(sst2_test):
    import toolkit
    from toolkit.analysis import engine as E
    return E.staged(sst2_test), E.staged(toolkit.load(DATA / "sst2" / "mpnet_me-test.parquet"))


def test_compare_refuses_repeated_examples_on_either_side(sst2_views):
    from toolkit.analysis import engine as E
    st, mp = sst2_views
    dup = st.subset(np.r_[np.arange(st.n_examples), np.zeros(300, int)])
    for call in (lambda: E.compare(dup, mp, reference="a", n_boot=20),
                 lambda: E.compare_speedups(dup, mp, reference="a", n_boot=20)):
        with pytest.raises(ValueError, match="a holds example 'sst2:validation:0' 301 times"):
            call()
    with pytest.raises(ValueError, match="b holds example"):
        E.compare(mp, dup, reference="a", n_boot=20)


def test_compare_refuses_seed_lists_of_one_run_twice_or_of_two_models(sst2_views):
    from toolkit.analysis import engine as E
    st, mp = sst2_views
    with pytest.raises(ValueError, match=r"a\[0\] and a\[1\] are the same run"):
        E.compare([st, st], mp, reference="a", n_boot=20)
    with pytest.raises(ValueError, match=r"a\[1\] has stages .*seeds of one policy"):
        E.compare([st, mp], mp, reference="a", n_boot=20)


@pytest.mark.parametrize("kw, match", [
    (dict(names=("x", "x")), "names must be two different"), (dict(budgets=(0,)), "got 0 in"),
    (dict(budgets=(-1,)), "got -1 in"), (dict(budgets=(np.nan,)), "got nan in"), (dict(budgets=(1e300, np.inf)),
                                                                                 "got inf in"),
    (dict(budgets=()), "non-empty sequence"), (dict(budgets=("2",)), "got '2' in")])
def test_compare_refuses_bad_names_and_budgets(sst2_views, kw, match):
    from toolkit.analysis import engine as E
    with pytest.raises(ValueError, match=match):
        E.compare(*sst2_views, reference="a", n_boot=20, **kw)


def test_compare_speedups_refuses_a_string_max_drop(sst2_views):
    from toolkit.analysis import engine as E
    with pytest.raises(ValueError, match="max_drop must be a finite number >= 0.*'0.01'"):
        E.compare_speedups(*sst2_views, max_drop="0.01", reference="a", n_boot=20)


# ----------------------------------------------------------------- A7, C19: the models of an operating point
def test_from_operating_point_keeps_a_cascade_a_cascade():
    import toolkit
    from toolkit.analysis import engine as E
    from toolkit.policy import Policy, PolicyError
    op = E.choose(E.staged(toolkit.load(DATA / "sst2" / "cascade-cal.parquet")), max_drop=0.01)
    sha = "a" * 64
    with pytest.raises(PolicyError, match=r"chosen on a cascade of 3 models.*method cascade\); got method 'cascade' "
                                          r"with 1 model"):
        Policy.from_operating_point(op, models="m", weights=[sha])
    with pytest.raises(PolicyError, match="got method 'early_exit'"):
        Policy.from_operating_point(op, models=["a", "b", "c"], weights=[sha] * 3, method="early_exit")
    p = Policy.from_operating_point(op, models=["a", "b", "c"], weights=[sha] * 3)
    assert p.method == "cascade" and len(p.models) == 3


def test_from_operating_point_weights_count_message_the_right_way_round(sst2_test):
    from toolkit.analysis import engine as E
    from toolkit.policy import Policy, PolicyError
    op = E.choose(E.staged(toolkit_load(DATA / "sst2" / "minilm6_me-cal.parquet")), max_drop=0.01)
    with pytest.raises(PolicyError, match=r"2 weight fingerprint\(s\) for 1 model\(s\)"):
        Policy.from_operating_point(op, models="m", weights=["a" * 64] * 2)


def toolkit_load(path):
    import toolkit
    return toolkit.load(path)


# ----------------------------------------------------------------- A11: header invariants and the cal/test guard
def _tiny(**meta):
    from toolkit.caches.classification import from_arrays
    rng = np.random.default_rng(0)
    return from_arrays(rng.normal(size=(20, 2, 2)), rng.integers(0, 2, 20), [1.0, 2.0], meta=meta or None)


@pytest.mark.parametrize("meta, match", [
    (dict(label_names=["a", "b", "c"]), "'label_names' names 3 classes.*logits have 2"),
    (dict(num_labels=7), "'num_labels' is 7, but the logits have 2")])
def test_header_class_count_must_match_the_logits(meta, match):
    from toolkit.caches.classification import CacheError
    with pytest.raises(CacheError, match=match):
        _tiny(**meta)


def test_header_invariants_are_checked_before_a_cache_is_written(tmp_path, sst2_test):
    from dataclasses import replace

    from toolkit.caches.classification import CacheError, load_cache, save_cache
    info = [dict(s) for s in sst2_test.stage_info]
    info[-1]["layer"] = 99
    with pytest.raises(CacheError, match=r"'layer' is 99, beyond its model's 6 layers"):
        save_cache(replace(sst2_test, stage_info=info), tmp_path / "lay.parquet")
    with pytest.raises(CacheError, match="label_names"):
        save_cache(replace(sst2_test, meta={**sst2_test.meta, "label_names": ["a", "b", "c"]}), tmp_path / "l.parquet")
    assert load_cache(DATA / "sst2" / "minilm6_me-test.parquet").n_classes == 2


def test_huge_costs_are_refused_not_overflowed():
    from toolkit.caches.classification import CacheError, from_arrays
    rng = np.random.default_rng(0)
    with pytest.raises(CacheError, match="overflow when summed"):
        from_arrays(rng.normal(size=(20, 2, 2)), rng.integers(0, 2, 20), [1e306, 1e308])


@pytest.mark.parametrize("split", ["TEST", " Test ", "validation", "eval", "test_matched"])
def test_choose_refuses_any_spelling_of_a_test_split(split):
    from toolkit.analysis import engine as E
    view = E.staged(_tiny(split=split))
    with pytest.raises(ValueError, match=f"not test \\(split {split!r}"):
        E.choose(view, max_drop=0.1)
    assert E.choose(E.staged(_tiny(split="cal")), max_drop=0.5).threshold is not None


@pytest.mark.parametrize("ref", [0, -1.0, np.nan, np.inf])
def test_with_reference_refuses_a_zero_or_bad_reference(sst2_views, ref):
    with pytest.raises(ValueError, match="reference_cost must be finite and > 0"):
        sst2_views[0].with_reference(ref, "zero")


# ----------------------------------------------------------------- A12, B14, C16, C17: policy files
def _policy(**params):
    from toolkit.policy import Policy
    return Policy.early_exit("m", weights="a" * 64, **{"thresholds": [0.9], "stages": ["L1", "L2"], **params})


def _policy_text(**changes) -> str:
    d = _policy().to_dict()
    d.update(changes)
    return json.dumps(d)


def test_policy_warns_of_max_prob_thresholds_below_one_over_c():
    import warnings
    with pytest.warns(UserWarning, match=r"entry 0 is 0.3, below 1/2 = 0.5.*always stops"):
        _policy(thresholds=[0.3]).check_classes(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _policy(thresholds=[0.3]).check_classes(4)  # 0.3 >= 1/4: can fail on a four-class model
        _policy(thresholds=[0.0]).check_classes(2)  # 0: "always stop here", deliberate


def test_policy_refuses_duplicate_stages_keys_and_non_int_versions(tmp_path):
    from toolkit.policy import Policy, PolicyError
    with pytest.raises(PolicyError, match="stages.*names a stage twice .'L1'"):
        _policy(stages=["L1", "L1"])
    for version in ("1.0", "true"):
        f = tmp_path / f"v{version}.json"
        f.write_text(_policy_text().replace('"version": 1', f'"version": {version}'))
        with pytest.raises(PolicyError, match=f"{f}: key 'version' is"):
            Policy.load(f)
    f = tmp_path / "dup.json"
    f.write_text(_policy_text()[:-1] + ', "method": "cascade"}')
    with pytest.raises(PolicyError, match=f"{f}: key 'method' appears twice"):
        Policy.load(f)


def test_policy_load_names_the_file_for_deep_json_directories_and_fifos(tmp_path):
    import os

    from toolkit.policy import Policy, PolicyError
    deep = tmp_path / "deep.json"
    deep.write_text('{"meta": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(PolicyError, match=f"{deep}: JSON nested too deeply"):
        Policy.load(deep)
    with pytest.raises(PolicyError, match=f"{tmp_path}: is a directory, not a policy file"):
        Policy.load(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PolicyError, match=f"{fifo}: not a regular file"):
        Policy.load(fifo)
    with pytest.raises(PolicyError, match="no such policy file"):
        Policy.load(tmp_path / "none.json")


def test_policy_save_keeps_links_modes_and_names_the_users_path(tmp_path):
    import os
    import stat

    from toolkit.policy import Policy, PolicyError
    p = _policy()
    with pytest.raises(PolicyError, match=f"^{tmp_path}: is a directory") as e:
        p.save(tmp_path)
    assert ".tmp" not in str(e.value)
    target = tmp_path / "target.json"
    p.save(target)
    from toolkit.caches.io import process_umask
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~process_umask()  # a new file, as open() makes it
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(PolicyError, match="a symbolic link"):
        p.save(link)
    assert link.is_symlink()
    os.chmod(target, 0o444)
    try:
        with pytest.raises(PolicyError, match="is read-only"):
            p.save(target)
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o444
    finally:
        os.chmod(target, 0o644)
    os.chmod(target, 0o640)
    p.save(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640 and Policy.load(target) == p
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_saving_a_cache_over_a_directory_names_the_directory(tmp_path, sst2_test):
    from toolkit.caches.classification import CacheError, save_cache
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(CacheError, match=r"dir.parquet: is a directory; give the cache file's name") as e:
        save_cache(sst2_test, tmp_path / "dir.parquet")
    assert ".tmp" not in str(e.value)


# ----------------------------------------------------------------- B13: the CLI never blocks on a FIFO
def _returns_quickly(args, fifo, capsys) -> tuple[int, str]:
    """Run the CLI in a thread; if it blocks on the FIFO, open the FIFO's other end to free it and fail."""
    import os
    import threading

    from toolkit.cli import main
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("rc", main(args)), daemon=True)
    t.start()
    t.join(60)
    if t.is_alive():
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # both ends: whichever side it waits on is served
        t.join(10)
        os.close(fd)
        pytest.fail(f"{args} blocked on the FIFO {fifo}")
    return out["rc"], capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--csv", "--profile"])
def test_sweep_refuses_a_fifo_for_csv_and_profile(tmp_path, capsys, flag):
    import os
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    rc, err = _returns_quickly(["sweep", str(DATA / "sst2" / "minilm6_me-test.parquet"), flag, str(fifo)], fifo,
                               capsys)
    assert rc != 0 and f"{fifo}: not a regular file" in err


def test_import_chat_logprobs_refuses_a_fifo_for_labels(tmp_path, capsys):
    import os
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    rec = tmp_path / "r.jsonl"
    rec.write_text("{}\n")
    rc, err = _returns_quickly(["import", "chat-logprobs", str(rec), "--labels", str(fifo), "--label-word", "a",
                                "--label-word", "b", "--out", str(tmp_path / "c.parquet")], fifo, capsys)
    assert rc != 0 and f"{fifo}: not a regular file" in err


def test_import_lm_eval_says_what_a_path_is(tmp_path):
    import os

    from toolkit.imports import RecordError, read_lm_eval
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(RecordError, match=f"{fifo}: not a regular file"):
        read_lm_eval(fifo)
    with pytest.raises(RecordError, match=f"{tmp_path}: a folder: pass the samples_"):
        read_lm_eval(tmp_path)


# ----------------------------------------------------------------- B15, C19: errors that name the argument
@pytest.mark.parametrize("seed", [-1, None, 1.5, True])
def test_seeds_are_checked_by_name(sst2_views, seed):
    from toolkit.analysis import engine as E
    st = sst2_views[0]
    with pytest.raises(ValueError, match=f"seed must be a non-negative integer.*got {seed!r}"):
        E.evaluation(st, 0.9, n_boot=10, seed=seed)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        E.crossfit(st, seed=seed)


def test_threshold_grid_memory_grows_with_the_distinct_thresholds_not_n(sst2_views):
    from toolkit.analysis import engine as E
    st = sst2_views[0]
    assert np.array_equal(E.threshold_grid(st, n=10**12), E.threshold_grid(st, n=st.confidence.size))
    with pytest.raises(ValueError, match="n must be a positive integer"):
        E.threshold_grid(st, n=0)


def test_evaluate_stages_says_which_shape_it_wants(sst2_views):
    from toolkit.analysis import engine as E
    st = sst2_views[0]
    with pytest.raises(ValueError, match=r"stages must be \[T, 872\] \(or \[872\]\): one stage index per example"):
        E.evaluate_stages(st, 99)
    with pytest.raises(ValueError, match="stage indices in 0..5, got values from 0 to 9"):
        E.evaluate_stages(st, np.r_[np.zeros(871, int), 9])


# ----------------------------------------------------------------- A9: the probability paths take real numbers
@pytest.mark.parametrize("values, match", [
    (np.array([[0.9, 0.891]]), "sums to 1.791 > 1"), (np.array([["0.2", "0.8"]]), "dtype <U3"),
    (np.array([[False, True]]), "dtype bool"), (np.array([[0.2 + 0j, 0.8]]), "complex")])
def test_from_probabilities_refuses_what_from_arrays_refuses(values, match):
    from toolkit.caches.classification import CacheError
    with pytest.raises(CacheError, match=match):
        from_probabilities(values, [1], [1.0])


def test_from_log_probs_refuses_strings():
    from toolkit.caches.classification import CacheError
    with pytest.raises(CacheError, match="log_probs must be real numbers"):
        from_log_probs(np.array([["-0.2", "-1.8"]]), [0], [1.0])


# ----------------------------------------------------------------- C18, C19: cost messages
def test_negative_cost_is_called_negative():
    from toolkit.caches.classification import CacheError, from_arrays
    rng = np.random.default_rng(0)
    with pytest.raises(CacheError, match="non-negative cumulative costs, got -1 at example 0, stage 0"):
        from_arrays(rng.normal(size=(12, 2, 2)), rng.integers(0, 2, 12), [-1.0, 2.0])


@pytest.mark.parametrize("unit", [5, "  "])
def test_a_bad_cost_unit_is_refused_when_the_cache_is_built_or_loaded(unit, sst2_test, tmp_path):
    from dataclasses import replace

    from toolkit.caches.classification import CacheError
    with pytest.raises(CacheError, match="meta key 'cost_unit' must be a non-empty string"):
        replace(sst2_test, meta={**sst2_test.meta, "cost_unit": unit})


@pytest.mark.parametrize("bad", [float("nan"), 0.5, float("inf")])
def test_lm_eval_log_likelihoods_out_of_range_name_file_and_line(tmp_path, bad):
    from support.lmeval_logs import write_run
    from toolkit.imports import RecordError, import_lm_eval
    lls = -np.ones((4, 2))
    lls[2, 1] = bad
    samples = write_run(tmp_path / "a", lls, [0, 1, 0, 1])
    with pytest.raises(RecordError, match=f"{samples}:3: filtered_resps\\[1\\] log-likelihood is {bad!r}"):
        import_lm_eval([samples])


def test_check_stages_of_zero_says_there_is_no_stage():
    from toolkit.policy import PolicyError
    with pytest.raises(PolicyError, match="no stage to run"):
        _policy().check_stages(0)
