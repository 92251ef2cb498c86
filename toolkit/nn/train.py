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

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from ..data import get_task, load_split
from ..provenance import package_versions
from .losses import OBJECTIVES, distill_loss, joint_loss, ranking_loss, weighted_loss
from .models import MultiExitModel, load_model, resolve_model

# ------------------------------------------------------------------------------------------------ losses










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
    data_dir: str | None = None
    split_seed: int = 0
    save_steps: int = 500
    logging_steps: int = 50

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {OBJECTIVES}")
        if self.objective == "ranking" and not self.difficulty_file:
            raise ValueError("objective 'ranking' needs difficulty_file (make one with `toolkit difficulty`)")

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


def tokenize_frame(frame, tokenizer, max_length: int, extra: dict | None = None) -> ColumnsDataset:
    """Tokenized rows (input ids, mask, labels and any extra int columns), unpadded."""
    a = list(frame["text_a"])
    b = list(frame["text_b"]) if frame["text_b"].notna().all() else None
    enc = tokenizer(a, b, truncation=True, max_length=max_length)
    cols = dict(enc)
    cols["labels"] = frame["label"].to_numpy().tolist()
    for k, v in (extra or {}).items():
        cols[k] = list(v)
    return ColumnsDataset(cols)


def training_frame(cfg: TrainConfig):
    data = load_split(cfg.task, "train", cfg.data_dir, split_seed=cfg.split_seed, source="local" if cfg.data_dir or
                      os.environ.get("TOOLKIT_DATA_DIR") else "auto")
    frame = data.frame
    if cfg.train_limit and cfg.train_limit < len(frame):
        rows = np.sort(np.random.default_rng(cfg.seed).choice(len(frame), cfg.train_limit, replace=False))
        frame = frame.iloc[rows].reset_index(drop=True)
    return data, frame


# ------------------------------------------------------------------------------------------------ train
def _args(cfg: TrainConfig, out: Path, **over) -> TrainingArguments:
    kw = dict(output_dir=str(out), per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
              num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, warmup_steps=cfg.warmup_ratio,
              weight_decay=cfg.weight_decay, lr_scheduler_type="linear", seed=cfg.seed, data_seed=cfg.seed,
              bf16=cfg.bf16, save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=1,
              logging_steps=cfg.logging_steps, report_to=[], remove_unused_columns=False,
              dataloader_num_workers=0, disable_tqdm=not os.isatty(2), use_cpu=not torch.cuda.is_available())
    kw.update(over)
    return TrainingArguments(**kw)


def _fit(cfg, model, tokenizer, ds, out: Path, objective: str, teacher=None, callbacks=None, head_learning_rate=None,
         **arg_over) -> dict:
    loss_kwargs = {}
    if objective == "distill":
        loss_kwargs = {"temperature": cfg.distill_temperature, "alpha": cfg.distill_alpha}
    elif objective == "ranking":
        loss_kwargs = {"margin": cfg.ranking_margin, "lam": cfg.ranking_lambda}
    trainer = MultiExitTrainer(model=model, args=_args(cfg, out, **arg_over), train_dataset=ds,
                               data_collator=DataCollatorWithPadding(tokenizer), objective=objective,
                               loss_kwargs=loss_kwargs, teacher=teacher, callbacks=callbacks,
                               head_learning_rate=head_learning_rate)
    last = get_last_checkpoint(str(out)) if out.exists() else None
    result = trainer.train(resume_from_checkpoint=last)
    return {"train_loss": result.training_loss, "steps": result.global_step, "resumed_from": last,
            "log_history": trainer.state.log_history}


def train(cfg: TrainConfig, callbacks=None) -> Path:
    """Train per ``cfg``; returns the folder with the final weights (``<output_dir>/final``).

    Resumable: rerunning the same config continues from the last checkpoint in ``output_dir``.
    ``callbacks``: extra ``transformers.TrainerCallback`` objects.
    """
    out = Path(cfg.output_dir)
    final = out / "final"
    if finished_run(cfg, out):
        return final
    spec = get_task(cfg.task)
    t0 = time.time()
    data, frame = training_frame(cfg)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.model))
    extra = {}
    if cfg.objective == "ranking":
        extra["difficulty"] = _difficulty_for(frame, cfg.difficulty_file)
    ds = tokenize_frame(frame, tokenizer, cfg.max_length, extra)
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
        logs["train"] = _fit(cfg, model, tokenizer, ds, out / "checkpoints", cfg.objective, teacher=teacher,
                             callbacks=callbacks, head_learning_rate=cfg.head_learning_rate)
    tmp = out / "final.tmp"
    model.config.train_config = asdict(cfg)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    meta = {"config": asdict(cfg), "train_size": len(frame), "data_fingerprint": data.fingerprint,
            "data_files": data.files, "wall_time_s": time.time() - t0, "logs": logs,
            "versions": package_versions()}
    (tmp / "train_meta.json").write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, final)
    return final


def finished_run(cfg, out: Path) -> bool:
    """True if ``<out>/final`` holds a finished run of ``cfg``. Otherwise claim ``out`` for ``cfg``: refuse it if its
    checkpoints come from another configuration (they must not be resumed), then record ``cfg`` there.

    ``cfg``: any training dataclass (:class:`TrainConfig`, ``Seq2SeqTrainConfig``).
    """
    final = out / "final"
    if (final / "config.json").exists():
        _check_same_run(cfg, final / "train_meta.json")
        return True
    out.mkdir(parents=True, exist_ok=True)
    _check_same_run(cfg, out / "train_config.json")
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1, default=str))
    return False


# fields that say where things are or how often to log, not what is trained
_RUN_INDEPENDENT = {"output_dir", "data_dir", "save_steps", "logging_steps"}


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







