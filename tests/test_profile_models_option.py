"""An empty list of profile models is refused wherever one is taken: ``explore(..., profile=, profile_models=[])``
and ``View.use_profile(models=[])`` fell back on the default models silently (``list(models) if models else``);
``with_predicted_time`` / ``time_sweep`` / ``encoder_time_sweep`` failed with an IndexError. A bare string
(``models="enc"``: its letters) is refused too. The message names the option and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.analysis.cost import latency as lat
from toolkit.analysis.engine import staged
from toolkit.caches.classification import from_arrays
from toolkit.testing import random_classification_cache, random_token_cache, synthetic_latency_profile


def cache(N, seed, split):
    """Three exits (the synthetic profile's 'enc'), with token counts and the model's name recorded."""
    c = random_classification_cache(N, 3, 2, seed=seed, split=split)
    return from_arrays(c.logits, c.labels, c.flops / 1e9, n_tokens=np.random.default_rng(seed).integers(3, 40, N),
                       meta={**c.meta, "models": [{"name": "enc"}]})


def test_explorer_refuses_empty_profile_models():
    pytest.importorskip("ipywidgets")
    from toolkit.analysis.explore.app import explore

    prof, cal, test = synthetic_latency_profile(), cache(60, 0, "cal"), cache(30, 1, "test")
    with pytest.raises(ValueError, match=r"^profile_models=\[\] names no model: omit it for the defaults \(the "
                                         r"profile's models for the cache's, by name\), or name one profiled model "
                                         r"per cascade member"):
        explore(cal, test, profile=prof, profile_models=[], n_boot=0)
    with pytest.raises(ValueError, match=r"^profile_models='enc' is one name, not a list: pass \['enc'\]"):
        explore(cal, test, profile=prof, profile_models="enc", n_boot=0)
    ex = explore(cal, test, profile=prof, n_boot=0)  # the defaults: the cache's model by name
    assert ex.view.latency[1] == ["enc"]
    with pytest.raises(ValueError, match=r"^models=\[\] names no model: omit it for the defaults"):
        ex.view.use_profile(prof, models=[])
    assert ex.view.latency[1] == ["enc"]  # unchanged by the refused call


@pytest.mark.parametrize("bad", [[], (), "enc"], ids=repr)
def test_latency_pricing_refuses_empty_or_string_models(bad):
    prof, test = synthetic_latency_profile(), cache(30, 1, "test")
    tokens = staged(random_token_cache(12, layers=4, families=("lens",), mean_length=5, seed=0, split="test"),
                    family="lens")
    calls = [lambda: lat.with_predicted_time(staged(test), prof, test.n_tokens, models=bad),
             lambda: lat.with_predicted_time(tokens, prof, None, models=bad),
             lambda: lat.encoder_time_sweep(test, prof, models=bad, batch_size=4),
             lambda: lat.time_sweep(tokens, prof, models=bad, batch_size=2)]
    for call in calls:
        with pytest.raises(ValueError, match=r"^models=(\[\]|\(\)|'enc') (names no model: models_for\(cache.meta, "
                                             r"profile\) gives the cache's|is one name, not a list)"):
            call()
    assert lat.check_profile_models(("enc",)) == ["enc"]
