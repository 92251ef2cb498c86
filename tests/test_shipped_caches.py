"""The caches shipped in data/: they load, validate, rescore to their manifest, and hold no dataset text."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from toolkit.analysis.cache import load_cache
from toolkit.zoo import check_manifest

DATA = Path(__file__).resolve().parents[1] / "data"
MANIFEST = DATA / "MANIFEST.json"
pytestmark = pytest.mark.skipif(not MANIFEST.exists(), reason="no shipped caches")


def test_every_cache_rescores_to_its_manifest():
    assert check_manifest(DATA) == []


def test_caches_hold_ids_not_text():
    for key, entry in json.loads(MANIFEST.read_text())["caches"].items():
        path = DATA / f"{key}.parquet"
        if entry.get("kind") == "generation":  # model outputs only: label words for text-to-text
            from toolkit.analysis.generation_cache import load_generation_cache

            c = load_generation_cache(path)
            words = set(c.meta["label_words"])
            names = pq.read_schema(path).names
            assert not any("source" in n or "reference" in n or "target" in n for n in names)
            for g in c.models.values():
                assert set(g.text) <= words | {""} or len(set(g.text) - words) < 0.01 * len(g.text)
            assert all(i.startswith(f"{c.meta['task']}:") for i in c.example_ids[:10])
            continue
        assert pq.read_schema(path).names == ["example_id", "label", "n_tokens", "logits", "flops"]
        c = load_cache(path)
        assert all(i.startswith(f"{c.task}:") for i in c.example_ids[:10])


def test_cal_and_test_caches_pair_up():
    caches = json.loads(MANIFEST.read_text())["caches"]
    for key, entry in caches.items():
        if entry["split"] == "test":
            cal = caches.get(key.replace("-test", "-cal"))
            assert cal is not None and cal.get("stages") == entry.get("stages"), key
            assert [m["name"] for m in cal["models"]] == [m["name"] for m in entry["models"]], key
