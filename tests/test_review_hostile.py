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
