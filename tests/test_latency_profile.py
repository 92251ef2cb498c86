"""toolkit profile on tiny models from a config (--quick grid): the profile's shape, what it records, and that the
latency model reads it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toolkit.analysis.cost.latency import PROFILE_FORMAT, load_profile

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def quick_profile(tiny_encoder_dir, tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from toolkit.nn.common.profile import profile_models
    from toolkit.nn.encoder.models import MultiExitModel

    enc = MultiExitModel.from_backbone(tiny_encoder_dir, 2).eval()
    lm = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    lm.config._attn_implementation = "sdpa"
    return profile_models({"enc": (enc, AutoTokenizer.from_pretrained(tiny_encoder_dir)), "lm": (lm, None)},
                          quick=True, repeats=2, warmup=1)


def test_quick_profile_records_machine_and_every_piece(quick_profile):
    p = quick_profile
    assert p["format"] == PROFILE_FORMAT and p["threads"] == torch.get_num_threads() and p["dtype"] == "float32"
    assert {"torch", "transformers", "numpy", "python"} <= set(p["versions"]) and p["machine"]["cpu_count"] >= 1
    assert len(p["loadavg_start"]) == 3 and p["statistic"].startswith("mean")
    enc, lm = p["models"]["enc"], p["models"]["lm"]
    assert set(enc["pieces"]) == {"inputs", "embed", "layer", "exit", "head", "forward"}
    assert enc["exit_layers"] == [1, 2, 3] and enc["layers"] == 3
    assert set(lm["pieces"]) == {"setup", "layer", "head", "exit", "confidence", "kv_propagation", "step_overhead",
                                 "translator"}
    tr, head = lm["pieces"]["translator"], lm["pieces"]["head"]
    assert (tr["batch"], tr["positions"]) == (head["batch"], head["positions"])  # the LM head's grid
    assert (np.asarray(tr["raw_ms"]) > 0).all()
    for m in (enc, lm):
        for name, piece in m["pieces"].items():
            ms, raw = np.asarray(piece["ms"]), np.asarray(piece["raw_ms"])
            assert ms.shape == (len(piece["batch"]), len(piece["positions"])), name
            assert (ms >= raw - 1e-12).all() and (np.diff(ms, axis=0) >= 0).all() and (np.diff(ms, axis=1) >= 0).all()
            assert (raw >= 0).all() and np.asarray(piece.get("median_ms", ms)).shape == ms.shape
            assert (np.asarray(piece.get("calls", [[3]])) >= 1).all()
    assert (np.asarray(enc["pieces"]["forward"]["raw_ms"]) > 0).all()


def test_profile_reads_back_and_predicts(quick_profile, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(quick_profile))
    prof = load_profile(path)
    enc = prof.model("enc")
    assert enc["layer"](2, 8) == pytest.approx(quick_profile["models"]["enc"]["pieces"]["layer"]["ms"][1][1])
    assert "p.json" in prof.label


def test_tuned_view_priced_from_the_profiles_pieces_by_hand(quick_profile):
    """A tuned-exit token view of the profiled tiny Llama costs, per token at batch 1, exactly the pieces read from
    the profile file: each checked exit reached pays the lens exit, its confidence and the translator."""
    from toolkit.analysis.cost import latency as lat
    from toolkit.analysis.engine import staged
    from toolkit.testing import random_token_cache

    lm = quick_profile["models"]["lm"]
    L = lm["layers"]
    one = {k: v["ms"][0][0] for k, v in lm["pieces"].items()}  # batch 1, 1 position: the first grid point
    assert all(v["batch"][0] == 1 and v["positions"][0] == 1.0 for v in lm["pieces"].values())
    cache = random_token_cache(40, layers=L, families=("lens", "tuned"), mean_length=6, split="cal")
    cache.families["tuned"] = {"kind": "tuned_exits"}
    checked = [1, L - 1]
    prof = load_profile(quick_profile)
    got = lat.with_predicted_time(staged(cache, family="tuned", checked_layers=checked), prof, None,
                                  models=["lm"]).cost[0]
    exit_ = one["exit"] + one["confidence"] + one["translator"]
    want = [one["setup"] + one["step_overhead"] + k * one["layer"] + (L - k) * one["kv_propagation"]
            + n * exit_ + (one["head"] if k == L else 0.0) for k, n in ((1, 1), (L - 1, 2), (L, 2))]
    assert got == pytest.approx(want, rel=1e-12)
    lens = lat.with_predicted_time(staged(cache, family="lens", checked_layers=checked), prof, None,
                                   models=["lm"]).cost[0]
    assert got - lens == pytest.approx(one["translator"] * np.array([1, 2, 2]), rel=1e-9)
    # a profile without the piece (made before it was timed) refuses, naming the fix
    old = json.loads(json.dumps(quick_profile))
    del old["models"]["lm"]["pieces"]["translator"]
    with pytest.raises(ValueError, match="re-profile with `toolkit profile --model lm`"):
        lat.calm_time_sweep(staged(cache, family="tuned", checked_layers=checked), load_profile(old), model="lm",
                            batch_size=2)


def test_one_piece_alone(tiny_llama_dir):
    """profile_causal_lm(pieces=...) times only the pieces named (what benchmarks/profile_add_piece.py adds to an
    existing profile), on the grid given, and refuses an unknown piece naming the known ones."""
    from transformers import AutoModelForCausalLM

    from toolkit.nn.common.profile import QUICK_DECODER_GRID, Rounds, profile_causal_lm

    lm = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    rounds = Rounds(repeats=2, warmup=1)
    entry, finish = profile_causal_lm(lm, rounds, grid=QUICK_DECODER_GRID, context=16, pieces=("translator",))
    rounds.run()
    finish()
    assert list(entry["pieces"]) == ["translator"]
    assert np.asarray(entry["pieces"]["translator"]["ms"]).shape == (2, 2)
    with pytest.raises(ValueError, match="unknown \\['lens'\\].*translator"):
        profile_causal_lm(lm, Rounds(repeats=2, warmup=1), grid=QUICK_DECODER_GRID, context=16, pieces=("lens",))


def test_cli_profile_quick(tiny_encoder_dir, tmp_path):
    from toolkit.cli import main

    out = tmp_path / "prof.json"
    assert main(["profile", "--model", str(tiny_encoder_dir), "--out", str(out), "--quick", "--repeats", "1",
                 "--threads", "1"]) == 0
    prof = load_profile(out)
    assert prof.model(str(tiny_encoder_dir)).kind == "encoder" and prof.meta["threads"] == 1
