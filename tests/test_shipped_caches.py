"""The caches shipped in data/: they load, validate, rescore to their manifest, and hold no dataset text."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from toolkit.caches.classification import load_cache
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
            from toolkit.caches.generation import load_generation_cache

            c = load_generation_cache(path)
            words = set(c.meta["label_words"])
            names = pq.read_schema(path).names
            assert not any("source" in n or "reference" in n or "target" in n for n in names)
            for g in c.models.values():
                assert set(g.text) <= words | {""} or len(set(g.text) - words) < 0.01 * len(g.text)
            assert all(i.startswith(f"{c.meta['task']}:") for i in c.example_ids[:10])
            continue
        if entry.get("kind") == "llm_tokens":  # token ids the model generated, no prompt or reference text
            from toolkit.caches.tokens import load_llm_cache

            c = load_llm_cache(path)
            schema = pq.read_schema(path)
            assert [n for n in schema.names if str(schema.field(n).type) == "string"] == ["example_id"]
            assert all(i.startswith(f"{c.meta['task']}:") for i in c.example_ids[:10])
            _no_source_text_in_header(path, c.meta["task"], c.meta["split"], c.example_ids)
            continue
        assert pq.read_schema(path).names == ["example_id", "label", "n_tokens", "logits", "flops"]
        c = load_cache(path)
        assert all(i.startswith(f"{c.task}:") for i in c.example_ids[:10])


def _no_source_text_in_header(path, task, split, ids):
    """None of the cached examples' source sentences appears in the file's JSON header (where the prompt template
    is recorded)."""
    from toolkit.caches.io import read_header
    from toolkit.data.tasks import load_split

    try:
        frame = load_split(task, split).frame.set_index("example_id")
    except FileNotFoundError:
        pytest.skip("../shared/data not found: the source sentences cannot be checked")
    header = json.dumps(read_header(path), ensure_ascii=False)
    texts = [t for t in frame.loc[list(ids), "text_a"] if len(t) > 20]
    assert texts and not any(t in header for t in texts)


def test_cal_and_test_caches_pair_up():
    caches = json.loads(MANIFEST.read_text())["caches"]
    for key, entry in caches.items():
        if entry["split"] == "test" and not entry.get("test_only"):
            cal = caches.get(key.replace("-test", "-cal"))
            assert cal is not None and cal.get("stages") == entry.get("stages"), key
            if entry.get("kind") == "llm_tokens":
                same = [{k: v for k, v in e["model"].items() if k != "weights_sha256_added"} for e in (cal, entry)]
                assert cal["families"].keys() == entry["families"].keys() and same[0] == same[1], key  # per-file note
                continue
            assert [m["name"] for m in cal["models"]] == [m["name"] for m in entry["models"]], key


def test_every_shipped_cache_is_in_the_manifest():
    """No cache in data/ without an entry saying how it was made (and numbers that are checked)."""
    keys = set(json.loads(MANIFEST.read_text())["caches"])
    on_disk = {str(p.relative_to(DATA).with_suffix("")) for p in DATA.rglob("*.parquet")}
    assert on_disk - keys == set(), f"caches without a manifest entry: {sorted(on_disk - keys)}"
    assert keys - on_disk == set(), f"manifest entries without a cache: {sorted(keys - on_disk)}"


def test_readme_cache_table_is_current():
    from toolkit.zoo import readme as readme_sections
    from toolkit.zoo import readme_table

    want = "<!-- shipped-caches:start -->\n" + readme_table(DATA) + "\n<!-- shipped-caches:end -->"
    assert readme_sections.current("shipped-caches") == want, \
        "docs/results/caches.md is stale: replace it with `toolkit.zoo.readme_table()` (between the shipped-caches markers)"


def test_readme_seed_table_is_current():
    from toolkit.zoo import readme as readme_sections
    from toolkit.zoo import seed_table

    want = "<!-- seed-table:start -->\n" + seed_table(DATA) + "\n<!-- seed-table:end -->"
    assert readme_sections.current("seed-table") == want, "docs/results/caches.md's seed table is stale: `toolkit.zoo.seed_table()`"


def test_readme_cpu_table_is_current():
    from toolkit.zoo import cpu, readme

    assert readme.current(cpu.SECTION) == cpu.section(DATA), \
        "docs/results/caches.md's CPU table is stale: `toolkit.zoo.readme.write('cpu-table', toolkit.zoo.cpu.section())`"
