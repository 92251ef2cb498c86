"""Hostile-input and wrong-answer checks of the zoo's lineage records and run-folder clean-up (review of issue 29's
lineage, catalogue and temporaries code)."""

from __future__ import annotations

import pytest

from toolkit.zoo import lineage

GPU = "NVIDIA H100 80GB HBM3"  # what train_meta.json records as a GPU run's device (torch.cuda.get_device_name)


@pytest.mark.parametrize("command", ["scripts/gpu_zoo.py OUT --deadline 500", "scripts/gpu_zoo.py OUT --device cuda"])
def test_infer_build_of_a_gpu_runner_entry_is_v2(command):
    # train_meta.json's device is the GPU's name, never "cuda": a runner that found a GPU ran the v2 profile
    models = [{"name": "minilm-l2", "device": GPU}, {"name": "mpnet", "device": GPU}]
    assert lineage.infer_build("sst2/cascade-s42-test", {"command": command, "models": models}) == "v2"


def test_infer_build_of_a_runner_entry_without_device_or_profile_is_refused():
    with pytest.raises(ValueError, match=r"sst2/cascade-s42-test: .*record its build by hand"):
        lineage.infer_build("sst2/cascade-s42-test", {"command": "scripts/gpu_zoo.py OUT", "models": [{}]})


# ----------------------------------------------------------------------------------------------- parent_of
def _stamped_first_build(data):
    import json

    from support.lineage_data import first_build
    from toolkit.zoo.manifest import stamp_manifest

    first_build(data)
    stamp_manifest(data)
    return json.loads((data / "MANIFEST.json").read_text())


def _edit_record(data, entry, /, **change):
    import json

    path = data / "MANIFEST.json"
    m = json.loads(path.read_text())
    m["caches"][entry]["derived_from"].update(change)
    path.write_text(json.dumps(m))


def test_parent_of_checks_the_file_it_returns_not_another_the_record_names(tmp_path, monkeypatch):
    import shutil

    from support.lineage_data import toy_cache
    from toolkit.caches.classification import save_cache
    from toolkit.caches.io import CacheError
    from toolkit.zoo import catalogue

    monkeypatch.setenv("TOOLKIT_NB_DATA", str(tmp_path))
    _stamped_first_build(tmp_path)
    # the record's file keeps the parent's old content, while the parent that parent_of reads was rebuilt
    shutil.copy(tmp_path / "toy" / "minilm6_me-test.parquet", tmp_path / "toy" / "kept-test.parquet")
    _edit_record(tmp_path, "toy/minilm6_me_w50-test", file="toy/kept-test.parquet")
    save_cache(toy_cache(99, "test", [{"name": "small"}, {"name": "minilm6_me"}]),
               tmp_path / "toy" / "minilm6_me-test.parquet")
    with pytest.raises(CacheError, match=r"toy/minilm6_me_w50-test.*'derived_from'.*toy/kept-test.parquet"):
        catalogue.parent_of("toy", "minilm6_me_w50")


@pytest.mark.parametrize("change", [{"file": "../outside/minilm6_me-test.parquet"},
                                    {"file": "/etc/minilm6_me-test.parquet"},
                                    {"key": "other/minilm6_me-test", "file": "other/minilm6_me-test.parquet"},
                                    {"key": "toy/minilm6_me-cal", "file": "toy/minilm6_me-cal.parquet"}])
def test_parent_of_refuses_a_record_naming_another_task_split_or_a_file_outside_the_data_folder(
        tmp_path, monkeypatch, change):
    from toolkit.caches.io import CacheError
    from toolkit.zoo import catalogue

    monkeypatch.setenv("TOOLKIT_NB_DATA", str(tmp_path))
    _stamped_first_build(tmp_path)
    _edit_record(tmp_path, "toy/minilm6_me_w50-test", **change)
    with pytest.raises(CacheError, match=r"MANIFEST.json: entry 'toy/minilm6_me_w50-test'.*'derived_from'"):
        catalogue.parent_of("toy", "minilm6_me_w50")


# ----------------------------------------------------------------------------------------------- compare options
@pytest.mark.parametrize("value", [10 ** 400, -(10 ** 400)])
def test_an_int_too_large_for_a_float_is_refused_with_the_options_message(value):
    from toolkit.analysis.engine.compare import _check_real

    with pytest.raises(ValueError, match=r"coverage must be a share of examples, 0 < q <= 1, got -?1000"):
        _check_real(value, "coverage must be a share of examples, 0 < q <= 1", valid=lambda q: 0 < q <= 1)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        _check_real(value, "threshold must be a finite number")


# ----------------------------------------------------------------------------------------------- --merge
def test_merge_refuses_a_derived_cache_of_another_build_than_its_parent_before_copying_anything(tmp_path):
    from support.lineage_data import RUNNER, SPLITS, ship
    from toolkit.zoo.manifest import merge_manifest

    src, dst = tmp_path / "out" / "data", tmp_path / "repo" / "data"
    for i, split in enumerate(SPLITS):
        ship(dst, f"toy/minilm6_me-s42-{split}", 10 + i, "toolkit zoo --task toy --set minilm6_me --seed 42",
             build="v2")  # shipped parent of the v2 recipe
        ship(src, f"toy/minilm6_me_w50-s42-{split}", 20 + i, RUNNER)  # a CPU runner's slim, no build recorded
    before = (dst / "MANIFEST.json").read_text()
    with pytest.raises(ValueError, match=r"toy/minilm6_me_w50-s42-cal.*build 'cpu'.*toy/minilm6_me-s42-cal.*'v2'"):
        merge_manifest(src, dst)
    assert (dst / "MANIFEST.json").read_text() == before
    assert not (dst / "toy" / "minilm6_me_w50-s42-cal.parquet").exists()


def test_stamp_keeps_a_build_recorded_by_hand_where_it_cannot_be_inferred(tmp_path):
    from support.lineage_data import RUNNER, SPLITS, ship
    from toolkit.zoo.manifest import stamp_manifest

    for i, split in enumerate(SPLITS):  # a runner's entry without a seed: infer_build asks for the build by hand
        ship(tmp_path, f"toy/cascade-{split}", 10 + i, RUNNER, build="v2")
    with pytest.raises(ValueError, match="record its build by hand"):
        lineage.infer_build("toy/cascade-test", {"command": RUNNER})
    assert stamp_manifest(tmp_path) == []  # recorded: kept, nothing to infer


# ----------------------------------------------------------------------------------------------- stamp_lineage.py
def _stamp_lineage():
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("stamp_lineage", REPO / "scripts" / "stamp_lineage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("check", [[], ["--check"]])
def test_stamp_lineage_refuses_a_folder_without_a_manifest_and_writes_nothing(tmp_path, capsys, check):
    with pytest.raises(SystemExit, match=rf"{tmp_path}/MANIFEST.json: no such manifest; give --data the folder"):
        _stamp_lineage().main(["--data", str(tmp_path), *check])
    assert list(tmp_path.iterdir()) == []  # no empty manifest, no lock file


@pytest.mark.parametrize("check", [[], ["--check"]])
def test_stamp_lineage_reports_a_lineage_problem_as_an_error_line(tmp_path, capsys, check):
    import json

    from support.lineage_data import toy_cache
    from toolkit.caches.classification import save_cache

    _stamped_first_build(tmp_path)
    save_cache(toy_cache(99, "test", [{"name": "small"}, {"name": "minilm6_me"}]),
               tmp_path / "toy" / "minilm6_me-test.parquet")  # the parent rebuilt after the slim was made
    m = json.loads((tmp_path / "MANIFEST.json").read_text())
    del m["caches"]["toy/minilm6_me-s42-cal"]["build"]  # something left to stamp
    (tmp_path / "MANIFEST.json").write_text(json.dumps(m))
    before = (tmp_path / "MANIFEST.json").read_text()
    assert _stamp_lineage().main(["--data", str(tmp_path), *check]) == 2
    assert "error: toy/minilm6_me_w50-test: its recorded parent" in capsys.readouterr().err
    assert (tmp_path / "MANIFEST.json").read_text() == before


@pytest.mark.parametrize("key", ["../escape/minilm6_me-s42-test", "toy/../../escape/minilm6_me-s42-test",
                                 "/abs/minilm6_me-s42-test"])
def test_merge_refuses_a_key_that_points_outside_the_data_folders(tmp_path, key):
    import json

    from support.lineage_data import RUNNER, ship
    from toolkit.zoo.manifest import merge_manifest

    src, dst = tmp_path / "out" / "data", tmp_path / "repo" / "data"
    ship(src, "toy/minilm6_me-s42-test", 10, RUNNER)
    m = json.loads((src / "MANIFEST.json").read_text())
    entry = m["caches"].pop("toy/minilm6_me-s42-test")
    m["caches"][key] = entry
    (src / "MANIFEST.json").write_text(json.dumps(m))
    source = src / f"{key.lstrip('/')}.parquet" if key.startswith("/") else src / f"{key}.parquet"
    source.parent.mkdir(parents=True, exist_ok=True)
    (src / "toy" / "minilm6_me-s42-test.parquet").rename(source)
    with pytest.raises(ValueError, match=rf"{src}/MANIFEST.json: key '{key}'.*<task>/<name>"):
        merge_manifest(src, dst)
    assert not (tmp_path / "repo" / "escape").exists() and not (dst / "MANIFEST.json").exists()


# ----------------------------------------------------------------------------------------------- the runner's plan
def test_a_derived_set_whose_parents_caches_are_shipped_is_planned(tmp_path):
    from conftest import REPO
    from toolkit.zoo.build import plan
    from toolkit.zoo.jobs import without_finished

    # sst2/minilm6_me-s42-{cal,test} are shipped: its collect job was dropped while the slim's collect still needed it
    jobs = without_finished(plan(["sst2"], ["minilm6_me_w50"], [42], profile="cpu"), tmp_path / "out",
                            also=(REPO / "data",))
    ids = {j.id for j in jobs}
    assert "sst2/minilm6_me_w50-s42/collect" in ids
    assert all(n in ids for j in jobs for n in j.needs)  # what run_jobs requires of its list


# ----------------------------------------------------------------------------------------------- load_seeds
def test_load_seeds_refuses_to_mix_builds_among_the_seeds_it_reads(tmp_path, monkeypatch):
    from support.lineage_data import RUNNER, SPLITS, ship
    from toolkit.zoo import catalogue

    monkeypatch.setenv("TOOLKIT_NB_DATA", str(tmp_path))
    for i, split in enumerate(SPLITS):
        ship(tmp_path, f"toy/minilm6_me-s42-{split}", 10 + i, RUNNER, build="cpu")
        ship(tmp_path, f"toy/minilm6_me-s43-{split}", 20 + i, "scripts/gpu_zoo.py OUT --device cuda", build="v2")
    with pytest.raises(ValueError, match=r"toy/minilm6_me: its per-seed files are of builds \['cpu', 'v2'\] "
                                         r"\(seed 42: cpu; seed 43: v2\).*build="):
        catalogue.load_seeds("toy", "minilm6_me", verbose=False)
    assert catalogue.load_seeds("toy", "minilm6_me", build="v2", verbose=False).seeds == (43,)


def test_a_set_the_cpu_profile_trains_with_the_v2_recipe_is_stamped_v2():
    from dataclasses import asdict

    from toolkit.zoo.build import build_of
    from toolkit.zoo.recipes import CPU_KEEPS_V2, recipe

    for task, member in CPU_KEEPS_V2:  # the same run as the v2 profile's: its caches are of that build
        assert asdict(recipe(task, member, profile="cpu")) == asdict(recipe(task, member, profile="v2"))
        assert build_of(task, member, "cpu") == "v2"
    assert build_of("sst2", "minilm6_me", "cpu") == "cpu" and build_of("mrpc", "cascade", "cpu") == "cpu"
    assert build_of("mrpc", "minilm6_me", "v2") == "v2"


# ----------------------------------------------------------------------------------------------- shipped builds
def test_every_shipped_zoo_entrys_build_is_the_recipe_its_models_record():
    """Each trained model of a shipped zoo cache has the epochs (and for v2/cpu, patience and batch size) of its
    entry's build's recipe: a cache stamped with the wrong build, or a build mislabelled on landing, fails here."""
    import json

    from conftest import REPO
    from toolkit.zoo.build import NAMES
    from toolkit.zoo.recipes import PROBES, SCHEDULE, recipe

    member = {v: k for k, v in NAMES.items()}
    checked = 0
    for key, e in json.loads((REPO / "data" / "MANIFEST.json").read_text())["caches"].items():
        if e["build"] == "external" or e.get("kind", "classification") != "classification":
            continue
        task, _, seed, _ = lineage.parse_key(key)
        for m in e.get("models", []):
            if m.get("borrowed_from") or member.get(m["name"]) in (None, *PROBES):  # not trained by a recipe here
                continue
            name = member[m["name"]]
            if e["build"] == "v1":
                sched = SCHEDULE[task]
                want = (sched.get(name, sched["default"])[0],)
                got = (m["epochs"],)
            else:
                r = recipe(task, name, seed=seed, profile=e["build"])
                want, got = (r.epochs, r.patience, r.batch_size), (m["epochs"], m.get("patience"), m.get("batch_size"))
            assert got == want, f"{key} ({e['build']}): {m['name']} has {got}, the {e['build']} recipe {want}"
            checked += 1
    assert checked >= 100
