"""The one Policy (issue 26): torch-free validation, atomic save, ranges from the score registry, an operating point
chosen on cal becomes a policy in one call without torch, and both runtimes run a policy only on the weights it was
chosen for. Each test fails on 28afd11 (no toolkit.policy, no fingerprints, two drifted policy classes)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from toolkit.analysis.scores.classification import SCORES
from toolkit.policy import Policy, PolicyError, score_range

BLOCK_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'safetensors', 'accelerate'):
            raise ImportError(name + ' is blocked: an install without torch')
sys.meta_path.insert(0, _Block())
"""
SHA_A = "a" * 64


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code + "\nimport sys\nassert not [m for m in "
                           "sys.modules if m.split('.')[0] in ('torch', 'transformers')]"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def test_policy_validates_saves_and_loads_without_torch(tmp_path):
    r = run_without_torch(f"""
from toolkit import Policy, PolicyError
p = Policy.early_exit('m', thresholds=[0.9, 0.8], stages=['L1', 'L2', 'L3'], weights={SHA_A!r})
assert Policy.load(p.save({str(tmp_path / 'p.json')!r})) == p
try:
    Policy.early_exit('m', thresholds=[1.5])
except PolicyError as e:
    print(e)
""")
    assert r.returncode == 0, r.stderr
    assert "key 'thresholds' entry 0 is 1.5, outside [0, 1]" in r.stdout


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(SCORES)), st.floats(-1e6, 1e6))
def test_threshold_ranges_are_the_score_registry_s(score, t):
    lo, hi = SCORES[score].confidence_range
    assert score_range(score) == (lo, hi)
    if lo <= t <= hi:
        assert Policy.early_exit("m", score=score, thresholds=[t]).params["thresholds"] == (t,)
    else:
        with pytest.raises(PolicyError, match=f"outside .* where {score} confidences lie"):
            Policy.early_exit("m", score=score, thresholds=[t])


def test_save_is_atomic(tmp_path, monkeypatch):
    path = Policy.early_exit("m", thresholds=[0.5]).save(tmp_path / "p.json")
    before = path.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("toolkit.policy.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        Policy.early_exit("m", thresholds=[0.7]).save(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


@pytest.mark.parametrize("doc,needle", [
    ({"schema": "toolkit.policy", "version": 1, "method": "calm", "models": [{"path": "m"}],
      "params": {"checked_layers": [2], "thresholds": [0.5], "temperature": [1.0, 2.0]}},
     "key 'temperature' must be one value or one per checked layer (1), got 2"),
    ({"schema": "toolkit.policy", "version": 1, "method": "early_exit", "models": [{"path": "m"}],
      "params": {"thresholds": [0.5], "draft_layer": 3}}, "unknown key(s) ['draft_layer'] for early_exit"),
    ({"schema": "toolkit.policy", "version": 1, "method": "cascade", "models": [{"path": "m"}],
      "params": {"thresholds": [0.5]}}, "a cascade runs at least two models"),
    ({"schema": "toolkit.policy", "version": 1, "method": "early_exit",
      "models": [{"path": "m", "weights_sha256": "abc"}], "params": {"thresholds": [0.5]}},
     "'weights_sha256' must be null or 64 lowercase hex digits"),
    ({"schema": "toolkit.policy", "version": 2, "method": "early_exit", "models": [{"path": "m"}],
      "params": {"thresholds": [0.5]}}, "key 'version' is 2"),
    ({"schema": "toolkit.policy", "version": 1, "method": "calm", "models": [{"path": "m"}],
      "params": {"checked_layers": [2], "thresholds": [0.5], "score": "energy"}}, "key 'score' must be one of"),
])
def test_one_schema_one_error_naming_file_and_key(doc, needle, tmp_path):
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(PolicyError) as e:
        Policy.load(tmp_path / "p.json")
    assert str(e.value).startswith(str(tmp_path / "p.json")) and needle in str(e.value)
    assert isinstance(e.value, ValueError)


def _op(n=200, seed=0):
    from toolkit.analysis.engine import choose, staged
    from toolkit.caches.classification import from_arrays

    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, 3, 2))
    logits[:, 2] = logits[:, 2] * 3
    labels = logits[:, 2].argmax(-1)
    cache = from_arrays(logits.astype(np.float32), labels, [1.0, 2.0, 3.0])
    cache.meta["split"] = "cal"
    return cache, choose(staged(cache), max_drop=0.05)


def test_from_operating_point_takes_everything_from_the_point_and_refuses_without_fingerprints():
    cache, op = _op()
    with pytest.raises(PolicyError, match="records no weight fingerprint"):
        Policy.from_operating_point(op, models="folder")
    p = Policy.from_operating_point(op, models="folder", weights=[SHA_A])
    assert p.method == "early_exit" and p.params["thresholds"] == (op.threshold,) * 2
    assert p.params["stages"] == tuple(cache.stages) and p.params["score"] == "max_prob"
    assert p.models[0].weights_sha256 == SHA_A and p.meta["operating_point"]["threshold"] == op.threshold
    cache.meta["models"] = [{"name": "x", "weights_sha256": "b" * 64}]
    assert Policy.from_operating_point(op, models="f", weights=cache).models[0].weights_sha256 == "b" * 64
    with pytest.raises(PolicyError, match=r"1 weight fingerprint\(s\) for 2 model\(s\)"):
        Policy.from_operating_point(op, models=["f", "g"], weights=[SHA_A])


def test_calm_policy_from_an_llm_operating_point():
    from toolkit.analysis.engine import choose, staged
    from toolkit.caches.tokens import load_llm_cache

    path = REPO / "data" / "llm" / "smollm2_sst2_sentiment-cal.parquet"
    view = staged(load_llm_cache(path), family="lens", checked_layers=[10, 20, 25])
    op = choose(view, metric="agreement", max_drop=0.1)
    assert Policy.from_operating_point(op, models="SmolLM2-135M-Instruct").params["exit"] == {
        "kind": "lens"}  # the point records the family it was chosen on
    with pytest.raises(PolicyError, match="chosen on exit family 'lens'"):
        Policy.from_operating_point(op, models="SmolLM2-135M-Instruct", exit="runs/llm/smollm2_tuned")
    p = Policy.from_operating_point(op, models="SmolLM2-135M-Instruct", exit="lens")
    assert p.models[0].weights_sha256 == load_llm_cache(path).model["weights_sha256"]  # from the cal header
    assert p.method == "calm" and p.params["checked_layers"] == (10, 20, 25)
    assert p.params["thresholds"] == (op.threshold,) and p.params["exit"] == {"kind": "lens"}


# ------------------------------------------------------------------------------------------ runtimes
torch_needed = pytest.mark.skipif(not __import__("importlib").util.find_spec("torch"), reason="needs torch")


@torch_needed
def test_operating_point_to_policy_without_torch_runs_in_predict_and_is_refused_on_other_weights(
        tmp_path_factory, tokenizer_dir, glue_dir, tmp_path, capsys):
    from support.torch_models import multi_exit_model_dir as _model_dir
    from toolkit.cli import main
    from toolkit.data.tasks import load_split
    from toolkit.nn.encoder.collect import collect

    a = _model_dir(tmp_path_factory, tokenizer_dir, "bert", 3, seed=1, scale=8.0)
    b = _model_dir(tmp_path_factory, tokenizer_dir, "bert", 3, seed=2, scale=8.0)
    cal = tmp_path / "cal.parquet"
    collect([str(a)], "sst2", "cal", cal, data_dir=glue_dir, batch_size=16, progress=False)
    # one call, in an install without torch: choose on cal, save the policy
    r = run_without_torch(f"""
import toolkit
from toolkit.analysis.engine import choose, staged
load = getattr(toolkit, 'load', None) or toolkit.load_cache
op = choose(staged(load({str(cal)!r})), max_drop=0.05)
toolkit.Policy.from_operating_point(op, models={str(a)!r}).save({str(tmp_path / 'p.json')!r})
print(op.threshold)
""")
    assert r.returncode == 0, r.stderr
    policy = Policy.load(tmp_path / "p.json")
    thr = float(r.stdout.split()[-1])
    assert policy.params["thresholds"] == (thr, thr) and policy.models[0].weights_sha256
    # it runs in `toolkit predict`, and stops where the offline view says (boundary ties aside)
    frame = load_split("sst2", "cal", glue_dir).frame
    (tmp_path / "in.txt").write_text("\n".join(frame.text_a) + "\n", encoding="utf-8")
    assert main(["predict", "--policy", str(tmp_path / "p.json"), "--input", str(tmp_path / "in.txt"),
                 "--out", str(tmp_path / "out.tsv")]) == 0
    live = np.array([int(r.split("\t")[2]) for r in (tmp_path / "out.tsv").read_text().splitlines()[1:]])
    from toolkit.analysis.engine import choose, staged
    from toolkit.caches.classification import load_cache

    view = staged(load_cache(cal))
    near = np.abs(view.confidence[:, :-1] - thr).min(1) < 1e-5
    assert (live == view.stage_of(thr))[~near].all()
    # the same path at a threshold that mixes the exits (the chosen one stops this untrained model at once)
    from dataclasses import replace

    from toolkit.nn.encoder.runtime import midpoint_threshold

    mid = midpoint_threshold(view.confidence[:, :-1], np.median(view.confidence[:, 0]))
    op = replace(choose(view, max_drop=0.05), threshold=mid)
    Policy.from_operating_point(op, models=str(a)).save(tmp_path / "mid.json")
    assert main(["predict", "--policy", str(tmp_path / "mid.json"), "--input", str(tmp_path / "in.txt"),
                 "--out", str(tmp_path / "mid.tsv")]) == 0
    live = np.array([int(r.split("\t")[2]) for r in (tmp_path / "mid.tsv").read_text().splitlines()[1:]])
    assert (live == view.stage_of(mid)).all() and len(np.unique(live)) >= 2
    # refused on other weights: the same policy pointed at another model of the same shape
    doc = json.loads((tmp_path / "p.json").read_text())
    doc["models"][0]["path"] = str(b)
    (tmp_path / "b.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["predict", "--policy", str(tmp_path / "b.json"), "--input", str(tmp_path / "in.txt")]) == 2
    err = capsys.readouterr().err
    assert "b.json: key 'models' entry 0" in err and "other weights" in err


@torch_needed
def test_each_command_refuses_the_other_s_policies_and_says_which_to_use(tmp_path, capsys):
    from toolkit.cli import main

    (tmp_path / "in.txt").write_text("good film\n")
    Policy.calm("m", checked_layers=[2], thresholds=0.5).save(tmp_path / "calm.json")
    Policy.early_exit("m", thresholds=[0.5]).save(tmp_path / "ee.json")
    assert main(["predict", "--policy", str(tmp_path / "calm.json"), "--input", str(tmp_path / "in.txt")]) == 2
    assert "run it with `toolkit llm-generate`" in capsys.readouterr().err
    assert main(["llm-generate", "--policy", str(tmp_path / "ee.json"), "--input", str(tmp_path / "in.txt")]) == 2
    assert "run it with `toolkit predict`" in capsys.readouterr().err


@torch_needed
def test_llm_policy_runs_only_on_its_weights(tmp_path, tokenizer_dir):
    from conftest import tiny_causal_lm
    from toolkit.nn.causal.decode import CalmDecoder, decoder_from_policy
    from toolkit.nn.causal.models import load_causal_lm
    from toolkit.nn.common.parts import weights_sha256

    a = load_causal_lm(tiny_causal_lm(tmp_path / "A", tokenizer_dir, seed=0)).model
    b = load_causal_lm(tiny_causal_lm(tmp_path / "B", tokenizer_dir, seed=1)).model
    p = Policy.calm(str(tmp_path / "A"), checked_layers=[1, 2], thresholds=0.5, weights=weights_sha256(a))
    assert isinstance(decoder_from_policy(p, a), CalmDecoder)
    with pytest.raises(PolicyError, match="key 'models' entry 0.*other weights"):
        decoder_from_policy(p, b)
    with pytest.raises(PolicyError, match="draft_layer"):
        decoder_from_policy(Policy.self_speculative("m", draft_layer=4, draft_length=2), a)
    assert math.isfinite(p.params["thresholds"][0])
