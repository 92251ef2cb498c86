"""Builds and lineage of the shipped caches (toolkit.zoo.lineage): every manifest entry says its build, every derived
set records its parent's file and content hash, the catalogue pairs a derived set with exactly that parent
(catalogue.parent_of / derived_pair) and refuses any other pairing (catalogue.check_parent), and the zoo's writers
(collect, --merge) keep the records."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest

from conftest import REPO
from support.lineage_data import RUNNER
from support.lineage_data import first_build as _first_build
from support.lineage_data import ship as _ship
from support.lineage_data import toy_cache as _toy_cache
from toolkit.caches.classification import save_cache
from toolkit.caches.io import CacheError
from toolkit.zoo import catalogue, lineage
from toolkit.zoo.manifest import merge_manifest, stamp_manifest

DATA = REPO / "data"
SHIPPED = json.loads((DATA / "MANIFEST.json").read_text())["caches"]


# ----------------------------------------------------------------------------------------------- shipped caches
def test_every_shipped_entry_has_a_build_and_every_derived_parent_matches_its_file():
    assert all(e.get("build") in lineage.BUILDS for e in SHIPPED.values()), \
        sorted(k for k, e in SHIPPED.items() if e.get("build") not in lineage.BUILDS)
    derived = [k for k in SHIPPED if lineage.parent_key(k) and SHIPPED[k].get("kind", "classification") == "classification"]
    assert len(derived) >= 6  # w50 on SST-2 and AG News, w25 on SST-2, cal and test each
    for key in derived:
        rec = SHIPPED[key]["derived_from"]
        assert rec["key"] == lineage.parent_key(key) and rec["build"] == SHIPPED[key]["build"] == \
            SHIPPED[rec["key"]]["build"], key
        assert rec["content_sha256"] == lineage.content_hash(DATA / rec["file"]), f"{key}: parent {rec['file']} changed"
    # the backfill is complete and idempotent: stamping the shipped manifest again changes nothing
    assert lineage.stamp(copy.deepcopy(SHIPPED), DATA) == []


def test_the_slims_are_of_the_first_build_and_pair_with_its_minilm6_me():
    slim, parent = catalogue.derived_pair("sst2", "minilm6_me_w50")
    assert slim.builds == parent.builds == ("v1",) and not parent.per_seed
    assert [parent.identity[0][s].key for s in catalogue.SPLITS] == ["sst2/minilm6_me-cal", "sst2/minilm6_me-test"]
    assert np.array_equal(parent.test[0].logits, catalogue.load("sst2", "minilm6_me")[1].logits)
    assert "chosen over the per-seed files" in parent.source


def test_pairing_a_slim_with_the_cpu_builds_minilm6_me_is_refused_naming_both_builds():
    """The confound the old convention left open: load_seeds' default for minilm6_me is the CPU build's per-seed
    files (20,000 SST-2 sentences); pairing the slim with its seed 42 must fail, naming both builds."""
    slim = catalogue.load_seeds("sst2", "minilm6_me_w50", verbose=False)
    per_seed = catalogue.load_seeds("sst2", "minilm6_me", verbose=False)
    assert per_seed.per_seed and set(per_seed.builds) == {"cpu"}
    s42 = dataclasses.replace(per_seed, seeds=per_seed.seeds[:1], cal=per_seed.cal[:1], test=per_seed.test[:1],
                              files=per_seed.files[:1], identity=per_seed.identity[:1])
    for wrong in (s42, per_seed):
        with pytest.raises(ValueError, match=r"build 'v1'.*minilm6_me-s42-test \(build 'cpu'\).*derived_pair"):
            catalogue.check_parent(slim, wrong)
    with pytest.raises(ValueError, match="records no parent"):  # a set that is not derived
        catalogue.check_parent(per_seed, per_seed)


def test_load_seeds_and_recipe_by_build():
    v1 = catalogue.load_seeds("sst2", "minilm6_me", build="v1", verbose=False)
    assert v1.builds == ("v1",) and v1.passed_over == (42, 43, 44)
    assert catalogue.recipe("sst2", "minilm6_me", build="v1")["training examples"].tolist() == [65349]
    assert catalogue.load_seeds("sst2", "minilm6_me", build="cpu", verbose=False).seeds == (42, 43, 44)
    with pytest.raises(FileNotFoundError, match=r"no build 'v2' of sst2/minilm6_me.*\['cpu', 'v1'\]"):
        catalogue.load_seeds("sst2", "minilm6_me", build="v2", verbose=False)
    with pytest.raises(ValueError, match="not both"):
        catalogue.load_seeds("sst2", "minilm6_me", build="v1", single_seed=True, verbose=False)
    # single_seed=True is kept as the pair, whatever its build: here the same files as build="v1"
    pair = catalogue.load_seeds("sst2", "minilm6_me", single_seed=True, verbose=False)
    assert pair.identity == v1.identity


# ----------------------------------------------------------------------------------------------- toy data folders
def test_parent_of_checks_the_recorded_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_NB_DATA", str(tmp_path))
    _first_build(tmp_path)
    with pytest.raises(CacheError, match="records no parent.*stamp_lineage"):
        catalogue.parent_of("toy", "minilm6_me_w50")
    assert len(stamp_manifest(tmp_path)) == 6 and stamp_manifest(tmp_path) == []  # idempotent
    caches = json.loads((tmp_path / "MANIFEST.json").read_text())["caches"]
    assert {k: e["build"] for k, e in caches.items() if "-test" in k} == {
        "toy/minilm6_me-test": "v1", "toy/minilm6_me_w50-test": "v1", "toy/minilm6_me-s42-test": "cpu"}
    slim, parent = catalogue.derived_pair("toy", "minilm6_me_w50")
    assert [i["test"].key for i in parent.identity] == ["toy/minilm6_me-test"]
    with pytest.raises(ValueError, match=r"toy/minilm6_me-test \(build 'v1'\), not from toy/minilm6_me-s42-cal "
                                         r"\(build 'cpu'\)"):
        catalogue.check_parent(slim, catalogue.load_seeds("toy", "minilm6_me", verbose=False))

    # the parent is rebuilt after the slim was made: its hash no longer matches, and both readers say so
    save_cache(_toy_cache(99, "test", [{"name": "small"}, {"name": "minilm6_me"}]), tmp_path / "toy" / "minilm6_me-test.parquet")
    with pytest.raises(CacheError, match=r"minilm6_me-test.parquet: content .* is not the parent .*rebuild toy/minilm6_me_w50"):
        catalogue.parent_of("toy", "minilm6_me_w50")
    with pytest.raises(ValueError, match="the parent was rebuilt after toy/minilm6_me_w50-test was derived"):
        stamp_manifest(tmp_path)


@pytest.mark.parametrize("key, command, models, build", [
    ("sst2/minilm6_me-test", "toolkit zoo --task sst2 --set minilm6_me cascade", [], "v1"),
    ("mrpc/minilm6_me-s43-test", "toolkit zoo --task mrpc --set minilm6_me --seed 43", [{"device": "cpu"}], "v2"),
    ("sst2/cascade-s42-cal", RUNNER, [{"device": "cpu"}], "cpu"),
    ("sst2/cascade-s42-cal", "scripts/gpu_zoo.py OUT --deadline 500", [{"device": "cuda"}], "v2"),
    ("sst2/cascade-s42-cal", "scripts/gpu_zoo.py OUT --device cpu --profile v2", [], "v2"),
    ("sst2/smollm2_probe-test", "toolkit llm-classify --model SmolLM2-135M-Instruct", [], "external"),
    ("lmeval/sst2-test", "python scripts/make_lmeval_caches.py", [], "external"),
])
def test_infer_build(key, command, models, build):
    assert lineage.infer_build(key, {"command": command, "models": models}) == build


def test_infer_build_refuses_a_runner_entry_without_a_seed():
    with pytest.raises(ValueError, match="record its build by hand"):
        lineage.infer_build("sst2/minilm6_me-test", {"command": RUNNER})


def test_derived_sets_agree_with_the_recipes():
    from toolkit.zoo.build import NAMES, SETS
    from toolkit.zoo.recipes import SLENDER

    assert {m: s["teacher"] for m, s in SLENDER.items()} == {m: lineage.DERIVED[m][0] for m in lineage.DERIVED}
    assert all(SETS[p] == (p,) and NAMES[p] == model for p, model, _ in lineage.DERIVED.values())


def test_a_derived_sets_collect_job_waits_for_its_parents_caches():
    from toolkit.zoo.build import plan

    jobs = {j.id: j for j in plan(["sst2"], ["minilm6_me_w50"], [42])}
    assert "sst2/minilm6_me-s42/collect" in jobs["sst2/minilm6_me_w50-s42/collect"].needs
    assert list(jobs).index("sst2/minilm6_me-s42/collect") < list(jobs).index("sst2/minilm6_me_w50-s42/collect")
    probe = {j.id: j for j in plan(["sst2"], ["minilm6_probe"], [42])}  # not derived: no cascade to collect
    assert not any(j.endswith("/collect") for j in probe if j != "sst2/minilm6_probe-s42/collect")


# ----------------------------------------------------------------------------------------------- --merge
def test_merge_stamps_old_runner_entries_and_guards_recorded_parents(tmp_path):
    src, dst = tmp_path / "out" / "data", tmp_path / "repo" / "data"
    for i, split in enumerate(catalogue.SPLITS):  # an old runner's entries: no build, no derived_from
        _ship(src, f"toy/minilm6_me-s42-{split}", 40 + i, RUNNER)
        _ship(src, f"toy/minilm6_me_w50-s42-{split}", 50 + i, RUNNER)
    merged = merge_manifest(src, dst)
    caches = json.loads((dst / "MANIFEST.json").read_text())["caches"]
    assert {caches[k]["build"] for k in merged} == {"cpu"}
    rec = caches["toy/minilm6_me_w50-s42-test"]["derived_from"]
    assert (rec["key"], rec["build"]) == ("toy/minilm6_me-s42-test", "cpu")
    assert rec["content_sha256"] == lineage.content_hash(dst / "toy" / "minilm6_me-s42-test.parquet")
    assert merge_manifest(src, dst) == merged  # landing the same caches again is fine

    # a rebuilt parent alone would orphan the shipped slim: refused before anything is copied
    before = (dst / "MANIFEST.json").read_text()
    other = tmp_path / "other" / "data"
    for i, split in enumerate(catalogue.SPLITS):
        _ship(other, f"toy/minilm6_me-s42-{split}", 60 + i, RUNNER)
    with pytest.raises(ValueError, match="would orphan them"):
        merge_manifest(other, dst)
    assert (dst / "MANIFEST.json").read_text() == before

    # a derived cache whose parent is neither merged with it nor shipped: refused
    lone = tmp_path / "lone" / "data"
    for i, split in enumerate(catalogue.SPLITS):
        _ship(lone, f"toy/minilm6_me_w50-s43-{split}", 70 + i, RUNNER)
    with pytest.raises(ValueError, match="neither merged with it nor shipped"):
        merge_manifest(lone, dst)
