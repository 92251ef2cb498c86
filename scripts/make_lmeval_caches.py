"""Regenerate ``data/lmeval/``: real lm-eval runs of SmolLM2 variants on SST-2, imported into cascade caches.

Runs (each one ``python -m lm_eval`` on the CPU, offline, ``--log_samples``), cheapest first (default: the first
two, which the shipped caches hold; on two busy CPU cores they took 895 s and 1693 s for 500 documents):

- ``first15``: SmolLM2-135M-Instruct cut to its first 15 of its 30 layers (final norm and tied LM head kept): a
  smaller model made from the real one, with no training;
- ``full``: SmolLM2-135M-Instruct, zero-shot;
- ``chat``: SmolLM2-135M-Instruct zero-shot with its chat template (``--apply_chat_template``: a longer prompt);
- ``2shot``: SmolLM2-135M-Instruct with two fixed SST-2 training examples before each question (a longer prompt:
  the same weights at a higher cost per example).

The weights are the 4-bit GGUF ones dequantized to float32 (quantization noise: say so with any number). The task
reads temporary TSVs written from ``toolkit.data.tasks.load_split("sst2", split)`` (``cal``: the seeded hold-out of the
training file; ``test``: the GLUE dev set) with the toolkit's example ids in a column, so the imported caches join
to the toolkit's own. The lm-eval logs hold the sentences: they live in a temporary folder and are deleted; only
the imported caches (no text) are written to ``--out``. Usage::

    HF_HUB_OFFLINE=1 python scripts/make_lmeval_caches.py --n-cal 200 --n-test 300
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PROMPT = "{{sentence}}\nQuestion: Is this sentence positive or negative?\nAnswer:"
CHOICES = ["negative", "positive"]
RUNS = ("first15", "full", "chat", "2shot")
NAMES = {"first15": "SmolLM2 first 15 layers", "full": "SmolLM2", "chat": "SmolLM2 chat template",
         "2shot": "SmolLM2 2-shot"}


def write_task(root: Path, split: str, n: int, seed: int) -> tuple[str, dict]:
    """A TSV of ``n`` seeded rows of the toolkit's ``split`` (ids, sentence, label) and a task YAML reading it;
    returns the task name and the data provenance for the cache header."""
    from toolkit.data.tasks import load_split

    data = load_split("sst2", split)
    frame = data.frame
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=min(n, len(frame)), replace=False))
    sub = frame.iloc[rows]
    train = load_split("sst2", "train").frame.iloc[:8]  # few-shot examples: the first training rows, fixed
    for name, f in (("docs", sub), ("shots", train)):
        lines = ["example_id\tsentence\tlabel"] + [f"{i}\t{t}\t{y}" for i, t, y in
                                                  zip(f.example_id, f.text_a, f.label)]
        (root / f"{split}_{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = f"toolkit_sst2_{split}"
    prompt = PROMPT.replace("\n", "\\n")  # a YAML double-quoted string
    (root / f"{task}.yaml").write_text(f"""task: {task}
dataset_path: csv
dataset_kwargs:
  data_files:
    validation: {root / f"{split}_docs.tsv"}
    train: {root / f"{split}_shots.tsv"}
  delimiter: "{chr(92)}t"
  quoting: 3
validation_split: validation
fewshot_split: train
fewshot_config:
  sampler: first_n
output_type: multiple_choice
doc_to_text: "{prompt}"
doc_to_target: label
doc_to_choice: {CHOICES}
metric_list:
  - metric: acc
""", encoding="utf-8")
    return task, {"source": data.source, "files": data.files, "fingerprint": data.fingerprint,
                  "data_dir": data.data_dir, "split_seed": data.split_seed, "limit": n, "sample_seed": seed}


def truncated_model(src: str, layers: int, out: Path) -> Path:
    """The first ``layers`` decoder layers of a Llama folder, with its final norm and LM head, saved to ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src, dtype="float32")
    model.model.layers = model.model.layers[:layers]
    model.config.num_hidden_layers = layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:layers]
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


def run_lm_eval(model: Path, tasks: list[str], include: Path, out: Path, *, shots: int, chat: bool,
                batch: int) -> float:
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
           "--include_path", str(include), "--tasks", ",".join(tasks), "--device", "cpu", "--batch_size", str(batch),
           "--log_samples", "--output_path", str(out)] + (["--num_fewshot", str(shots)] if shots else []) + (
        ["--apply_chat_template"] if chat else [])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    return time.perf_counter() - t0


def import_caches(logs: Path, runs, tasks, data, out: Path, *, tokenizer: Path, command: str) -> None:
    """Import each split's runs into ``out/sst2-smollm2-<split>.parquet`` and record them in data/MANIFEST.json."""
    from toolkit.data.provenance import package_versions
    from toolkit.imports.lmeval import import_lm_eval
    from toolkit.zoo.manifest import cache_entry, update_manifest

    out.mkdir(parents=True, exist_ok=True)
    for task, split, d in zip(tasks, ("cal", "test"), data):
        files = [next((logs / run).rglob(f"samples_{task}_*.jsonl")) for run in runs]
        path = out / f"sst2-smollm2-{split}.parquet"
        cache = import_lm_eval(files, out=path, id_field="example_id", task="sst2", split=split,
                               tokenizers=[tokenizer] * len(files), names=[NAMES[r] for r in runs],
                               meta={"data": d, "command": command, "versions": package_versions()})
        print(cache, flush=True)
        if out.parent.name == "data" or out.parent == REPO / "data":
            update_manifest(out.parent, str(path.relative_to(out.parent).with_suffix("")),
                            cache_entry(path, root=REPO))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-cal", type=int, default=200)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", nargs="+", default=["first15", "full"], choices=RUNS,
                   help="which runs, cheapest first (chat: 1268 s here, test accuracy 0.537, below the plain "
                        "prompt's 0.597; 2shot: a prompt about three times as long)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--logs", type=Path, default=None,
                   help="keep lm-eval's logs here (they hold the sentences: never inside the project)")
    p.add_argument("--out", type=Path, default=REPO / "data" / "lmeval")
    p.add_argument("--import-only", action="store_true",
                   help="import the logs already in --logs (no lm-eval runs; the task files are rewritten)")
    a = p.parse_args(argv)
    from toolkit.nn.encoder.models import resolve_model

    smollm2 = Path(resolve_model("SmolLM2-135M-Instruct"))
    work = Path(tempfile.mkdtemp(prefix="lmeval-"))
    logs = a.logs or work / "logs"
    try:
        (cal_task, cal_data), (test_task, test_data) = (write_task(work, "cal", a.n_cal, a.seed),
                                                        write_task(work, "test", a.n_test, a.seed))
        tasks = [cal_task, test_task]
        models = {"first15": (lambda: truncated_model(str(smollm2), 15, work / "SmolLM2-135M-Instruct-first15"), 0,
                              False),
                  "full": (lambda: smollm2, 0, False), "chat": (lambda: smollm2, 0, True),
                  "2shot": (lambda: smollm2, 2, False)}
        for run in ([] if a.import_only else a.runs):
            make, shots, chat = models[run]
            took = run_lm_eval(make(), tasks, work, logs / run, shots=shots, chat=chat, batch=a.batch_size)
            print(f"lm-eval run {run}: {took:.0f} s for {a.n_cal + a.n_test} documents", flush=True)
        command = (f"python scripts/make_lmeval_caches.py --n-cal {a.n_cal} --n-test {a.n_test} --seed {a.seed} "
                   f"--runs {' '.join(a.runs)} --batch-size {a.batch_size}")
        import_caches(logs, a.runs, tasks, (cal_data, test_data), a.out, tokenizer=smollm2, command=command)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
