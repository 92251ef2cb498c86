"""Real early exit and cascades: exits and predictions equal the offline simulation on the same cache."""

import numpy as np
import pytest
from transformers import AutoTokenizer

from support.torch_models import multi_exit_model_dir as _model_dir
from toolkit.analysis.policies import early_exit
from toolkit.analysis.scores.classification import stage_confidence
from toolkit.data.tasks import load_split
from toolkit.nn.encoder.collect import collect
from toolkit.nn.encoder.runtime import CascadeRunner, EarlyExitRunner, midpoint_threshold, runner_from_policy
from toolkit.policy import Policy


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["bert", "mpnet"])
@pytest.mark.parametrize("batch_size", [1, 8])
def test_early_exit_runner_matches_cache(tmp_path_factory, tokenizer_dir, glue_dir, tmp_path, arch, batch_size):
    d = _model_dir(tmp_path_factory, tokenizer_dir, arch, 4)
    cache = collect([str(d)], "sst2", "test", tmp_path / "c.parquet", data_dir=glue_dir, batch_size=8, progress=False)
    conf = stage_confidence(cache.logits, score="max_prob")
    qs = np.quantile(conf[:, :-1], [0.3, 0.6, 0.8])
    thr = [midpoint_threshold(conf, q) for q in (qs[0], qs[1], qs[2])]
    offline = early_exit(cache, thr)
    assert len(np.unique(offline.exit_stage)) >= 3  # the test exercises several exits
    frame = load_split("sst2", "test", glue_dir).frame
    policy = Policy.early_exit(str(d), score="max_prob", thresholds=thr, stages=cache.stages,
                               weights=cache.meta["models"][0]["weights_sha256"])
    runner = runner_from_policy(Policy.load(policy.save(tmp_path / "p.json")))
    assert isinstance(runner, EarlyExitRunner)
    live = runner.run(list(frame.text_a), batch_size=batch_size)
    assert (live.exit_stage == offline.exit_stage).all()
    assert (live.prediction == offline.prediction).all()
    rows = np.arange(cache.n_examples)
    np.testing.assert_allclose(live.logits, cache.logits[rows, offline.exit_stage], atol=1e-4)


def test_cascade_runner_matches_cache(tmp_path_factory, tokenizer_dir, glue_dir, tmp_path):
    small = _model_dir(tmp_path_factory, tokenizer_dir, "bert", 2, exit_layers=[2], seed=1)
    big = _model_dir(tmp_path_factory, tokenizer_dir, "bert", 3, exit_layers=[3], seed=2)
    cache = collect([str(small), str(big)], "sst2", "test", tmp_path / "c.parquet", data_dir=glue_dir,
                    names=["s", "b"], progress=False)
    conf = stage_confidence(cache.logits, score="energy", temperature=[1.5, 1.0])
    thr = midpoint_threshold(conf[:, 0], np.quantile(conf[:, 0], 0.5))
    offline = early_exit(cache, [thr], score="energy", temperature=[1.5, 1.0])
    frame = load_split("sst2", "test", glue_dir).frame
    from toolkit.nn.encoder.models import load_model

    runner = CascadeRunner([load_model(small), load_model(big)], [AutoTokenizer.from_pretrained(small)] * 2,
                           [thr], "energy", [1.5, 1.0])
    live = runner.run(list(frame.text_a), batch_size=8)
    assert (live.exit_stage == offline.exit_stage).all() and (live.prediction == offline.prediction).all()
    assert 0 < (live.exit_stage == 1).mean() < 1


def test_threshold_count_checked(tmp_path_factory, tokenizer_dir):
    d = _model_dir(tmp_path_factory, tokenizer_dir, "bert", 3)
    from toolkit.nn.encoder.models import load_model

    with pytest.raises(ValueError, match="thresholds for 3 stages"):
        EarlyExitRunner(load_model(d), AutoTokenizer.from_pretrained(d), [0.5, 0.6, 0.7, 0.8])


@pytest.mark.slow
def test_cli_predict(tmp_path_factory, tokenizer_dir, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    d = _model_dir(tmp_path_factory, tokenizer_dir, "bert", 3)
    Policy.early_exit(str(d), thresholds=[0.9, 0.9]).save(tmp_path / "p.json")
    (tmp_path / "in.txt").write_text("the movie was good\nthe plot was awful\n\nit is superb\n")
    r = subprocess.run([sys.executable, "-m", "toolkit", "predict", "--policy", str(tmp_path / "p.json"),
                        "--input", str(tmp_path / "in.txt")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.rstrip("\n").split("\n")
    assert lines[0] == "line\tprediction\texit_stage" and len(lines) == 5  # the blank line keeps its number
    assert [ln.split("\t")[0] for ln in lines[1:]] == ["1", "2", "3", "4"] and lines[3] == "3\t\t"
    (tmp_path / "empty.txt").write_text("\n")
    r = subprocess.run([sys.executable, "-m", "toolkit", "predict", "--policy", str(tmp_path / "p.json"),
                        "--input", str(tmp_path / "empty.txt")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "no texts" in r.stderr
