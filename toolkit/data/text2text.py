"""Sources and targets for generation: GLUE tasks as text-to-text (the target is the label word) and WMT21 news
translation test sets (``wmt21_en_de``, ``wmt21_de_en``; ``test`` only, read from ``../shared/data``-style
folders). Frames carry ``example_id``, ``text_a``, ``text_b``, ``target`` and ``label`` (-1 for translation).

>>> label_words("rte")
['entailment', 'not entailment']
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from toolkit.data.tasks import (
    DataError,
    DataNotFound,
    SplitData,
    combine_fingerprint,
    default_data_dir,
    fingerprint_files,
    get_task,
    load_split,
)

TRANSLATION = {"wmt21_en_de": ("wmt21_en_de/test.tsv", "en", "de"),
               "wmt21_de_en": ("wmt21_de_en/test.tsv", "de", "en")}


def label_words(task: str) -> list[str]:
    """The word(s) a text-to-text model generates for each class (lower case, underscores as spaces)."""
    return [w.replace("_", " ").lower() for w in get_task(task).label_names]


def read_translation(path: Path, name: str) -> pd.DataFrame:
    """A ``source<TAB>reference`` file; errors name the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataNotFound(f"{path}: missing; expected the WMT21 test file (see ../shared/data/PROVENANCE.md)") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e})") from None
    if not lines or lines[0].split("\t") != ["source", "reference"]:
        raise DataError(f"{path}:1: expected the header 'source<TAB>reference'")
    if len(lines) == 1:
        raise DataError(f"{path}: only a header line, no examples; the file is truncated or empty")
    src, ref = [], []
    for i, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise DataError(f"{path}:{i}: expected a non-empty source and reference separated by one tab")
        src.append(parts[0])
        ref.append(parts[1])
    return pd.DataFrame({"example_id": [f"{name}:test:{i}" for i in range(len(src))], "text_a": src,
                         "text_b": None, "target": ref, "label": -1})


def load_seq2seq_split(task: str, split: str, data_dir: str | os.PathLike | None = None, *,
                       split_seed: int = 0) -> SplitData:
    """A split with a ``target`` column: label words for GLUE tasks, references for translation (``test`` only)."""
    if task in TRANSLATION:
        if split != "test":
            raise ValueError(f"{task} ships only its test set here; use split='test'")
        data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        if data_dir is None:
            raise DataNotFound(f"{task}: no data folder: pass data_dir or set TOOLKIT_DATA_DIR")
        rel = TRANSLATION[task][0]
        frame = read_translation(data_dir / rel, task)
        files = fingerprint_files(data_dir, [rel])
        return SplitData(task, split, frame, "local", files, combine_fingerprint(files), split_seed,
                         str(data_dir.resolve()))
    data = load_split(task, split, data_dir, split_seed=split_seed)
    words = label_words(task)
    data.frame["target"] = [words[y] for y in data.frame["label"]]
    return data
