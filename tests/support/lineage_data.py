"""Toy data folders for the lineage tests: synthetic cascade caches of a task 'toy' with manifest entries written as
the zoo writes them (no build unless given: entries from before builds were recorded)."""

from __future__ import annotations

from toolkit.caches.classification import save_cache
from toolkit.testing import random_cascade_cache
from toolkit.zoo import lineage
from toolkit.zoo.manifest import cache_entry, update_manifest

FIRST = "toolkit zoo --task toy --set minilm6_me minilm6_me_w50"
RUNNER = "scripts/gpu_zoo.py /tmp/zoo --device cpu --workers 2"
SPLITS = ("cal", "test")


def toy_cache(seed: int, split: str, models: list[dict]):
    c = random_cascade_cache(30, exits=(1, 1), seed=seed, split=split)
    return c._derived(meta={**c.meta, "task": "toy", "models": models,
                            "data": {"fingerprint": "synthetic", "files": {}, "split_seed": 0}})


def ship(data, key: str, seed: int, command: str, *, build: str | None = None) -> None:
    """Write a toy cache at ``data/<key>.parquet`` with a manifest entry made by ``command``."""
    path = data / f"{key}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_cache(toy_cache(seed, lineage.parse_key(key)[3], [{"name": "small"}, {"name": key.split("/")[1]}]), path)
    entry = {**cache_entry(path, root=data.parent), "command": command}
    entry.pop("build")
    if build:
        entry["build"] = build
    update_manifest(data, key, entry)


def first_build(data) -> None:
    """The first build's minilm6_me and minilm6_me_w50 pairs and a runner's minilm6_me seed 42, unstamped."""
    for i, split in enumerate(SPLITS):
        ship(data, f"toy/minilm6_me-{split}", 10 + i, FIRST)
        ship(data, f"toy/minilm6_me_w50-{split}", 20 + i, FIRST)
        ship(data, f"toy/minilm6_me-s42-{split}", 30 + i, RUNNER)
