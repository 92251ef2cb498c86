"""The exit pieces an LLM decoding estimate prices are checked by one helper for both runtimes: CALM
(``calm_step_ms`` / ``calm_run_ms``: ``("exit", "confidence")`` for the lens, plus ``"translator"`` for tuned exits,
as :attr:`CalmDecoder.exit_pieces <toolkit.nn.causal.decode.CalmDecoder>` names them) and self-speculative decoding
(``self_speculative_run_ms``: ``("exit",)`` or ``("exit", "translator")``). Before, the CALM estimates priced any
names: ``("exit",)`` dropped the confidence, ``("exit", "confidence", "confidence")`` priced it twice."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.analysis.cost import latency as lat

ROWS = [1, 2, 4, 8]


def lm(translator=True):
    def grid(a, c):
        return {"batch": ROWS, "positions": [1.0], "ms": [[a + c * b] for b in ROWS]}

    pieces = {"setup": grid(0.05, 0.01), "layer": grid(1, 0.2), "head": grid(3, 1), "exit": grid(2.5, 1),
              "confidence": grid(0, 0.4), "kv_propagation": grid(0, 0.1), "step_overhead": grid(0.7, 0.03)}
    if translator:
        pieces["translator"] = grid(0.3, 0.02)
    model = {"kind": "causal_lm", "layers": 4, "context": 16, "pieces": pieces}
    return lat.load_profile({"format": lat.PROFILE_FORMAT, "threads": 1, "dtype": "float32",
                             "machine": {"host": "test"}, "models": {"lm": model}}).model("lm")


CALM_BAD = [("exit",), ("confidence",), ("exit", "translator"), ("exit", "confidence", "confidence"),
            ("exit", "confidence", "translator", "exit"), ("exit", "confidence", "head"), "exit", ["exit", 1]]


@pytest.mark.parametrize("bad", CALM_BAD, ids=repr)
def test_calm_estimates_refuse_unknown_missing_or_repeated_pieces(bad):
    m = lm()
    allowed = r"pass \('exit', 'confidence'\) \(the lens\) or \('exit', 'confidence', 'translator'\) \(tuned exits\)"
    with pytest.raises(ValueError, match=r"a CALM checked exit runs the 'exit' and its 'confidence'.*" + allowed):
        lat.calm_run_ms(m, [[1, 4], [2]], [1, 2], exit_pieces=bad)
    with pytest.raises(ValueError, match=allowed):
        lat.calm_step_ms(m, [2, 1, 1, 1], 2, [1, 2], exit_pieces=bad)
    with pytest.raises(ValueError, match=allowed):
        lat.calm_token_ms(m, [1, 2, 4], exit_pieces=bad)


def test_calm_pieces_the_decoder_names_pass_and_price_the_translator_once():
    m = lm()
    lens = lat.calm_run_ms(m, [[1, 4], [2]], [1, 2])
    assert lens == pytest.approx(lat.calm_run_ms(m, [[1, 4], [2]], [1, 2], exit_pieces=["confidence", "exit"]))
    tuned = lat.calm_run_ms(m, [[1, 4], [2]], [1, 2], exit_pieces=lat.CALM_EXIT_PIECES)
    # the translator runs on the rows reaching each checked exit (layers 1 and 2): step 1, row 0 exits at 1 and
    # row 1 at 2 (2 rows at layer 1, 1 at layer 2); step 2, row 0 alone runs to layer 4 (1 row at each)
    t = m.pieces["translator"]
    step1 = t(2, 1) + t(1, 1)
    step2 = 2 * t(1, 1)
    assert tuned - lens == pytest.approx(float(step1 + step2))


@pytest.mark.parametrize("bad", [("exit", "confidence"), ("translator",), ("exit", "exit"), "exit"], ids=repr)
def test_self_speculative_shares_the_check(bad):
    with pytest.raises(ValueError, match=r"no confidence: a draft is the exit's argmax\); pass \('exit',\) \(the "
                                         r"lens\) or \('exit', 'translator'\) \(tuned exits\)"):
        lat.self_speculative_run_ms(lm(), [[1]], 2, 2, 6, exit_pieces=bad)
    assert np.isfinite(lat.self_speculative_run_ms(lm(), [[1]], 2, 2, 6, exit_pieces=["translator", "exit"]))
