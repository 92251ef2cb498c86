"""The caches shipped in data/: they load, validate, rescore to their manifest, and hold no dataset text."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from toolkit.cache import load_cache
from toolkit.zoo import check_manifest

DATA = Path(__file__).resolve().parents[1] / "data"
MANIFEST = DATA / "MANIFEST.json"
pytestmark = pytest.mark.skipif(not MANIFEST.exists(), reason="no shipped caches")


def test_every_cache_rescores_to_its_manifest():
    assert check_manifest(DATA) == []


def test_caches_hold_ids_not_text():
    for key in json.loads(MANIFEST.read_text())["caches"]:
        path = DATA / f"{key}.parquet"
        assert pq.read_schema(path).names == ["example_id", "label", "n_tokens", "logits", "flops"]
        c = load_cache(path)
        assert all(i.startswith(f"{c.task}:") for i in c.example_ids[:10])


def test_cal_and_test_caches_pair_up():
    caches = json.loads(MANIFEST.read_text())["caches"]
    for key, entry in caches.items():
        if entry["split"] == "test":
            cal = caches.get(key.replace("-test", "-cal"))
            assert cal is not None and cal["stages"] == entry["stages"], key
