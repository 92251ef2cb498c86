"""A classification cache is "data verified" only when its rows are the data's: labels and example ids are checked
against the source files, not just the files' hashes (audit item A8: before, a cache whose labels were flipped and
saved again through the library still loaded with ``data_verified`` True)."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from toolkit.caches.classification import CacheError, from_arrays, load_cache, save_cache

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "data" / "sst2" / "minilm6_me-test.parquet"


def _collected(data: Path, split: str, tmp_path: Path, *, task: str = "sst2", **change):
    """A cache as a collector writes it: ids, labels and data meta from ``load_split`` (``change`` edits them)."""
    from toolkit.data.tasks import load_split

    d = load_split(task, split, data)
    ids, labels = d.frame.example_id.to_numpy(), d.frame.label.to_numpy().copy()
    ids, labels = change.get("ids", ids), change.get("labels", labels)
    meta = {"task": task, "split": change.get("claimed", split),
            "data": {"source": "local", "files": d.files, "data_dir": str(data), "split_seed": d.split_seed}}
    c = from_arrays(np.zeros((len(labels), 1, 2)), labels, [1.0], example_ids=ids, meta=meta)
    return save_cache(c, tmp_path / f"{task}-{split}.parquet"), labels


def test_the_shipped_cache_with_flipped_labels_saved_again_is_not_verified(tmp_path):
    from toolkit.data.tasks import default_data_dir

    if default_data_dir() is None or not (Path(default_data_dir()) / "sst2" / "dev.tsv").is_file():
        pytest.skip("the shared data folder (../shared/data) is not on this machine")
    c = load_cache(SHIPPED)
    assert c.meta["data_verified"] is True
    labels = c.labels.copy()
    labels[:50] = 1 - labels[:50]
    out = save_cache(dataclasses.replace(c, labels=labels), tmp_path / "flipped.parquet")
    with pytest.raises(CacheError, match=re.escape(f"{out}: key 'label': 50 of 872 labels differ from sst2/dev.tsv")):
        load_cache(out)
    assert "data_verified" not in load_cache(out, verify_data=False).meta  # loads when asked, never as verified
    same = save_cache(c, tmp_path / "same.parquet")  # saved again unchanged: still verified
    assert load_cache(same).meta["data_verified"] is True


def test_collected_cache_verifies_and_one_flipped_label_is_named(glue_dir, tmp_path):
    p, labels = _collected(glue_dir, "test", tmp_path)
    assert load_cache(p).meta["data_verified"] is True
    flipped = labels.copy()
    flipped[3] = 1 - flipped[3]
    p, _ = _collected(glue_dir, "test", tmp_path, labels=flipped)
    with pytest.raises(CacheError, match=r"1 of \d+ labels differ .*first: sst2:validation:3 is "
                                         f"{flipped[3]} here, {labels[3]} in the data"):
        load_cache(p)


def test_rows_of_another_split_or_file_are_refused(glue_dir, tmp_path):
    p, _ = _collected(glue_dir, "cal", tmp_path)
    assert load_cache(p).meta["data_verified"] is True
    p, _ = _collected(glue_dir, "cal", tmp_path, claimed="train")  # cal rows claimed as train
    with pytest.raises(CacheError, match=r"rows of sst2/train.tsv are not in split 'train'"):
        load_cache(p)
    p, _ = _collected(glue_dir, "cal", tmp_path, claimed="test")  # train-file rows claimed as test
    with pytest.raises(CacheError, match=r"not in split 'test'"):
        load_cache(p)
    p, labels = _collected(glue_dir, "test", tmp_path)
    ids = np.array([f"sst2:train:{i}" for i in range(len(labels))])
    p, _ = _collected(glue_dir, "test", tmp_path, ids=ids)  # rows of a file the cache does not name
    with pytest.raises(CacheError, match=r"ids sst2:train:\* are rows of sst2/train.tsv, which the cache's meta key "
                                         r"'data.files' does not name"):
        load_cache(p)
    big = np.array([f"sst2:validation:{10**6 + i}" for i in range(len(labels))])
    p, _ = _collected(glue_dir, "test", tmp_path, ids=big)
    with pytest.raises(CacheError, match=r"is beyond the \d+ rows of sst2/dev.tsv"):
        load_cache(p)


def test_rows_that_cannot_be_tied_to_the_data_are_not_verified(glue_dir, tmp_path):
    # before: True, from the file hashes alone
    p, labels = _collected(glue_dir, "test", tmp_path)
    p, _ = _collected(glue_dir, "test", tmp_path, ids=np.array([str(i) for i in range(len(labels))]))
    assert load_cache(p).meta["data_verified"] is False
    other = tmp_path / "data"
    shutil.copytree(glue_dir, other)
    p, _ = _collected(other, "test", tmp_path, ids=np.array([f"nosuchtask:validation:{i}" for i in
                                                            range(len(labels))]))
    assert load_cache(p).meta["data_verified"] is False


def test_a_token_cache_with_flipped_labels_saved_again_is_not_verified(tmp_path):
    from toolkit.caches.tokens import load_llm_cache, save_llm_cache
    from toolkit.data.tasks import default_data_dir

    if default_data_dir() is None or not (Path(default_data_dir()) / "sst2" / "dev.tsv").is_file():
        pytest.skip("the shared data folder (../shared/data) is not on this machine")
    c = load_llm_cache(ROOT / "data" / "llm" / "smollm2_sst2_sentiment-test.parquet")
    assert c.meta["data_verified"] is True
    labels = c.labels.copy()
    labels[:3] = 1 - labels[:3]
    out = save_llm_cache(dataclasses.replace(c, labels=labels), tmp_path / "flipped.parquet")
    with pytest.raises(CacheError, match=re.escape(f"{out}: key 'label': 3 of 60 labels differ from sst2/dev.tsv")):
        load_llm_cache(out)
    # a prompt set without label words (-1): ids and split still checked
    head = load_llm_cache(ROOT / "data" / "llm" / "smollm2_agnews_headline-cal.parquet")
    assert head.meta["data_verified"] is True and (head.labels == -1).all()
    moved = save_llm_cache(dataclasses.replace(head, meta={**head.meta, "split": "test"}), tmp_path / "m.parquet")
    with pytest.raises(CacheError, match="not in split 'test'"):
        load_llm_cache(moved)
