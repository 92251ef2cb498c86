"""Fine-tune an encoder-decoder text-to-text (generate the label word) with transformers' ``Seq2SeqTrainer``.

The model is warm-started from two packaged encoders (:func:`toolkit.nn.seq2seq.models.warm_start`) or loaded from
an existing seq2seq checkpoint (``model=``). Training reads the task's ``train`` split only (never ``cal`` or
``test``), is seeded, and resumes from the last checkpoint when rerun; the final model lands in
``<output_dir>/final`` with ``train_meta.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from toolkit._api import check_batch
from toolkit.caches.io import remove_temporaries, write_folder_atomic
from toolkit.data.provenance import package_versions
from toolkit.data.text2text import load_seq2seq_split
from toolkit.nn.encoder.train import ColumnsDataset, drop_incomplete_checkpoints, finished_run, run_lock
from toolkit.nn.seq2seq.models import load_seq2seq, save_seq2seq, warm_start


@dataclass
class Seq2SeqTrainConfig:
    task: str
    output_dir: str
    encoder: str = "all-MiniLM-L6-v2"
    decoder: str = "all-MiniLM-L6-v2"
    decoder_layers: int | None = None  # keep only the decoder checkpoint's first k layers
    model: str | None = None  # fine-tune this seq2seq checkpoint instead of warm-starting
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 1e-4
    batch_size: int = 32
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_length: int = 128
    train_limit: int | None = None  # seeded subsample of train
    seed: int = 42
    bf16: bool = False
    data_dir: str | None = None
    save_steps: int = 200
    logging_steps: int = 50

    def __post_init__(self):
        self.batch_size = check_batch(self.batch_size, name="batch_size")


def target_ids(tokenizer, targets, eos_id: int) -> list[list[int]]:
    """Target token ids without the start token (the model prepends it) and with the end-of-sequence token."""
    ids = tokenizer(list(targets), add_special_tokens=False)["input_ids"]
    return [x + [eos_id] for x in ids]


def seq2seq_dataset(frame, source_tokenizer, target_tokenizer, eos_id: int, max_length: int) -> ColumnsDataset:
    b = list(frame["text_b"]) if frame["text_b"].notna().all() else None
    enc = source_tokenizer(list(frame["text_a"]), b, truncation=True, max_length=max_length)
    cols = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    cols["labels"] = target_ids(target_tokenizer, frame["target"], eos_id)
    return ColumnsDataset(cols)


def train_seq2seq(cfg: Seq2SeqTrainConfig, callbacks=None) -> Path:
    """Train per ``cfg``; returns ``<output_dir>/final``. Rerunning continues from the last complete checkpoint.

    Temporaries: a checkpoint save cut short (a failure or an interrupt) is removed when training stops, and one that
    a killed run left (SIGKILL) when the next run starts, with the final folder's temporaries of dead processes
    (:func:`toolkit.caches.io.remove_temporaries`); a finished run keeps neither its checkpoints (only for resuming)
    nor any temporary. One process at a time trains in ``output_dir`` (:func:`toolkit.nn.encoder.train.run_lock`)."""
    out = Path(cfg.output_dir)
    if finished_run(cfg, out):  # its refusals come first: a refused run writes nothing, not even the lock
        return out / "final"
    with run_lock(out):
        return _train_seq2seq(cfg, callbacks)


def _train_seq2seq(cfg: Seq2SeqTrainConfig, callbacks=None) -> Path:
    out = Path(cfg.output_dir)
    final = out / "final"
    ckpt = out / "checkpoints"
    remove_temporaries(final)
    drop_incomplete_checkpoints(ckpt)
    t0 = time.time()
    set_seed(cfg.seed)
    data = load_seq2seq_split(cfg.task, "train", cfg.data_dir)
    frame = data.frame
    if cfg.train_limit and cfg.train_limit < len(frame):
        rows = np.sort(np.random.default_rng(cfg.seed).choice(len(frame), cfg.train_limit, replace=False))
        frame = frame.iloc[rows].reset_index(drop=True)
    if cfg.model:
        model, src, tgt = load_seq2seq(cfg.model)
    else:
        model, src, tgt = warm_start(cfg.encoder, cfg.decoder, cfg.decoder_layers)
    ds = seq2seq_dataset(frame, src, tgt, model.generation_config.eos_token_id, cfg.max_length)
    args = Seq2SeqTrainingArguments(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay, lr_scheduler_type="linear", seed=cfg.seed,
        data_seed=cfg.seed, bf16=cfg.bf16, save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=1,
        logging_steps=cfg.logging_steps, report_to=[], dataloader_num_workers=0, disable_tqdm=not os.isatty(2),
        use_cpu=not torch.cuda.is_available())
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=ds, callbacks=callbacks,
                             # no model= here: the model builds decoder inputs from the labels itself
                             data_collator=DataCollatorForSeq2Seq(src, label_pad_token_id=-100))
    last = get_last_checkpoint(str(ckpt)) if ckpt.exists() else None
    try:
        with warnings.catch_warnings():  # EncoderDecoderModel warns on every batch with labels, about transformers 4.12
            warnings.filterwarnings("ignore", message="Version v4.12.0 introduces", category=FutureWarning)
            result = trainer.train(resume_from_checkpoint=last)
    finally:
        drop_incomplete_checkpoints(ckpt)  # the rerun resumes from the last complete one
    model.config.train_config = asdict(cfg)

    def fill(tmp: Path) -> None:
        save_seq2seq(model, src, tgt, tmp)
        meta = {"config": asdict(cfg), "train_size": len(frame), "data_fingerprint": data.fingerprint,
                "data_files": data.files, "wall_time_s": time.time() - t0, "train_loss": result.training_loss,
                "steps": result.global_step, "resumed_from": last, "log_history": trainer.state.log_history,
                "versions": package_versions()}
        (tmp / "train_meta.json").write_text(json.dumps(meta, indent=1, default=str))

    write_folder_atomic(final, fill, what="final model folder")
    shutil.rmtree(ckpt, ignore_errors=True)
    remove_temporaries(final, dead_only=False)
    return final
