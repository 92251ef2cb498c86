import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SHARED_DATA, requires_shared_data
from toolkit.data.tasks import TASKS, DataError, get_task, load_split, read_source, split_indices

EXPECTED = {("sst2", "test"): 872, ("mrpc", "test"): 408, ("cola", "test"): 1043, ("rte", "test"): 277,
            ("qnli", "test"): 5463, ("agnews", "test"): 2000, ("agnews", "cal"): 1000, ("agnews", "train"): 4600,
            ("sst2", "cal"): 2000, ("sst2", "train"): 65349, ("mrpc", "cal"): 367, ("rte", "cal"): 249}


@requires_shared_data()
@pytest.mark.parametrize("task,split", sorted(EXPECTED))
def test_real_split_sizes(task, split):
    d = load_split(task, split, SHARED_DATA)
    assert len(d) == EXPECTED[(task, split)]
    assert d.frame["example_id"].is_unique
    assert d.frame["label"].between(0, get_task(task).num_labels - 1).all()
    assert (d.frame["text_a"].str.len() > 0).all()


@requires_shared_data()
def test_real_labels_match_source_file():
    d = load_split("sst2", "test", SHARED_DATA)
    raw = (SHARED_DATA / "sst2" / "dev.tsv").read_text().splitlines()[1:]
    assert d.frame["label"].tolist() == [int(r.split("\t")[1]) for r in raw]
    assert d.fingerprint == load_split("sst2", "test", SHARED_DATA).fingerprint


@requires_shared_data()
def test_cal_and_train_are_disjoint_and_cover_the_file():
    tr, cal = load_split("rte", "train", SHARED_DATA), load_split("rte", "cal", SHARED_DATA)
    a, b = set(tr.frame.example_id), set(cal.frame.example_id)
    assert not a & b and len(a | b) == 2490


def test_split_indices_deterministic_and_seeded():
    a, b, c = split_indices(1000, "sst2", 0), split_indices(1000, "sst2", 0), split_indices(1000, "sst2", 1)
    assert (a["cal"] == b["cal"]).all() and not (a["cal"] == c["cal"]).all()
    assert len(a["cal"]) == 100 and len(np.intersect1d(a["cal"], a["train"])) == 0


def test_local_folder_and_ids(glue_dir):
    d = load_split("sst2", "test", glue_dir)
    assert d.frame["example_id"].iloc[3] == "sst2:validation:3"
    assert d.source == "local" and len(d.files) == 1
    m = load_split("mrpc", "test", glue_dir)  # BOM header, pair task
    assert m.frame["text_b"].notna().all()


@pytest.mark.parametrize("content,needle", [
    ("sentence\tlabel\ngood film\t1\nbad\t7\n", ":3: unknown label '7'"),
    ("sentence\tlabel\n\t1\n", ":2: empty text"),
    ("text\tlabel\nok\t1\n", ":1: missing column"),
    ("sentence\tlabel\nfine\n", ":2: expected at least 2"),
])
def test_broken_files_name_file_and_line(tmp_path, content, needle):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "dev.tsv").write_text(content)
    with pytest.raises(DataError, match=needle.replace("'", ".")):
        load_split("sst2", "test", tmp_path)


def test_bad_utf8_names_line(tmp_path):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "dev.tsv").write_bytes(b"sentence\tlabel\nok\t1\nbad \xff byte\t0\n")
    with pytest.raises(DataError, match=r"dev.tsv:3: invalid UTF-8"):
        read_source(TASKS["sst2"], tmp_path / "sst2" / "dev.tsv", "validation")


def test_missing_file_and_unknown_names(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_split("sst2", "test", tmp_path)
    with pytest.raises(ValueError, match="unknown task"):
        load_split("mnli", "test", tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        load_split("sst2", "dev", tmp_path)
    with pytest.raises(ValueError, match="only split 'test'"):
        load_split("qnli", "train", tmp_path)


def test_hub_path_uses_datasets(monkeypatch):
    import datasets

    fake = datasets.Dataset.from_dict({"sentence": ["a b", "c d", "e f"], "label": [0, 1, 1], "idx": [0, 1, 2]})
    calls = []

    def load_dataset(repo, config, split):
        calls.append((repo, config, split))
        return fake

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    d = load_split("sst2", "test", source="hub")
    assert calls == [("nyu-mll/glue", "sst2", "validation")]
    assert d.frame["example_id"].tolist() == ["sst2:validation:0", "sst2:validation:1", "sst2:validation:2"]
    assert d.fingerprint == fake._fingerprint and d.source == "hub"
    bad = datasets.Dataset.from_dict({"sentence": ["x"], "label": [-1], "idx": [0]})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: bad)
    with pytest.raises(DataError, match="labels outside"):
        load_split("sst2", "test", source="hub")


def test_a_new_task_is_one_registry_entry(monkeypatch, tmp_path):
    """A task carved from one file and a pair task on the hub, declared only in TASKS: no code names them."""
    import dataclasses

    import datasets

    from toolkit.data.tasks import TaskSpec

    spec = TaskSpec("toynews", ("a", "b"), "accuracy", {"test": "toynews/all.tsv"}, ("title", "body"), "label",
                    raw_labels=("x", "y"), hub=("someone/toynews", None), hub_columns=("title", "body"),
                    carved=(30, 20))
    monkeypatch.setitem(TASKS, "toynews", spec)
    (tmp_path / "toynews").mkdir()
    rows = [f"t{i}\tb{i}\t{'xy'[i % 2]}" for i in range(100)]
    (tmp_path / "toynews" / "all.tsv").write_text("title\tbody\tlabel\n" + "\n".join(rows) + "\n")
    parts = {s: load_split("toynews", s, tmp_path).frame for s in ("train", "cal", "test")}
    assert {s: len(f) for s, f in parts.items()} == {"train": 50, "cal": 20, "test": 30}
    ids = [set(f.example_id) for f in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert all(i.startswith("toynews:test:") for i in ids[2])
    fake = datasets.Dataset.from_dict({"title": ["p", "q"], "body": ["r", "s"], "label": [0, 1]})
    monkeypatch.setattr(datasets, "load_dataset", lambda repo, config, split: fake)
    monkeypatch.setitem(TASKS, "toynews", dataclasses.replace(spec, carved=None, files={"validation": "x"}))
    hub = load_split("toynews", "test", source="hub").frame
    assert hub["text_a"].tolist() == ["p", "q"] and hub["text_b"].tolist() == ["r", "s"]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 60), n_classes=st.integers(1, 4), seed=st.integers(0, 2**32 - 1), shuffle=st.integers(0, 999))
def test_dev_halves_balanced_and_independent_of_row_order(n, n_classes, seed, shuffle):
    from toolkit.data.tasks import dev_halves

    rng = np.random.default_rng(shuffle)
    ids = np.array([f"t:validation:{i}" for i in range(n)])
    y = rng.integers(0, n_classes, n)
    half = dev_halves(ids, y, seed=seed)
    assert set(half.tolist()) <= {0, 1} and abs(int(half.sum()) * 2 - n) <= 1
    for c in range(n_classes):  # every class splits as evenly as it can
        assert abs(int(half[y == c].sum()) * 2 - int((y == c).sum())) <= 1
    perm = rng.permutation(n)
    np.testing.assert_array_equal(dev_halves(ids[perm], y[perm], seed=seed), half[perm])


def test_dev_halves_seeds_and_errors():
    from toolkit.data.tasks import dev_halves

    ids = [f"sst2:validation:{i}" for i in range(872)]
    a, b = dev_halves(ids, seed=0), dev_halves(ids, seed=1)
    assert a.sum() == 436 and 0.4 < (a == b).mean() < 0.6  # another seed, another halving
    with pytest.raises(ValueError, match="unique"):
        dev_halves(["x", "x"])
    with pytest.raises(ValueError, match="align"):
        dev_halves(["x", "y"], [0])
