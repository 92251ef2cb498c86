"""Reproducible training recipes for the model zoo.

Each recipe is a :class:`toolkit.nn.encoder.train.TrainConfig` for ``(task, member, seed)``, trained in
``<root>/<task>/<member>-s<seed>``. Members: ``minilm6_me`` (all-MiniLM-L6-v2, 6 exits, joint), ``mpnet_me``
(all-mpnet-base-v2, 12 exits, joint), the cascade ``minilm2`` -> ``minilm6`` -> ``mpnet`` (complete single-exit
models) and CascadeBERT's difficulty-aware cascade ``minilm2_da`` -> ``minilm6_da`` -> ``mpnet`` (the small members
trained with the ranking objective on out-of-fold difficulty labels of their plain twin; the last member's confidence
is never used, so it is the plain ``mpnet``).

The multi-seed recipe (:data:`V2_MEMBERS`): every one of these members is trained for up to ``epochs`` epochs with an evaluation on
``cal`` (the held-out train carve, which is now the *validation* split) after each, keeping the best epoch and
stopping after ``patience`` epochs without improvement; three training seeds (:data:`SEEDS`). The other members
(objective comparison, slenderized, probes, text-to-text) keep the v1 schedules of the caches shipped with them.
``train_limit`` caps the training examples (the manifest records the size actually used). Training never sees
``test``; model selection sees ``cal`` only.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.nn.encoder.train import TrainConfig

ZOO_TASKS = ("sst2", "mrpc", "rte", "cola", "agnews")
SEEDS = (42, 43, 44)

MEMBERS = {
    "minilm6_me": dict(model="all-MiniLM-L6-v2", objective="joint", learning_rate=1e-4),
    "minilm2": dict(model="all-MiniLM-L6-v2", objective="joint", num_hidden_layers=2, exit_layers=[2],
                    learning_rate=1e-4),
    "minilm6": dict(model="all-MiniLM-L6-v2", objective="joint", exit_layers=[6], learning_rate=1e-4),
    # heads at 1e-3: at the encoder's 3e-5 MPNet's shallow heads stayed near chance (see MultiExitTrainer)
    "mpnet_me": dict(model="all-mpnet-base-v2", objective="joint", learning_rate=3e-5, head_learning_rate=1e-3),
    "mpnet": dict(model="all-mpnet-base-v2", objective="joint", exit_layers=[12], learning_rate=3e-5),
    # CascadeBERT: ranking objective on the difficulty labels of DIFFICULTY[member] (out-of-fold, same seed)
    "minilm2_da": dict(model="all-MiniLM-L6-v2", objective="ranking", num_hidden_layers=2, exit_layers=[2],
                       learning_rate=1e-4),
    "minilm6_da": dict(model="all-MiniLM-L6-v2", objective="ranking", exit_layers=[6], learning_rate=1e-4),
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
CASCADE_DA = ("minilm2_da", "minilm6_da", "mpnet")
DIFFICULTY = {"minilm2_da": "minilm2", "minilm6_da": "minilm6"}  # ranking member -> whose out-of-fold errors are hard
DIFFICULTY_FOLDS = 2
V2_MEMBERS = ("minilm6_me", "mpnet_me", "minilm2", "minilm6", "mpnet", "minilm2_da", "minilm6_da")

# The multi-seed recipe: (max epochs, train_limit, patience) per task and member, with the best epoch on cal kept. Ranking members
# take their plain twin's schedule. SST-2 (65,349 sentences): batch 64 (BATCH_V2) and at most 2 epochs, and its
# MPNet runs keep the 20,000-sentence subsample (one epoch of it already put MPNet-base 2.7 points above MiniLM-L6
# on test); every other run uses the whole train carve at batch 32.
SCHEDULE_V2 = {
    "sst2": {"default": (2.0, None, 1), "mpnet": (3.0, 20000, 1), "mpnet_me": (3.0, 20000, 1)},
    "mrpc": {"default": (10.0, None, 3), "mpnet": (6.0, None, 2), "mpnet_me": (6.0, None, 2)},
    "rte": {"default": (10.0, None, 3), "mpnet": (6.0, None, 2), "mpnet_me": (6.0, None, 2)},
    "cola": {"default": (6.0, None, 2), "mpnet": (5.0, None, 2), "mpnet_me": (5.0, None, 2)},
    "agnews": {"default": (6.0, None, 2), "mpnet": (5.0, None, 2), "mpnet_me": (5.0, None, 2)},
}
BATCH_V2 = {"sst2": 64}  # default 32
# The multi-seed recipe on a CPU (``profile="cpu"``, the runner's ``--device cpu``): these cores have no bf16 units, so
# autocast is 12.7x slower than fp32 (measured: README), and MPNet-base costs 0.75 CPU s per training example here
# (24 CPU s per fp32 step of 32 x 80 tokens; one MRPC seed of 3 epochs about 2 CPU-hours, longer than a session
# gives the niced runner, whose run folders do not outlive the session), so no MPNet is trained. The MiniLM members get a fixed small budget: (max epochs, train_limit, patience), fp32, batch 32,
# per-epoch selection on cal as in v2. The cascades' last member is the shipped v1 multi-exit MPNet-base's complete
# 12-layer model (its L12 exit, read from ``<task>/mpnet_me-{cal,test}.parquet``), the same model for every seed,
# so the early-exit MPNet and both cascades share their largest model and compare paired (toolkit.zoo.build).
SCHEDULE_CPU = {"sst2": (1.0, 20000, None), "mrpc": (3.0, None, 1), "rte": (3.0, None, 1), "cola": (3.0, None, 1),
                "agnews": (3.0, None, 1)}
CPU_MEMBERS = ("minilm6_me", "minilm2", "minilm6", "minilm2_da", "minilm6_da")
# member -> (the shipped v1 set whose unsuffixed cache holds it, the stage): not trained on a CPU, borrowed
CPU_BORROWED = {"mpnet": ("mpnet_me", "L12")}
# (task, member) pairs whose v2 runs were shipped before the CPU profile existed: they keep the v2 recipe
CPU_KEEPS_V2 = {("mrpc", "minilm6_me")}
PROFILES = ("v2", "cpu")
# per-task recipe changes of the v2 members (RTE: see scripts/rte_recipes.py and the README)
TASK_OVERRIDES_V2: dict[str, dict[str, dict]] = {}
# the RTE investigation: multi-exit MiniLM-L6 with one change each against the v2 minilm6_me recipe (same schedule
# and model selection); sets of the same name, trained on RTE by scripts/rte_recipes.py (CPU) or scripts/gpu_zoo.py
RTE_VARIANTS = {
    "minilm6_me_lr3e5": dict(learning_rate=3e-5),
    "minilm6_me_lr3e5_h1e3": dict(learning_rate=3e-5, head_learning_rate=1e-3),
    "minilm6_me_lr5e5_w10": dict(learning_rate=5e-5, warmup_ratio=0.1),
    "minilm6_me_final": dict(learning_rate=5e-5, exit_layers=[6]),
    "minilm6_me_weighted": dict(learning_rate=5e-5, objective="weighted"),
    "minilm6_me_cls": dict(learning_rate=5e-5, pooling="cls"),
    "minilm6_me_len256": dict(learning_rate=5e-5, max_length=256),
}
for _m, _over in RTE_VARIANTS.items():
    MEMBERS[_m] = {**MEMBERS["minilm6_me"], **_over}

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
    from toolkit.nn.seq2seq.train import Seq2SeqTrainConfig

    if member not in SEQ2SEQ:
        raise ValueError(f"unknown text-to-text member {member!r}; choose one of {sorted(SEQ2SEQ)}")
    epochs, limit = SEQ2SEQ_SCHEDULE.get(task, {}).get(member, (1.0, None))
    kw = dict(task=task, output_dir=str(Path(root) / task / member), epochs=epochs, train_limit=limit, bf16=True,
              max_length=128, seed=42, **SEQ2SEQ[member])
    if tiny:
        kw.update(max_steps=4, train_limit=64, batch_size=16, bf16=False, save_steps=2, logging_steps=2)
    kw.update(over)
    return Seq2SeqTrainConfig(**kw)


def run_dir(root: str | Path, task: str, member: str, seed: int) -> Path:
    """Where ``member`` trains on ``task`` with training seed ``seed``."""
    return Path(root) / task / f"{member}-s{seed}"


def recipe(task: str, member: str, root: str | Path = "runs", tiny: bool = False, seed: int = 42,
           profile: str = "v2", **over) -> TrainConfig:
    """The TrainConfig for one zoo member on one task and training seed; ``tiny`` gives the same path in seconds (CI).

    ``profile="cpu"``: the CPU budget of :data:`SCHEDULE_CPU` for the MiniLM members (:data:`CPU_MEMBERS`; the
    pairs of :data:`CPU_KEEPS_V2` keep v2). Ranking members point ``difficulty_file`` at the labels that
    :func:`difficulty_recipe`'s folds produce.
    """
    if member not in MEMBERS:
        raise ValueError(f"unknown zoo member {member!r}; choose one of {sorted(MEMBERS)}")
    if profile not in PROFILES:
        raise ValueError(f"unknown recipe profile {profile!r}; choose one of {PROFILES}")
    kw = {**dict(task=task, output_dir=str(run_dir(root, task, member, seed)), bf16=True, max_length=128, seed=seed),
          **MEMBERS[member]}
    if member in V2_MEMBERS or member in RTE_VARIANTS:
        sched = SCHEDULE_V2[task]
        epochs, limit, patience = sched.get(DIFFICULTY.get(member, member), sched["default"])
        kw.update(epochs=epochs, train_limit=limit, select_on="cal", patience=patience,
                  batch_size=BATCH_V2.get(task, 32))
        kw.update(TASK_OVERRIDES_V2.get(task, {}).get(DIFFICULTY.get(member, member), {}))
        if profile == "cpu" and member in CPU_MEMBERS and (task, member) not in CPU_KEEPS_V2:
            epochs, limit, patience = SCHEDULE_CPU[task]
            kw.update(epochs=epochs, train_limit=limit, patience=patience, batch_size=32, bf16=False)
    else:
        sched = SCHEDULE[task]
        kw["epochs"], kw["train_limit"] = sched.get(member, sched["default"])
    if member in DIFFICULTY:
        kw["difficulty_file"] = str(Path(kw["output_dir"]) / "difficulty" / "difficulty.npz")
    if member in SLENDER:  # trains the pruned copy of the teacher, distilling from the teacher
        kw["model"] = str(Path(kw["output_dir"]) / "pruned")
        kw["teacher"] = str(run_dir(root, task, SLENDER[member]["teacher"], seed) / "final")
    if tiny:
        kw.update(max_steps=8, train_limit=64, batch_size=16, bf16=False, save_steps=4, logging_steps=2)
        if kw.get("select_on"):
            kw.update(eval_limit=32, patience=None)
    kw.update(over)
    return TrainConfig(**kw)


def difficulty_recipe(task: str, member: str, root: str | Path = "runs", tiny: bool = False, seed: int = 42,
                      profile: str = "v2", **over) -> TrainConfig:
    """The plain twin's recipe whose out-of-fold models label the difficulty for ranking member ``member``; its
    folds train in ``<run_dir>/difficulty/fold<k>`` (see :func:`toolkit.nn.encoder.difficulty.fold_config`)."""
    if member not in DIFFICULTY:
        raise ValueError(f"{member!r} is not a difficulty-aware member; choose one of {sorted(DIFFICULTY)}")
    out = run_dir(root, task, member, seed) / "difficulty"
    return recipe(task, DIFFICULTY[member], root=root, tiny=tiny, seed=seed, profile=profile,
                  **{"output_dir": str(out), **over})
