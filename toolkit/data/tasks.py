"""Tasks, splits and stable example ids, from a local GLUE-format folder or the Hugging Face hub.

Every split is a pandas DataFrame with columns ``example_id`` (str), ``text_a`` (str),
``text_b`` (str or None) and ``label`` (int).

Splits (the evaluation protocol of DESIGN.md):
- ``train``: the task's training file minus ``cal``;
- ``cal``: a seeded hold-out carved from the training file, never trained on; temperatures and
  thresholds are fitted here;
- ``test``: the GLUE dev set (labels of the GLUE test sets are not public).
A task with only one source file (AG News: its official test file) has all three splits carved from it: its
registry entry says how (``carved=(2000, 1000)``: a seeded permutation's first 2,000 rows are ``test``, the next
1,000 ``cal``, the rest ``train``).

A new task is one :data:`TASKS` entry: files, columns, labels, hub mapping and split scheme; no code names a task.

Example ids are ``"{task}:{source_split}:{row}"`` with ``row`` the 0-based data row of the source
file (GLUE ``idx`` on the hub), so a cache can be joined back to its text.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "cal", "test")
DEFAULT_SPLIT_SEED = 0
CAL_FRACTION = 0.1
CAL_MAX = 2000
AGNEWS_TEST, AGNEWS_CAL = 2000, 1000


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and line."""


class DataNotFound(DataError, FileNotFoundError):
    """No data where it was looked for: a missing file, or no data folder while the hub is offline."""


def hub_offline() -> bool:
    """Whether the hub is switched off (``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` set true): then a split with
    no data folder is an error naming the fix, never a hub request that can only fail."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


@dataclass(frozen=True)
class TaskSpec:
    name: str
    label_names: tuple[str, ...]
    metric: str  # the task's headline metric: "accuracy", "f1" or "mcc"
    files: dict[str, str]  # source split -> relative path in the data folder
    text_columns: tuple[str, ...]  # columns holding text_a (and text_b)
    label_column: str
    header: bool = True
    raw_labels: tuple[str, ...] = ()  # label strings in the file, in class order
    hub: tuple[str, str | None] = ("nyu-mll/glue", None)
    hub_columns: tuple[str, ...] = ("sentence",)  # text columns of the hub dataset (text_a, text_b)
    carved: tuple[int, int] | None = None  # (test, cal) rows carved from the single source file; None: GLUE scheme

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def pair(self) -> bool:
        return len(self.text_columns) == 2


TASKS: dict[str, TaskSpec] = {
    "sst2": TaskSpec("sst2", ("negative", "positive"), "accuracy",
                     {"train": "sst2/train.tsv", "validation": "sst2/dev.tsv"},
                     ("sentence",), "label", raw_labels=("0", "1"), hub=("nyu-mll/glue", "sst2")),
    "mrpc": TaskSpec("mrpc", ("not_equivalent", "equivalent"), "f1",
                     {"train": "mrpc/train.tsv", "validation": "mrpc/dev.tsv"},
                     ("#1 String", "#2 String"), "Quality", raw_labels=("0", "1"),
                     hub=("nyu-mll/glue", "mrpc"), hub_columns=("sentence1", "sentence2")),
    "cola": TaskSpec("cola", ("unacceptable", "acceptable"), "mcc",
                     {"train": "cola/train.tsv", "validation": "cola/dev.tsv"},
                     ("3",), "1", header=False, raw_labels=("0", "1"), hub=("nyu-mll/glue", "cola")),
    "rte": TaskSpec("rte", ("entailment", "not_entailment"), "accuracy",
                    {"train": "rte/train.tsv", "validation": "rte/dev.tsv"},
                    ("sentence1", "sentence2"), "label", raw_labels=("entailment", "not_entailment"),
                    hub=("nyu-mll/glue", "rte"), hub_columns=("sentence1", "sentence2")),
    "qnli": TaskSpec("qnli", ("entailment", "not_entailment"), "accuracy",
                     {"validation": "qnli/dev.tsv"},
                     ("question", "sentence"), "label", raw_labels=("entailment", "not_entailment"),
                     hub=("nyu-mll/glue", "qnli"), hub_columns=("question", "sentence")),
    "agnews": TaskSpec("agnews", ("World", "Sports", "Business", "Sci/Tech"), "accuracy",
                       {"test": "agnews/test.tsv"},
                       ("title", "description"), "label", raw_labels=("1", "2", "3", "4"),
                       hub=("fancyzhx/ag_news", None), hub_columns=("text",),  # hub: title + " " + description
                       carved=(AGNEWS_TEST, AGNEWS_CAL)),
}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}") from None


def default_data_dir() -> Path | None:
    """``$TOOLKIT_DATA_DIR``, else ``../shared/data`` next to the working directory or this checkout."""
    env = os.environ.get("TOOLKIT_DATA_DIR")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for base in (here, *here.parents, *Path(__file__).resolve().parents):
        if (base / "shared" / "data" / "PROVENANCE.md").exists():
            return base / "shared" / "data"
    return None


def join_text(example_ids, task: str, data_dir=None) -> pd.DataFrame | None:
    """Text of cached example ids (``text_a``, ``text_b``, ``label``, indexed by id, in the order given; ids not in
    the data folder give NaN rows), read from the local data folder; None when there is none. For showing examples
    (the explorer): caches hold ids, never text."""
    data_dir = data_dir if data_dir is not None else default_data_dir()
    if data_dir is None or not Path(data_dir).exists():
        return None
    spec = get_task(task)
    frames = [read_source(spec, Path(data_dir) / rel, src) for src, rel in spec.files.items()]
    return pd.concat(frames).set_index("example_id").reindex(list(example_ids))


def sha256_file(path: Path, *, regular_only: bool = False) -> str:
    """sha256 of a file's bytes. ``regular_only``: open without following a final symlink and without blocking,
    and refuse anything but a regular file before reading (a FIFO or device would hang or never end)."""
    h = hashlib.sha256()
    flags = os.O_RDONLY | (os.O_NOFOLLOW | os.O_NONBLOCK if regular_only else 0)
    fd = os.open(path, flags)
    if regular_only and not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DataError("not a regular file; refused without reading it")
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint_files(data_dir: Path, rel_paths: list[str]) -> dict[str, str]:
    """sha256 of each source file, keyed by its path relative to the data folder."""
    return {rel: sha256_file(Path(data_dir) / rel) for rel in sorted(rel_paths)}


def combine_fingerprint(file_hashes: dict[str, str]) -> str:
    """One sha256 over the sorted ``path:sha256`` lines: the dataset fingerprint."""
    text = "\n".join(f"{k}:{v}" for k, v in sorted(file_hashes.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise DataNotFound(f"{path}: file not found. Point --data-dir (or TOOLKIT_DATA_DIR) at a folder "
                        f"laid out like ../shared/data (see its PROVENANCE.md).")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 (byte {e.start}); re-save the file as UTF-8.") from None
    text = text.lstrip("\ufeff")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def read_source(spec: TaskSpec, path: Path, source_split: str) -> pd.DataFrame:
    """Parse one GLUE-format TSV into example_id/text_a/text_b/label, validating every line."""
    lines = _read_lines(path)
    if spec.header:
        if not lines:
            raise DataError(f"{path}:1: empty file, expected a header line.")
        header = lines[0].split("\t")
        body, first_line = lines[1:], 2
        missing = [c for c in (*spec.text_columns, spec.label_column) if c not in header]
        if missing:
            raise DataError(f"{path}:1: missing column(s) {missing} in header {header}.")
        idx = {c: header.index(c) for c in header}
        if not body:
            raise DataError(f"{path}: only a header line, no examples; the file is truncated or empty (expected one "
                            f"example per line after the header).")
    else:
        body, first_line = lines, 1
        idx = {str(i): i for i in range(64)}
    if not body:
        raise DataError(f"{path}: no examples (an empty file); expected one example per line.")
    text_idx = [idx[c] for c in spec.text_columns]
    label_idx = idx[spec.label_column]
    need = max(text_idx + [label_idx]) + 1
    label_map = {s: i for i, s in enumerate(spec.raw_labels)}
    texts: list[list[str]] = [[] for _ in text_idx]
    labels = np.empty(len(body), dtype=np.int64)
    for row, line in enumerate(body):
        lineno = row + first_line
        fields = line.split("\t")
        if len(fields) < need:
            raise DataError(f"{path}:{lineno}: expected at least {need} tab-separated fields, got {len(fields)}.")
        raw_label = fields[label_idx].strip()
        if raw_label not in label_map:
            raise DataError(f"{path}:{lineno}: unknown label {raw_label!r}; expected one of {list(label_map)}.")
        labels[row] = label_map[raw_label]
        for j, ti in enumerate(text_idx):
            t = fields[ti].strip()
            if not t:
                raise DataError(f"{path}:{lineno}: empty text in column {spec.text_columns[j]!r}.")
            texts[j].append(t)
    n = len(body)
    return pd.DataFrame({
        "example_id": [f"{spec.name}:{source_split}:{i}" for i in range(n)],
        "text_a": texts[0],
        "text_b": texts[1] if spec.pair else [None] * n,
        "label": labels,
    })


def split_indices(n: int, task: str, seed: int = DEFAULT_SPLIT_SEED) -> dict[str, np.ndarray]:
    """Deterministic row indices of train/cal (and test, for a task carved from one file) within the source file."""
    perm = np.random.default_rng(seed).permutation(n)
    carved = get_task(task).carved
    if carved:
        n_test, n_cal = carved
        return {"test": np.sort(perm[:n_test]), "cal": np.sort(perm[n_test:n_test + n_cal]),
                "train": np.sort(perm[n_test + n_cal:])}
    n_cal = min(int(round(CAL_FRACTION * n)), CAL_MAX)
    return {"cal": np.sort(perm[:n_cal]), "train": np.sort(perm[n_cal:])}


def _source_of(spec: TaskSpec, split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if spec.carved:
        return next(iter(spec.files))  # every split comes from the one source file
    if split == "test":
        return "validation"
    if "train" not in spec.files:
        raise ValueError(f"task {spec.name!r} has no training data here, so only split 'test' exists.")
    return "train"


@dataclass
class SplitData:
    """One split of one task, with where it came from."""
    task: str
    split: str
    frame: pd.DataFrame
    source: str  # "local" or "hub"
    files: dict[str, str]  # relative path -> sha256 (local), or hub dataset id -> fingerprint
    fingerprint: str
    split_seed: int
    data_dir: str | None = None

    def __len__(self) -> int:
        return len(self.frame)


def load_split(task: str, split: str, data_dir: str | os.PathLike | None = None, *,
               split_seed: int = DEFAULT_SPLIT_SEED, source: str = "auto") -> SplitData:
    """Load ``split`` (train/cal/test) of ``task`` from a local folder, or from the hub with ``source="hub"``.

    ``source="auto"`` uses ``data_dir`` (or :func:`default_data_dir`) when it exists, else the hub.
    """
    spec = get_task(task)
    src_split = _source_of(spec, split)
    if source == "auto":
        data_dir = data_dir if data_dir is not None else default_data_dir()
        if data_dir is None and hub_offline():
            raise DataNotFound(f"{task}/{split}: no data folder and the hub is offline (HF_HUB_OFFLINE): pass "
                               f"data_dir, set TOOLKIT_DATA_DIR, or put the data in ../shared/data")
        source = "local" if data_dir is not None else "hub"
    if source == "local":
        if data_dir is None:
            raise DataNotFound("no data folder: pass data_dir or set TOOLKIT_DATA_DIR.")
        data_dir = Path(data_dir)
        rel = spec.files[src_split]
        frame = read_source(spec, data_dir / rel, src_split)
        files = fingerprint_files(data_dir, [rel])
        fingerprint = combine_fingerprint(files)
        dd = str(data_dir.resolve())
    elif source == "hub":
        frame, files, fingerprint = _load_hub(spec, src_split)
        dd = None
    else:
        raise ValueError(f"unknown source {source!r}; use 'auto', 'local' or 'hub'")
    if src_split != "validation":
        rows = split_indices(len(frame), task, split_seed)[split]
        frame = frame.iloc[rows].reset_index(drop=True)
    return SplitData(task, split, frame, source, files, fingerprint, split_seed, dd)


def _load_hub(spec: TaskSpec, src_split: str) -> tuple[pd.DataFrame, dict[str, str], str]:
    import datasets  # the hub path needs a network; kept lazy so offline use never touches it

    repo, config = spec.hub
    ds = datasets.load_dataset(repo, config, split=src_split)
    cols = spec.hub_columns
    text_a = list(ds[cols[0]])
    text_b = list(ds[cols[1]]) if len(cols) > 1 else [None] * len(ds)
    labels = np.asarray(ds["label"], dtype=np.int64)
    ids = np.asarray(ds["idx"]) if "idx" in ds.column_names else np.arange(len(ds))
    bad = (labels < 0) | (labels >= spec.num_labels)
    if bad.any():
        raise DataError(f"hub dataset {repo}/{config} split {src_split}: labels outside 0..{spec.num_labels - 1} "
                        f"(first at row {int(np.argmax(bad))}); the hub test splits have no labels.")
    frame = pd.DataFrame({"example_id": [f"{spec.name}:{src_split}:{i}" for i in ids],
                          "text_a": text_a, "text_b": text_b, "label": labels})
    key = f"hub:{repo}/{config or ''}:{src_split}"
    return frame, {key: ds._fingerprint}, ds._fingerprint


def dev_halves(example_ids, labels=None, *, seed: int = 0) -> np.ndarray:
    """Which half (0 or 1) of a test set each example falls in, for cross-fitting on exchangeable halves.

    A seeded permutation of the sorted unique ``example_ids`` (so the halves do not depend on row order), stratified
    by ``labels`` when given: within each class in turn, examples alternate between the halves, so every class and
    the whole set split as evenly as they can (sizes differ by at most one).

    >>> dev_halves(["a", "b", "c", "d", "e", "f"], [0, 0, 0, 1, 1, 1], seed=0).tolist()
    [1, 0, 0, 1, 0, 1]
    """
    ids = np.asarray(example_ids).astype(str)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("example_ids must be unique")
    y = np.zeros(len(ids), dtype=np.int64) if labels is None else np.asarray(labels)
    if y.shape != ids.shape:
        raise ValueError(f"labels must align with example_ids: {y.shape} vs {ids.shape}")
    rng = np.random.default_rng(seed)
    by_id = np.argsort(ids, kind="stable")
    order = np.concatenate([rng.permutation(by_id[y[by_id] == c]) for c in np.unique(y)]) if len(ids) else by_id
    half = np.empty(len(ids), dtype=np.int64)
    half[order] = np.arange(len(ids)) % 2
    return half
