"""Fine-tuning multi-exit models and cascade members on the Hugging Face ``Trainer``.

Objectives (``objective=``):
- ``joint``: sum of per-exit cross-entropies (Right Tool, Schwartz et al. 2020);
- ``weighted``: ``sum((i+1) * CE_i) / sum(i+1)`` (PABEE);
- ``two_stage``: stage 1 trains backbone and final head with the final CE, stage 2 freezes them and trains the
  other heads (DeeBERT);
- ``distill``: per exit ``alpha * CE + (1 - alpha) * T^2 * KL(teacher_T || exit_T)``, the teacher being the
  final exit (detached) or a separate teacher model (COST-EFF);
- ``ranking``: cross-entropy plus ``lambda * margin_ranking`` on max-probabilities of easy versus hard examples of
  the same batch (CascadeBERT's difficulty-aware objective), for single-exit cascade members; difficulty labels
  come from :func:`difficulty_labels`.

Multi-GPU / multi-node training is the Trainer's: run the same command under ``accelerate launch`` or
``torchrun``. Written here: the loss functions and the two-stage freezing; everything else is the Trainer's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from toolkit._api import check_batch
from toolkit.analysis.metrics.task import task_metric
from toolkit.caches.io import check_writable_folder, write_atomic, write_folder_atomic
from toolkit.data.provenance import package_versions
from toolkit.data.tasks import get_task, load_split
from toolkit.nn.encoder.losses import OBJECTIVES, distill_loss, joint_loss, ranking_loss, weighted_loss
from toolkit.nn.encoder.models import MultiExitModel, load_model, resolve_model


# ----------------------------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as ``train_config.json`` beside the weights."""
    task: str
    model: str  # packaged name, folder or hub id of the pretrained encoder
    output_dir: str
    objective: str = "joint"
    num_hidden_layers: int | None = None  # truncate the encoder to its first k layers
    exit_layers: list[int] | None = None  # default: every layer (single exit on the last for "ranking")
    pooling: str = "mean"
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 5e-5
    # peak rate of the exit heads; None: learning_rate (two-stage: stage 2, heads only, default 10x learning_rate)
    head_learning_rate: float | None = None
    batch_size: int = 32
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_length: int = 128
    train_limit: int | None = None  # seeded subsample of train (CPU-feasible runs)
    seed: int = 42
    bf16: bool = False
    distill_temperature: float = 2.0
    distill_alpha: float = 0.5
    teacher: str | None = None  # a saved model whose logits are the distillation targets
    ranking_margin: float = 0.5
    ranking_lambda: float = 0.5
    difficulty_file: str | None = None  # .npz with example_ids and hard (0/1), from difficulty_labels()
    # out-of-fold runs (toolkit.nn.encoder.difficulty): train on every fold of `folds` but `heldout_fold`
    folds: int | None = None
    heldout_fold: int | None = None
    # model selection: "cal" evaluates on the held-out train carve after every epoch and keeps the best epoch
    # (the task metric of the last exit); None keeps the last step
    select_on: str | None = None
    patience: int | None = None  # with select_on: stop after this many epochs without improvement
    eval_limit: int | None = None  # with select_on: evaluate on the first rows of the split only (quick runs)
    token_cache: str | None = None  # folder of tokenised training splits shared between runs (see encode_frame)
    data_dir: str | None = None
    split_seed: int = 0
    save_steps: int = 500
    logging_steps: int = 50

    def __post_init__(self):
        self.batch_size = check_batch(self.batch_size, name="batch_size")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {OBJECTIVES}")
        if self.objective == "ranking" and not self.difficulty_file:
            raise ValueError("objective 'ranking' needs difficulty_file (make one with `toolkit difficulty`)")
        if self.select_on not in (None, "cal"):
            raise ValueError(f"select_on must be None or 'cal' (the held-out train carve), got {self.select_on!r}")
        if (self.folds is None) != (self.heldout_fold is None) or (
                self.folds is not None and not 0 <= self.heldout_fold < self.folds):
            raise ValueError(f"folds and heldout_fold go together, with 0 <= heldout_fold < folds; got "
                             f"folds={self.folds}, heldout_fold={self.heldout_fold}")
        if self.select_on and self.objective == "two_stage":
            raise ValueError("select_on is not supported with objective 'two_stage'")
        for name in ("patience", "eval_limit"):
            v = getattr(self, name)
            if v is not None and (not self.select_on or v < 1):
                raise ValueError(f"{name} needs select_on and must be >= 1, got {v!r}")

    @classmethod
    def from_json(cls, path) -> TrainConfig:
        return cls(**json.loads(Path(path).read_text()))


class MultiExitTrainer(Trainer):
    """Trainer whose loss is one of :data:`OBJECTIVES` over the model's ``[B, E, C]`` logits."""

    def __init__(self, *args, objective: str = "joint", loss_kwargs: dict | None = None, teacher=None,
                 head_learning_rate: float | None = None, **kw):
        super().__init__(*args, **kw)
        self.objective = objective
        self.loss_kwargs = loss_kwargs or {}
        self.teacher = teacher
        self.head_learning_rate = head_learning_rate

    def create_optimizer(self, model=None):
        """The Trainer's optimizer; with ``head_learning_rate`` the exit heads get their own (peak) learning rate.

        Freshly initialised linear heads on a large encoder barely move at an encoder-sized rate (3e-5): the
        shallow exits of a jointly trained MPNet-base stayed near chance while linear probes on the same layers
        reached 0.72-0.80 on SST-2. The schedule (warm-up, decay) scales both rates alike.
        """
        opt = super().create_optimizer(model)
        if self.head_learning_rate is None:
            return opt
        m = self.model if model is None else model
        heads = {id(p) for n, p in m.named_parameters() if n.startswith("heads.")}
        moved = []
        for g in opt.param_groups:
            mine = [p for p in g["params"] if id(p) in heads]
            if mine:
                g["params"] = [p for p in g["params"] if id(p) not in heads]
                moved.append({**{k: v for k, v in g.items() if k != "params"}, "params": mine,
                              "lr": self.head_learning_rate})
        opt.param_groups[:] = [g for g in opt.param_groups if g["params"]]
        for g in moved:
            opt.add_param_group(g)
        return opt

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        difficulty = inputs.pop("difficulty", None)
        logits = model(**inputs).logits
        if self.objective in ("joint", "two_stage"):
            loss = joint_loss(logits, labels)
        elif self.objective == "final":
            loss = F.cross_entropy(logits[:, -1].float(), labels)
        elif self.objective == "weighted":
            loss = weighted_loss(logits, labels)
        elif self.objective == "distill":
            t_logits = None
            if self.teacher is not None:
                with torch.no_grad():
                    t_logits = self.teacher(**inputs).logits
                if t_logits.dim() == 3 and t_logits.shape[1] != logits.shape[1]:
                    t_logits = t_logits[:, -1]
            loss = distill_loss(logits, labels, t_logits, **self.loss_kwargs)
        elif difficulty is None:  # evaluation batches of the ranking objective have no difficulty labels
            loss = F.cross_entropy(logits[:, -1].float(), labels)
        else:
            loss = ranking_loss(logits, labels, difficulty, **self.loss_kwargs)
        return (loss, {"logits": logits}) if return_outputs else loss


# ------------------------------------------------------------------------------------------------- data
class ColumnsDataset(torch.utils.data.Dataset):
    """Equal-length columns as a map-style dataset of row dicts (what the Trainer's collators take)."""

    def __init__(self, columns: dict[str, list]):
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns differ in length: {lengths}")
        self.columns = columns
        self.column_names = list(columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.columns.items()}


def tokenize_frame(frame, tokenizer, max_length: int, extra: dict | None = None, *, cache_dir=None,
                   data=None) -> ColumnsDataset:
    """Tokenized rows (input ids, mask, labels and any extra int columns), unpadded.

    With ``cache_dir`` and ``data`` (the :class:`toolkit.data.tasks.SplitData` whose rows ``frame`` holds), the whole split
    is tokenised once into ``cache_dir`` (file-locked, atomic) and every run on a subset of it reads its rows from there.
    """
    if cache_dir is not None and data is not None:
        cols = _cached_encoding(data, tokenizer, max_length, Path(cache_dir), frame["example_id"].to_numpy())
    else:
        a = list(frame["text_a"])
        b = list(frame["text_b"]) if frame["text_b"].notna().all() else None
        cols = dict(tokenizer(a, b, truncation=True, max_length=max_length))
    cols["labels"] = frame["label"].to_numpy().tolist()
    for k, v in (extra or {}).items():
        cols[k] = list(v)
    return ColumnsDataset(cols)


def _tokenizer_identity(tokenizer) -> str:
    """What decides a tokenizer's output: its full serialised state (vocab, normaliser, ...), else its name."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return json.dumps([type(tokenizer).__name__, tokenizer.name_or_path, len(tokenizer)])
    state = json.loads(backend.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    return json.dumps(state, sort_keys=True)


def _cached_encoding(data, tokenizer, max_length: int, cache_dir: Path, example_ids: np.ndarray) -> dict:
    from filelock import FileLock

    key = hashlib.sha256(json.dumps([data.task, data.split, data.split_seed, data.fingerprint, max_length,
                                     _tokenizer_identity(tokenizer)]).encode()).hexdigest()[:20]
    path = cache_dir / f"{data.task}-{data.split}-{key}.npz"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            f = data.frame
            b = list(f["text_b"]) if f["text_b"].notna().all() else None
            enc = tokenizer(list(f["text_a"]), b, truncation=True, max_length=max_length)
            flat = {k: np.concatenate([np.asarray(r, dtype=np.int32) for r in enc[k]])
                    for k in enc.keys() if k != "attention_mask"}  # the mask of unpadded rows is all ones
            arrays = {"example_ids": f["example_id"].to_numpy().astype(str),
                      "lengths": np.array([len(r) for r in enc["input_ids"]], dtype=np.int64), **flat}
            write_atomic(path, lambda out: np.savez(out, **arrays))
    z = np.load(path, allow_pickle=False)
    pos = pd.Index(z["example_ids"]).get_indexer(example_ids)
    if (pos < 0).any():
        raise ValueError(f"{path}: example {example_ids[pos < 0][0]} is not in the cached {data.task}/{data.split}; "
                         "delete the file to rebuild it")
    lengths = z["lengths"]
    starts = np.concatenate([[0], np.cumsum(lengths)])[pos]
    cols = {}
    for k in z.files:
        if k not in ("example_ids", "lengths"):
            flat = z[k]
            cols[k] = [flat[a:a + n].tolist() for a, n in zip(starts, lengths[pos])]
    cols["attention_mask"] = [[1] * n for n in lengths[pos]]
    return cols


def training_frame(cfg: TrainConfig):
    """The split data and the rows ``cfg`` trains on: a seeded ``train_limit`` subsample of the train carve, minus
    the held-out fold when ``cfg.heldout_fold`` names one (of ``cfg.folds``, see toolkit.nn.encoder.difficulty)."""
    data = load_split(cfg.task, "train", cfg.data_dir, split_seed=cfg.split_seed, source="local" if cfg.data_dir or
                      os.environ.get("TOOLKIT_DATA_DIR") else "auto")
    frame = data.frame
    if cfg.train_limit and cfg.train_limit < len(frame):
        rows = np.sort(np.random.default_rng(cfg.seed).choice(len(frame), cfg.train_limit, replace=False))
        frame = frame.iloc[rows].reset_index(drop=True)
    if cfg.heldout_fold is not None:
        keep = fold_assignment(len(frame), cfg.folds, cfg.seed) != cfg.heldout_fold
        frame = frame[keep].reset_index(drop=True)
    return data, frame


def fold_assignment(n: int, k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of each of ``n`` training rows: a seeded permutation taken modulo ``k`` (sizes differ by <= 1)."""
    return np.random.default_rng(seed).permutation(n) % k


# -------------------------------------------------------------------------------------- model selection
class BestEpoch(TrainerCallback):
    """Keep the best epoch on a validation split, and stop after ``patience`` epochs without improvement.

    After each evaluation (one per epoch) whose ``eval_selection`` beats the best so far, the weights are saved to
    ``folder`` (atomically, with ``best.json``), so the choice survives an interrupted, resumed run.
    :meth:`restore` loads them back into the model at the end. Ties keep the earlier epoch.
    """

    def __init__(self, folder: Path, patience: int | None = None):
        self.folder, self.patience = Path(folder), patience
        self.best = json.loads((self.folder / "best.json").read_text()) if (self.folder / "best.json").exists() \
            else None

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kw):
        value, epoch = float(metrics["eval_selection"]), int(round(state.epoch))
        if self.best is None or value > self.best["value"]:
            best = {"epoch": epoch, "step": state.global_step, "value": value}

            def fill(tmp: Path) -> None:
                model.save_pretrained(tmp, safe_serialization=True)
                (tmp / "best.json").write_text(json.dumps(best))

            write_folder_atomic(self.folder, fill, what="best-epoch folder")
            self.best = best
        elif self.patience is not None and epoch - self.best["epoch"] >= self.patience:
            control.should_training_stop = True

    def restore(self, model) -> dict | None:
        """Load the best epoch's weights into ``model``; returns ``best.json`` (None if nothing was evaluated)."""
        if self.best is None:
            return None
        from safetensors.torch import load_file

        state = load_file(self.folder / "model.safetensors")
        model.load_state_dict(state, strict=True)
        return self.best


def exit_metrics(metric: str, num_labels: int, n_exits: int):
    """``compute_metrics`` for the Trainer: the task metric of every exit; ``selection`` = the last exit's."""

    def compute(p) -> dict:
        logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        pred = np.asarray(logits).reshape(len(p.label_ids), n_exits, -1).argmax(-1)
        out = {f"{metric}_exit{e + 1}": task_metric(pred[:, e], p.label_ids, metric=metric, n_classes=num_labels)
               for e in range(n_exits)}
        out["selection"] = out[f"{metric}_exit{n_exits}"]
        return out

    return compute


def learning_curve(log_history: list[dict]) -> list[dict]:
    """Per epoch: the mean logged training loss and every ``eval_*`` value (from the Trainer's log history)."""
    rows = {}
    for rec in log_history:
        if "epoch" not in rec:
            continue
        if "eval_selection" in rec:
            e = int(round(rec["epoch"]))
            rows.setdefault(e, {"epoch": e, "losses": []}).update(
                {k[5:]: v for k, v in rec.items() if k.startswith("eval_") and not k.endswith(("_runtime", "per_second"))})
            rows[e]["step"] = rec.get("step")
        elif "loss" in rec:
            e = int(np.ceil(rec["epoch"] - 1e-9)) or 1
            rows.setdefault(e, {"epoch": e, "losses": []})["losses"].append(rec["loss"])
    curve = []
    for e in sorted(rows):
        r = rows[e]
        losses = r.pop("losses")
        curve.append({**r, "train_loss": float(np.mean(losses)) if losses else None})
    return curve


# ------------------------------------------------------------------------------------------------ train
def _args(cfg: TrainConfig, out: Path, **over) -> TrainingArguments:
    kw = dict(output_dir=str(out), per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
              num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, warmup_steps=cfg.warmup_ratio,
              weight_decay=cfg.weight_decay, lr_scheduler_type="linear", seed=cfg.seed, data_seed=cfg.seed,
              bf16=cfg.bf16, save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=1,
              logging_steps=cfg.logging_steps, report_to=[], remove_unused_columns=False,
              dataloader_num_workers=0, disable_tqdm=not os.isatty(2), use_cpu=not torch.cuda.is_available(),
              per_device_eval_batch_size=max(64, cfg.batch_size))
    kw.update(over)
    return TrainingArguments(**kw)


def drop_incomplete_checkpoints(folder: Path) -> list[Path]:
    """Remove the ``checkpoint-<step>`` folders in ``folder`` (the names transformers resumes from) that a failed or
    killed save left without a whole ``trainer_state.json`` (transformers writes it last, after the weights,
    optimizer and RNG states, in place and unsynced: a kill can leave it missing, empty or cut short): resuming from
    one would restart at step 0 with half-saved states, or fail reading the state on every rerun. Returns the
    folders removed."""
    cut = [p for p in folder.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()
           and not p.is_symlink() and not _whole_json(p / "trainer_state.json")] if folder.is_dir() else []
    for p in cut:
        shutil.rmtree(p, ignore_errors=True)
    return cut


def _whole_json(path: Path) -> bool:
    """Whether ``path`` is a file holding one whole JSON object."""
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


def _fit(cfg, model, tokenizer, ds, out: Path, objective: str, teacher=None, callbacks=None, head_learning_rate=None,
         eval_ds=None, compute_metrics=None, **arg_over) -> dict:
    loss_kwargs = {}
    if objective == "distill":
        loss_kwargs = {"temperature": cfg.distill_temperature, "alpha": cfg.distill_alpha}
    elif objective == "ranking":
        loss_kwargs = {"margin": cfg.ranking_margin, "lam": cfg.ranking_lambda}
    if eval_ds is not None:
        arg_over.setdefault("eval_strategy", "epoch")
    trainer = MultiExitTrainer(model=model, args=_args(cfg, out, **arg_over), train_dataset=ds, eval_dataset=eval_ds,
                               data_collator=DataCollatorWithPadding(tokenizer), objective=objective,
                               loss_kwargs=loss_kwargs, teacher=teacher, callbacks=callbacks,
                               head_learning_rate=head_learning_rate, compute_metrics=compute_metrics)
    drop_incomplete_checkpoints(out)  # a save killed outright (the zoo's runner, at a session's end)
    last = get_last_checkpoint(str(out)) if out.exists() else None
    try:
        result = trainer.train(resume_from_checkpoint=last)
    finally:
        drop_incomplete_checkpoints(out)  # the rerun resumes from the last complete one
    return {"train_loss": result.training_loss, "steps": result.global_step, "resumed_from": last,
            "log_history": trainer.state.log_history}


def _validation(cfg: TrainConfig, tokenizer, n_exits: int):
    """Validation dataset, metric function and best-epoch keeper of a run with ``select_on``; Nones without."""
    if not cfg.select_on:
        return None, None, None
    spec = get_task(cfg.task)
    val = load_split(cfg.task, cfg.select_on, cfg.data_dir, split_seed=cfg.split_seed,
                     source="local" if cfg.data_dir or os.environ.get("TOOLKIT_DATA_DIR") else "auto")
    frame = val.frame if cfg.eval_limit is None else val.frame.iloc[:cfg.eval_limit]
    ds = tokenize_frame(frame, tokenizer, cfg.max_length, cache_dir=cfg.token_cache, data=val)
    keeper = BestEpoch(Path(cfg.output_dir) / "best", cfg.patience)
    return ds, exit_metrics(spec.metric, spec.num_labels, n_exits), keeper


def train(cfg: TrainConfig, callbacks=None) -> Path:
    """Train per ``cfg``; returns the folder with the final weights (``<output_dir>/final``).

    Resumable: rerunning the same config continues from the last checkpoint in ``output_dir``. With
    ``cfg.select_on`` the final weights are those of the best epoch on that split (``train_meta.json`` records the
    per-epoch curve and the epoch kept). ``callbacks``: extra ``transformers.TrainerCallback`` objects. One process
    at a time trains in ``output_dir`` (:func:`run_lock`).
    """
    out = Path(cfg.output_dir)
    if finished_run(cfg, out):  # its refusals come first: a refused run writes nothing, not even the lock
        return out / "final"
    with run_lock(out):
        return _train(cfg, callbacks)


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold ``out``'s training lock (an exclusive ``flock`` on ``<out>/train.lock``, released however the process
    ends) while training there. A second process training the same folder would remove the first's checkpoint
    being saved (:func:`drop_incomplete_checkpoints`) and its final folder's temporaries, and the two would
    overwrite each other's checkpoints: refused at once with a RuntimeError naming the folder and the holder's pid.
    Take it after :func:`finished_run`, whose refusals write nothing; an ``out`` the lock cannot be made in is left
    unlocked."""
    import fcntl

    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / "train.lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise RuntimeError(f"{out}: another process (pid {holder}) is training in this folder; wait for it to "
                               f"end or stop it, or give another output_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _train(cfg: TrainConfig, callbacks=None) -> Path:
    out = Path(cfg.output_dir)
    final = out / "final"
    spec = get_task(cfg.task)
    t0 = time.time()
    data, frame = training_frame(cfg)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.model))
    extra = {}
    if cfg.objective == "ranking":
        extra["difficulty"] = _difficulty_for(frame, cfg.difficulty_file)
    ds = tokenize_frame(frame, tokenizer, cfg.max_length, extra, cache_dir=cfg.token_cache, data=data)
    exit_layers = cfg.exit_layers
    if cfg.objective == "ranking" and exit_layers is None:
        exit_layers = [cfg.num_hidden_layers] if cfg.num_hidden_layers else None
    if _is_multi_exit(cfg.model):  # continue training a saved multi-exit model (e.g. a slenderized one)
        model = MultiExitModel.from_pretrained(resolve_model(cfg.model))
    else:
        model = MultiExitModel.from_backbone(cfg.model, spec.num_labels, exit_layers=exit_layers,
                                             num_hidden_layers=cfg.num_hidden_layers, pooling=cfg.pooling,
                                             id2label=dict(enumerate(spec.label_names)), seed=cfg.seed)
    if cfg.objective == "ranking" and len(model.exit_layers) != 1:
        model = MultiExitModel.from_backbone(cfg.model, spec.num_labels, exit_layers=[model.exit_layers[-1]],
                                             num_hidden_layers=cfg.num_hidden_layers, pooling=cfg.pooling,
                                             id2label=dict(enumerate(spec.label_names)), seed=cfg.seed)
    teacher = load_model(cfg.teacher) if cfg.teacher else None
    logs = {}
    if cfg.objective == "two_stage":
        freeze_all_but_final(model)
        logs["stage1"] = _fit(cfg, model, tokenizer, ds, out / "stage1", "final", callbacks=callbacks)
        freeze_backbone(model)
        logs["stage2"] = _fit(cfg, model, tokenizer, ds, out / "stage2", "joint", callbacks=callbacks,
                              learning_rate=cfg.head_learning_rate or 10 * cfg.learning_rate)
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        eval_ds, metrics, keeper = _validation(cfg, tokenizer, len(model.exit_layers))
        logs["train"] = _fit(cfg, model, tokenizer, ds, out / "checkpoints", cfg.objective, teacher=teacher,
                             callbacks=[*(callbacks or []), *([keeper] if keeper else [])],
                             head_learning_rate=cfg.head_learning_rate, eval_ds=eval_ds, compute_metrics=metrics)
        if keeper is not None:
            logs["curve"] = learning_curve(logs["train"]["log_history"])
            logs["best"] = keeper.restore(model)
    model.config.train_config = asdict(cfg)

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = {"config": asdict(cfg), "train_size": len(frame), "data_fingerprint": data.fingerprint,
                "data_files": data.files, "wall_time_s": time.time() - t0, "logs": logs,
                "device": _device_name(), "versions": package_versions()}
        (tmp / "train_meta.json").write_text(json.dumps(meta, indent=1, default=str))

    write_folder_atomic(final, fill, what="final model folder")
    # checkpoints are only for resuming: free the disk, with the temporaries of saves killed outright (SIGKILL runs
    # no cleanup): the old fixed names and write_folder_atomic's .best.<pid>.*.tmp / .final.<pid>.*.tmp
    for done in ("checkpoints", "stage1", "stage2", "best", "best.tmp", "final.tmp"):
        shutil.rmtree(out / done, ignore_errors=True)
    for left in [*out.glob(".best.*.tmp"), *out.glob(".final.*.tmp")]:
        shutil.rmtree(left, ignore_errors=True)
    return final


def _device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def finished_run(cfg, out: Path) -> bool:
    """True if ``<out>/final`` holds a finished run of ``cfg``. Otherwise claim ``out`` for ``cfg``: refuse it if its
    checkpoints come from another configuration (they must not be resumed), then record ``cfg`` there. An unfinished
    ``<out>/final`` that is a symbolic link, a file or a read-only folder is refused now (the finished weights are
    renamed onto it at the end of the run).

    ``cfg``: any training dataclass (:class:`TrainConfig`, ``Seq2SeqTrainConfig``).
    """
    final = out / "final"
    if (final / "config.json").exists():
        _check_same_run(cfg, final / "train_meta.json")
        return True
    check_writable_folder(final, what="final weights folder")
    out.mkdir(parents=True, exist_ok=True)
    _check_same_run(cfg, out / "train_config.json")
    write_atomic(out / "train_config.json", json.dumps(asdict(cfg), indent=1, default=str))
    return False


# fields that say where things are or how often to log, not what is trained
_RUN_INDEPENDENT = {"output_dir", "data_dir", "save_steps", "logging_steps", "token_cache"}


def _check_same_run(cfg, saved: Path) -> None:
    """Refuse to reuse or resume a run folder that was trained with a different configuration.

    ``saved``: the configuration's JSON dump, or a ``train_meta.json`` holding it under ``config``.
    """
    if not saved.exists():
        return
    old = json.loads(saved.read_text())
    old = old.get("config", old)
    new = json.loads(json.dumps(asdict(cfg), default=str))
    diff = {k: (old.get(k), v) for k, v in new.items() if k not in _RUN_INDEPENDENT and old.get(k) != v}
    if diff:
        what = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in sorted(diff.items()))
        raise ValueError(f"{saved.parent} was trained with a different configuration ({what}); delete that folder "
                         "to retrain, or give another output_dir")


def _is_multi_exit(name_or_path) -> bool:
    path = Path(resolve_model(name_or_path))
    if not (path / "config.json").exists():
        return False
    return json.loads((path / "config.json").read_text()).get("model_type") == "multi_exit"


def freeze_all_but_final(model: MultiExitModel) -> None:
    """Two-stage, stage 1: only the backbone and the final head learn (loss: the final exit's CE)."""
    for h in model.heads[:-1]:
        h.requires_grad_(False)


def freeze_backbone(model: MultiExitModel) -> None:
    """Two-stage, stage 2: backbone and final head frozen, the other heads learn."""
    model.backbone.requires_grad_(False)
    model.heads[-1].requires_grad_(False)
    for h in model.heads[:-1]:
        h.requires_grad_(True)


def _difficulty_for(frame, path) -> np.ndarray:
    z = np.load(path, allow_pickle=False)
    lookup = dict(zip(z["example_ids"].astype(str), z["hard"].astype(np.int64)))
    missing = [i for i in frame["example_id"] if i not in lookup]
    if missing:
        raise ValueError(f"{path}: no difficulty label for {len(missing)} training examples (first {missing[0]}); "
                         f"make the file from the same task and split seed with `toolkit difficulty`.")
    return np.array([lookup[i] for i in frame["example_id"]], dtype=np.int64)
