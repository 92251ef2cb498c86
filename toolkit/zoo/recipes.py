"""Reproducible training recipes for the model zoo (real-caches issue).

Each recipe is a :class:`toolkit.nn.train.TrainConfig` keyed ``"{task}/{member}"``. Members:
``minilm6_me`` (all-MiniLM-L6-v2, 6 exits, joint), ``mpnet_me`` (all-mpnet-base-v2, 12 exits, joint),
and the cascade ``minilm2`` -> ``minilm6`` -> ``mpnet`` (complete single-exit models).
``train_limit`` caps the training examples where a full epoch does not fit a CPU budget (the manifest records
the size actually used). Training never sees ``cal`` or ``test``.
"""

from __future__ import annotations

from pathlib import Path

from ..nn.train import TrainConfig

ZOO_TASKS = ("sst2", "mrpc", "rte", "cola", "agnews")

MEMBERS = {
    "minilm6_me": dict(model="all-MiniLM-L6-v2", objective="joint", learning_rate=1e-4),
    "minilm2": dict(model="all-MiniLM-L6-v2", objective="joint", num_hidden_layers=2, exit_layers=[2],
                    learning_rate=1e-4),
    "minilm6": dict(model="all-MiniLM-L6-v2", objective="joint", exit_layers=[6], learning_rate=1e-4),
    # heads at 1e-3: at the encoder's 3e-5 MPNet's shallow heads stayed near chance (see MultiExitTrainer)
    "mpnet_me": dict(model="all-mpnet-base-v2", objective="joint", learning_rate=3e-5, head_learning_rate=1e-3),
    "mpnet": dict(model="all-mpnet-base-v2", objective="joint", exit_layers=[12], learning_rate=3e-5),
    # objective comparison (fine-tuning issue): same data subsample, seed and schedule, three objectives
    "minilm6_me_joint_sub": dict(model="all-MiniLM-L6-v2", objective="joint", learning_rate=1e-4),
    "minilm6_me_weighted_sub": dict(model="all-MiniLM-L6-v2", objective="weighted", learning_rate=1e-4),
    "minilm6_me_two_stage_sub": dict(model="all-MiniLM-L6-v2", objective="two_stage", learning_rate=1e-4,
                                     head_learning_rate=1e-3),
}
# slenderized (COST-EFF): MiniLM-L6 multi-exit pruned to half width, then per-exit distillation from the unpruned one
SLENDER = {"minilm6_me_w50": {"teacher": "minilm6_me", "width": 0.5},
           "minilm6_me_w25": {"teacher": "minilm6_me", "width": 0.25}}
for _m in SLENDER:
    MEMBERS[_m] = dict(model="PRUNED", objective="distill", learning_rate=1e-4, distill_temperature=2.0,
                       distill_alpha=0.5)
# probe exits (fine-tuning issue): linear heads on the frozen layers of the complete MiniLM-L6 cascade member
PROBES = {"minilm6_probe": {"classifier": "minilm6", "train_limit": 5000, "C": 1.0}}
OBJECTIVE_MEMBERS = ("minilm6_me_joint_sub", "minilm6_me_weighted_sub", "minilm6_me_two_stage_sub")
CASCADE = ("minilm2", "minilm6", "mpnet")

# (epochs, train_limit) per task: small tasks get more epochs; SST-2's MPNet runs are subsampled for CPU time.
SCHEDULE = {
    "sst2": {"default": (1.0, None), "minilm6": (1.0, 30000), "mpnet_me": (1.0, 20000), "mpnet": (1.0, 20000),
             **{m: (1.0, 10000) for m in ("minilm6_me_joint_sub", "minilm6_me_weighted_sub", "minilm6_me_two_stage_sub",
                                          "minilm6_me_w50", "minilm6_me_w25")}},
    # MPNet (8x MiniLM-L6's cost per example) gets fewer epochs on the small tasks to fit the CPU budget; on MRPC
    # one epoch (104 steps) left both MPNets below MiniLM-L6 (F1 0.83 vs 0.87), so they get three
    "mrpc": {"default": (4.0, None), "mpnet": (3.0, None), "mpnet_me": (3.0, None)},
    "rte": {"default": (4.0, None), "mpnet": (2.0, None), "mpnet_me": (2.0, None), "minilm6_me_w50": (2.0, None)},
    "cola": {"default": (3.0, None), "mpnet": (1.0, None), "mpnet_me": (1.0, None)},
    "agnews": {"default": (3.0, None), "mpnet": (1.0, None), "mpnet_me": (1.0, None), "minilm6_me_w50": (2.0, None)},
}


# text-to-text Swift/Super pair (seq2seq issue): warm-started encoder-decoders that generate the label word. Both
# decoders are the full MiniLM-L6 (cross-attention and LM-head transform new); they differ in the encoder only.
SEQ2SEQ = {"t2t_swift": dict(encoder="all-MiniLM-L6-v2", decoder="all-MiniLM-L6-v2", learning_rate=1e-4),
           "t2t_super": dict(encoder="all-mpnet-base-v2", decoder="all-MiniLM-L6-v2", learning_rate=5e-5)}
SEQ2SEQ_SCHEDULE = {"sst2": {"t2t_swift": (1.0, 20000), "t2t_super": (1.0, 10000)}}


def seq2seq_recipe(task: str, member: str, root: str | Path = "runs", tiny: bool = False, **over):
    """The Seq2SeqTrainConfig of one text-to-text member; ``tiny`` gives the same path in seconds (CI)."""
    from ..nn.seq2seq_train import Seq2SeqTrainConfig

    if member not in SEQ2SEQ:
        raise ValueError(f"unknown text-to-text member {member!r}; choose one of {sorted(SEQ2SEQ)}")
    epochs, limit = SEQ2SEQ_SCHEDULE.get(task, {}).get(member, (1.0, None))
    kw = dict(task=task, output_dir=str(Path(root) / task / member), epochs=epochs, train_limit=limit, bf16=True,
              max_length=128, seed=42, **SEQ2SEQ[member])
    if tiny:
        kw.update(max_steps=4, train_limit=64, batch_size=16, bf16=False, save_steps=2, logging_steps=2)
    kw.update(over)
    return Seq2SeqTrainConfig(**kw)


def recipe(task: str, member: str, root: str | Path = "runs", tiny: bool = False, **over) -> TrainConfig:
    """The TrainConfig for one zoo member on one task; ``tiny`` gives the same path in seconds (CI)."""
    if member not in MEMBERS:
        raise ValueError(f"unknown zoo member {member!r}; choose one of {sorted(MEMBERS)}")
    sched = SCHEDULE[task]
    epochs, limit = sched.get(member, sched["default"])
    kw = dict(task=task, output_dir=str(Path(root) / task / member), epochs=epochs, train_limit=limit,
              bf16=True, max_length=128, seed=42, **MEMBERS[member])
    if member in SLENDER:  # trains the pruned copy of the teacher, distilling from the teacher
        kw["model"] = str(Path(root) / task / member / "pruned")
        kw["teacher"] = str(Path(root) / task / SLENDER[member]["teacher"] / "final")
    if tiny:
        kw.update(max_steps=4, train_limit=64, batch_size=16, bf16=False, save_steps=2, logging_steps=2)
    kw.update(over)
    return TrainConfig(**kw)
