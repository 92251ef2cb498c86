"""Hostile checks from the 0.3 review (ad445d9..c039026): each test failed on the code it was written against."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from toolkit.caches.io import CacheError

ROOT = Path(__file__).resolve().parents[1]


def _shared_sst2():
    from toolkit.data.tasks import default_data_dir

    if default_data_dir() is None or not (Path(default_data_dir()) / "sst2" / "dev.tsv").is_file():
        pytest.skip("the shared data folder (../shared/data) is not on this machine")


def test_a_token_cache_cannot_dodge_the_label_check_by_blanking_one_label(tmp_path):
    """Labels are compared only where the prompt set has label words; one label set to -1 (no label word) used to
    switch the comparison off for every row, so three flipped labels loaded as data verified."""
    from toolkit.caches.tokens import load_llm_cache, save_llm_cache

    _shared_sst2()
    c = load_llm_cache(ROOT / "data" / "llm" / "smollm2_sst2_sentiment-test.parquet")
    labels = c.labels.copy()
    labels[:3] = 1 - labels[:3]
    labels[3] = -1
    out = save_llm_cache(dataclasses.replace(c, labels=labels), tmp_path / "blanked.parquet")
    with pytest.raises(CacheError, match=re.escape(f"{out}: key 'label': 4 of 60 labels differ from sst2/dev.tsv")):
        load_llm_cache(out)


def test_every_public_name_an_old_module_defined_is_still_there():
    """0.3 promises every 0.2 path still works for one release (docs/changelog.md); two public names defined in 0.2
    modules were dropped without an alias: toolkit.data.AGNEWS_TEST/AGNEWS_CAL (now in toolkit.data.tasks) and
    toolkit.policy.write_atomic (now toolkit.caches.io.write_atomic)."""
    import toolkit.data
    from toolkit.data import tasks

    assert (toolkit.data.AGNEWS_TEST, toolkit.data.AGNEWS_CAL) == (tasks.AGNEWS_TEST, tasks.AGNEWS_CAL)


def test_the_old_policy_writer_still_writes_with_a_deprecation_warning(tmp_path):
    import toolkit.policy as policy

    with pytest.warns(DeprecationWarning, match="toolkit.caches.io.write_atomic"):
        write_atomic = policy.write_atomic
    out = write_atomic(tmp_path / "p.json", "{}\n")
    assert out.read_text() == "{}\n"
    with pytest.raises(policy.PolicyError, match="is a directory"):  # the 0.2 error type
        write_atomic(tmp_path, "{}\n")


def test_toolkit_plot_draws_an_encoder_cache_at_a_batch_size_as_its_guide_says(tmp_path):
    """docs/guides/cli.md: at --batch above 1 ``toolkit plot`` draws the runtime's batches, as ``toolkit sweep
    --batch`` prices them (issue 31; before, each row's share of a full batch). Since 916f73c ``toolkit plot``
    refused every classification cache there, calling it an LLM token cache."""
    import matplotlib.pyplot as plt

    from toolkit.analysis import engine
    from toolkit.analysis.cost.latency import encoder_time_sweep, load_profile
    from toolkit.caches.classification import load_cache
    from toolkit.cli import build_parser
    from toolkit.cli.plot import figure

    cache, profile = ROOT / "data" / "sst2" / "minilm6_me-test.parquet", ROOT / "benchmarks" / "latency_profile_cpu.json"
    if not cache.exists() or not profile.exists():
        pytest.skip("the shipped SST-2 MiniLM-L6 cache or the CPU latency profile is not here")
    args = ["plot", str(cache), "--out", str(tmp_path / "f.png"), "--n-boot", "20", "--cal", "none",
            "--profile", str(profile), "--batch", "8"]
    fig, shown = figure(build_parser().parse_args(args))
    plt.close(fig)
    c = load_cache(cache)
    curve = encoder_time_sweep(engine.staged(c), load_profile(profile), n_tokens=c.n_tokens,
                               models=["all-MiniLM-L6-v2"], batch_size=8)
    assert shown["cost_unit"] == curve.meta["cost_unit"] and "batch 8" in shown["cost_unit"]


def test_warnings_from_keyword_option_functions_name_the_callers_line():
    """keyword_options adds a frame: a warning that named the caller of from_arrays (stacklevel counted without the
    wrapper) named toolkit/_api.py instead, where no user can act on it (and Python's default filters attribute it
    to the toolkit, not the script)."""
    import numpy as np

    from toolkit.caches.classification import from_arrays

    probs = np.full((2, 2, 2), 0.5)  # 4 rows that look like probabilities: a warning, not an error
    with pytest.warns(UserWarning, match="look like probabilities") as rec:
        from_arrays(probs, [0, 1], [1.0, 2.0])
    assert [Path(r.filename).name for r in rec] == [Path(__file__).name]


def test_the_manifest_records_each_llm_token_cache_model_as_its_header_does():
    """data/MANIFEST.json's ``model`` of an LLM token cache is the header's record (``zoo.manifest.cache_entry``);
    the five shipped caches gained ``weights_sha256`` in 0.3 (85e9c89) and the manifest kept the records from
    before (check_manifest compares metrics and data fingerprints only, so it did not say so)."""
    import json

    from toolkit.caches.tokens import load_llm_cache

    manifest = json.loads((ROOT / "data" / "MANIFEST.json").read_text())["caches"]
    keys = [k for k, e in manifest.items() if e.get("kind") == "llm_tokens"]
    assert len(keys) == 5
    for key in keys:
        model = load_llm_cache(ROOT / "data" / f"{key}.parquet", verify_data=False).model
        assert "weights_sha256" in model
        assert manifest[key]["model"] == json.loads(json.dumps(model, default=str)), key


def test_the_explorers_reliability_bins_refuse_positional_options_as_the_rest_do():
    """docs/protocol.md: a call passing an option by position is refused with a TypeError showing the call to write.
    reliability_bins became keyword-only in 0.3 without the guard, so Python's bare 'takes 2 positional arguments'
    was all a 0.2 call got."""
    import numpy as np

    from toolkit.analysis.explore.app import reliability_bins

    conf, outcome = np.array([0.2, 0.9]), np.array([0.0, 1.0])
    with pytest.raises(TypeError, match=re.escape("takes its options by keyword since 0.3: reliability_bins(conf, "
                                                  "outcome, n_bins=4)")):
        reliability_bins(conf, outcome, 4)
    assert reliability_bins(conf, outcome, n_bins=4)["count"].sum() == 2
