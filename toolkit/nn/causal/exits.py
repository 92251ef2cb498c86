"""Exits of a causal LM: next-token logits from any layer's hidden state (INTERFACES section 3).

An exit is any callable ``exit_logits(layer, hidden) -> logits``: ``layer`` is 1-based (the residual stream after
decoder layer ``layer``, before the final norm), ``hidden`` is ``[..., H]`` and the result ``[..., V]``.

- :class:`LogitLens`: ``lm_head(final_norm(hidden))`` (nostalgebraist 2020); at the last layer it is the model.
- :class:`TunedExits`: a learned affine translator per layer, ``lm_head(final_norm(hidden + A_l hidden + b_l))``
  (the tuned lens of Belrose et al. 2023), trained with the backbone frozen to match the final layer's next-token
  distribution, KL(final || exit), on text from train splits (:func:`train_tuned_exits`). The last layer has no
  translator. Saved as ``translators.safetensors`` + ``exits.json`` (layers, model, training record).

Training (:func:`train_tuned_exits`, ``toolkit llm-train-exits``): chat prompts built from train-split examples by
the prompt sets, each followed by the model's own greedy answer (the positions exits are studied at), minus the
prefix every prompt shares; 10% of the prompts are held out. Optional closed-form start (``init="ridge"``): per
layer, the least-squares affine map from the layer's state to the final state rescaled to the layer's RMS (the final
norm ignores scale). Then Adam on the summed per-layer KL, in steps of ``batch_tokens`` positions, resumable from
``checkpoint.pt`` (state, optimizer, data order, step), with a tqdm bar. Held-out KL and top-1 agreement per layer
are measured for the logit lens, the start and the end, in float32.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from toolkit._api import check_batch
from toolkit.caches.io import check_writable, write_atomic
from toolkit.data.prompts import get_prompt_set
from toolkit.data.provenance import package_versions
from toolkit.data.tasks import load_split
from toolkit.nn.causal.models import (
    CausalLM,
    capture_layer_states,
    common_prefix_length,
    encode_prompts,
    final_norm,
    load_causal_lm,
)
from toolkit.nn.common.parts import weights_sha256

EXITS_FILE, WEIGHTS_FILE, CHECKPOINT_FILE = "exits.json", "translators.safetensors", "checkpoint.pt"
START_FILE = "start.safetensors"  # the translators before the KL stage (ridge start, or zero = logit lens)
ExitFn = Callable[[int, torch.Tensor], torch.Tensor]


class LogitLens:
    """``lm_head(final_norm(hidden))`` at every layer."""

    family = "lens"

    def __init__(self, model):
        self.norm, self.head = final_norm(model), model.get_output_embeddings()
        self.layers = int(model.config.num_hidden_layers)

    def __call__(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        _check_layer(layer, self.layers)
        return self.head(self.norm(hidden))


class TunedExits(nn.Module):
    """Per-layer affine translators (identity plus ``nn.Linear``, zero-initialised) before the final norm and head.

    The model's norm and head are used, not owned: ``state_dict()`` holds only the translators.
    """

    family = "tuned"

    def __init__(self, model, *, info: dict | None = None):
        super().__init__()
        self.layers = int(model.config.num_hidden_layers)
        H = int(model.config.hidden_size)
        self.translators = nn.ModuleList(nn.Linear(H, H) for _ in range(self.layers - 1))
        for t in self.translators:
            nn.init.zeros_(t.weight)
            nn.init.zeros_(t.bias)
        object.__setattr__(self, "_norm", final_norm(model))  # not submodules: frozen, saved with the model
        object.__setattr__(self, "_head", model.get_output_embeddings())
        object.__setattr__(self, "_model", model)  # its weight fingerprint is saved with the translators
        self.info = dict(info or {})
        self.to(next(model.parameters()).device)

    def translate(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        _check_layer(layer, self.layers)
        return hidden if layer == self.layers else hidden + self.translators[layer - 1](hidden)

    def forward(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        return self._head(self._norm(self.translate(layer, hidden)))

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """``translators.safetensors`` and ``exits.json`` (with the model's weight fingerprint), each through
        :func:`~toolkit.caches.io.write_atomic` (a link or a read-only file there is refused, not replaced)."""
        from safetensors.torch import save

        folder = Path(folder)
        for name in (WEIGHTS_FILE, EXITS_FILE):
            check_writable(folder / name, what="tuned exits file")
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        write_atomic(folder / WEIGHTS_FILE, save(tensors))
        _write_json(folder / EXITS_FILE, {**self.info, "kind": "tuned_exits", "layers": self.layers,
                                          "hidden": self.translators[0].in_features,
                                          "weights_sha256": weights_sha256(self._model)})
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, model=None, *, weights: str | None = None) -> TunedExits:
        """Load translators for ``model`` (the causal LM they were trained on; loaded from the record if omitted).

        Exits trained on other weights are refused (``exits.json`` records the model's :func:`weights_sha256`;
        ``weights``: that fingerprint of ``model`` computed before a cast, e.g. to bfloat16), as are translators of
        the wrong shapes, unreadable files and NaN or infinite weights; every error names the file."""
        folder = Path(folder)
        if not (folder / EXITS_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"{folder}: no {EXITS_FILE} + {WEIGHTS_FILE}; train exits with "
                                    f"`toolkit llm-train-exits`")
        info = read_exits_record(folder)
        if model is None:
            path = (info.get("model") or {}).get("path") if isinstance(info.get("model"), dict) else None
            if not isinstance(path, str):
                raise ValueError(f"{folder / EXITS_FILE}: key 'model.path' is missing; pass the model they were "
                                 f"trained on")
            model = load_causal_lm(path).model
        if int(model.config.num_hidden_layers) != info["layers"] or int(model.config.hidden_size) != info["hidden"]:
            raise ValueError(f"{folder / EXITS_FILE}: exits for {info['layers']} layers of width {info['hidden']}, "
                             f"model has {model.config.num_hidden_layers} x {model.config.hidden_size}")
        check_exits_weights(folder, info, weights or weights_sha256(model))
        exits = cls(model, info={k: v for k, v in info.items()
                                 if k not in ("kind", "layers", "hidden", "weights_sha256")})
        exits.load_state_dict(_read_translators(folder / WEIGHTS_FILE, exits.state_dict()))
        return exits.eval().requires_grad_(False)


def read_exits_record(folder: Path) -> dict:
    """``exits.json`` of a tuned-exit folder, checked: a JSON object with integer ``layers`` and ``hidden``."""
    path = Path(folder) / EXITS_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 ({e}); train the exits again") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); the file is damaged: train the exits "
                         f"again") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path}: the exits record is a JSON object, got {type(info).__name__}")
    for key in ("layers", "hidden"):
        v = info.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{path}: key {key!r} must be a positive integer, got {v!r}")
    if info.get("kind", "tuned_exits") != "tuned_exits":
        raise ValueError(f"{path}: key 'kind' is {info.get('kind')!r}, not 'tuned_exits'")
    return info


def check_exits_weights(folder: Path, info: dict, weights: str) -> None:
    """Refuse exits trained on other weights than ``weights`` (a :func:`weights_sha256`); exits saved before the
    fingerprint was recorded load with a warning (only their shapes could be checked)."""
    recorded = info.get("weights_sha256")
    path = Path(folder) / EXITS_FILE
    if recorded is None:
        warnings.warn(f"{path} records no weight fingerprint (saved by an older toolkit): cannot check that these "
                      f"exits were trained on this model; retrain them to record it", stacklevel=3)
        return
    if recorded != weights:
        trained_on = (info.get("model") or {}).get("path") if isinstance(info.get("model"), dict) else None
        raise ValueError(f"{path}: these exits were trained on other weights ({trained_on or 'another model'}, "
                         f"weights sha256 {str(recorded)[:12]}...), not this model's ({weights[:12]}...); an exit "
                         f"runs only on the model it was trained on: train exits for this model with "
                         f"`toolkit llm-train-exits`")


def _read_translators(path: Path, expected: dict) -> dict:
    """The translators' tensors from ``path``, checked against ``expected`` (names and shapes) and for NaN/inf."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error type for truncated or damaged files
        raise ValueError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e}); the file is "
                         f"truncated or damaged: train the exits again") from None
    missing, unknown = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unknown:
        raise ValueError(f"{path}: tensors {missing} missing and {unknown} unexpected for "
                         f"{len(expected) // 2} translators")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ValueError(f"{path}: tensor {k!r} has shape {tuple(v.shape)}, expected "
                             f"{tuple(expected[k].shape)}")
        if not torch.isfinite(v).all():
            raise ValueError(f"{path}: tensor {k!r} holds NaN or infinite values; train the exits again")
    return state


def _check_layer(layer: int, n: int) -> None:
    if not 1 <= int(layer) <= n:
        raise ValueError(f"layer must be in 1..{n} (1-based, after that decoder layer), got {layer}")


def _write_json(path: Path, obj: dict) -> None:
    write_atomic(path, json.dumps(obj, indent=1, default=str))


def load_exits(family_or_path: str | os.PathLike, model, *, weights: str | None = None) -> ExitFn:
    """``"lens"`` -> :class:`LogitLens`; a folder (a path, or a string other than ``"lens"``) ->
    :class:`TunedExits` on ``model`` (``weights``: see :meth:`TunedExits.from_pretrained`). The string ``"lens"``
    while a tuned-exit folder named ``lens`` lies in the working directory is refused as ambiguous."""
    if isinstance(family_or_path, str) and family_or_path == "lens":
        if (Path("lens") / EXITS_FILE).exists():
            raise ValueError("'lens' is ambiguous: the logit lens, or the tuned exits in the folder ./lens? Write "
                             "./lens (or the full path) for the folder")
        return LogitLens(model)
    return TunedExits.from_pretrained(family_or_path, model, weights=weights)


# ------------------------------------------------------------------------------------------------- data
def training_sequences(lm: CausalLM, prompt_sets, *, n_prompts: int, seed: int = 0, data_dir=None,
                       batch_size: int = 16, bf16: bool = False, progress: bool = True) -> list[dict]:
    """Chat prompts from train-split examples (``n_prompts`` per set, seeded) with the model's greedy answers.

    Returns dicts with ``ids`` (prompt + answer) and ``start`` (positions before it are the prompt-set's shared
    prefix, left out of training) and ``example_id``.
    """
    batch_size = check_batch(batch_size, name="batch_size")
    rng = np.random.default_rng(seed)
    out = []
    for name in prompt_sets:
        ps = get_prompt_set(name)
        frame = load_split(ps.task, "train", data_dir).frame
        rows = np.sort(rng.choice(len(frame), min(n_prompts, len(frame)), replace=False))
        frame = frame.iloc[rows].reset_index(drop=True)
        prompts = encode_prompts(lm.tokenizer, ps, frame)
        P = common_prefix_length(prompts)
        answers = _greedy_answers(lm, prompts, ps.max_new_tokens, batch_size, bf16, progress, name)
        out += [{"ids": np.concatenate([p, a]), "start": P, "example_id": e}
                for p, a, e in zip(prompts, answers, frame["example_id"])]
    return out


@torch.inference_mode()
def _greedy_answers(lm: CausalLM, prompts, max_new_tokens, batch_size, bf16, progress, desc) -> list[np.ndarray]:
    model, tok = lm.model, lm.tokenizer
    eos = model.generation_config.eos_token_id
    eos_set = set(eos if isinstance(eos, (list, tuple)) else [eos])
    pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(eos_set))
    device = next(model.parameters()).device
    order = np.argsort([len(p) for p in prompts], kind="stable")
    answers: list = [None] * len(prompts)
    for s in tqdm(range(0, len(order), batch_size), disable=not progress, desc=f"answers {desc}", file=sys.stderr):
        rows = order[s:s + batch_size]
        n = max(len(prompts[r]) for r in rows)
        ids = torch.full((len(rows), n), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, r in enumerate(rows):  # left padding for batched generation
            ids[j, n - len(prompts[r]):] = torch.as_tensor(prompts[r])
            mask[j, n - len(prompts[r]):] = 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            seq = model.generate(ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                                 do_sample=False, num_beams=1, pad_token_id=pad)[:, n:].cpu().numpy()
        for j, r in enumerate(rows):
            hit = np.flatnonzero(np.isin(seq[j], list(eos_set)))
            answers[r] = seq[j, :hit[0] + 1] if hit.size else seq[j]
    return answers


def _batches(seqs: list[dict], batch_tokens: int, order: np.ndarray):
    """Consecutive sequences (in ``order``) grouped so each batch holds about ``batch_tokens`` trained positions."""
    batch, count = [], 0
    for i in order:
        batch.append(seqs[i])
        count += len(seqs[i]["ids"]) - seqs[i]["start"]
        if count >= batch_tokens:
            yield batch
            batch, count = [], 0
    if batch:
        yield batch


def _states_and_targets(model, batch: list[dict], bf16: bool):
    """Pre-norm states ``[n, L, H]`` at the trained positions and the final layer's log-probabilities ``[n, V]``."""
    n = max(len(s["ids"]) for s in batch)
    ids = torch.zeros((len(batch), n), dtype=torch.long)
    mask = torch.zeros_like(ids)
    keep = torch.zeros_like(ids, dtype=torch.bool)
    for j, s in enumerate(batch):
        ids[j, :len(s["ids"])] = torch.as_tensor(s["ids"])
        mask[j, :len(s["ids"])] = 1
        keep[j, s["start"]:len(s["ids"])] = True
    device = next(model.parameters()).device
    keep = keep.to(device)
    with torch.no_grad(), capture_layer_states(model) as cap, \
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    return cap[-1][keep].float(), torch.log_softmax(logits[keep].float(), -1)


def _kl(target_logp: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-position KL(target || softmax(logits)) in nats."""
    lq = torch.log_softmax(logits.float(), -1)
    return (target_logp.exp() * (target_logp - lq)).sum(-1)


# ------------------------------------------------------------------------------------------------- training
@torch.no_grad()
def evaluate_exits(model, exits: ExitFn, seqs: list[dict], *, batch_tokens: int = 512) -> dict:
    """Held-out mean KL(final || exit) and top-1 agreement with the final layer, per layer 1..L-1 (float32)."""
    L = int(model.config.num_hidden_layers)
    kl, agree, n = np.zeros(L - 1), np.zeros(L - 1), 0
    for batch in _batches(seqs, batch_tokens, np.arange(len(seqs))):
        states, target = _states_and_targets(model, batch, bf16=False)
        top = target.argmax(-1)
        for layer in range(1, L):
            z = exits(layer, states[:, layer - 1])
            kl[layer - 1] += _kl(target, z).sum().item()
            agree[layer - 1] += (z.argmax(-1) == top).sum().item()
        n += len(states)
    return {"layers": list(range(1, L)), "kl": (kl / n).tolist(), "agreement": (agree / n).tolist(), "positions": n}


@torch.no_grad()
def ridge_start(model, exits: TunedExits, seqs: list[dict], *, batch_tokens: int, bf16: bool, ridge: float = 1e-2,
                progress: bool = True) -> int:
    """Set each translator to the ridge solution of ``[h_l, 1] @ M ~ h_L * rms(h_l) / rms(h_L)``; returns positions.

    The final norm discards scale, so the target is the final state rescaled to the layer's RMS. ``ridge`` is
    relative to the mean diagonal of the Gram matrix.
    """
    L, H = exits.layers, exits.translators[0].in_features
    device = exits.translators[0].weight.device
    gram = torch.zeros(L - 1, H + 1, H + 1, dtype=torch.float64, device=device)
    cross = torch.zeros(L - 1, H + 1, H, dtype=torch.float64, device=device)
    n = 0
    for batch in tqdm(list(_batches(seqs, batch_tokens, np.arange(len(seqs)))), disable=not progress,
                      desc="ridge start", file=sys.stderr):
        states, _ = _states_and_targets(model, batch, bf16)
        final = states[:, -1]
        final = final / final.pow(2).mean(-1, keepdim=True).sqrt()
        for layer in range(1, L):
            x = states[:, layer - 1]
            xa = torch.cat([x, torch.ones(len(x), 1, device=x.device)], 1).double()
            y = (final * x.pow(2).mean(-1, keepdim=True).sqrt()).double()
            gram[layer - 1] += xa.T @ xa
            cross[layer - 1] += xa.T @ y
        n += len(states)
    eye = torch.eye(H + 1, dtype=torch.float64, device=device)
    for layer in range(1, L):
        g = gram[layer - 1]
        m = torch.linalg.solve(g + ridge * g.diagonal().mean() * eye, cross[layer - 1])  # [H+1, H]
        t = exits.translators[layer - 1]
        t.weight.copy_((m[:H] - torch.eye(H, dtype=torch.float64, device=device)).T.float())  # h + A h + b, A = M - I
        t.bias.copy_(m[H].float())
    return n


def _signature(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_tuned_exits(model_name: str, out: str | os.PathLike, *, prompt_sets=("agnews_headline", "sst2_sentiment"),
                      n_prompts: int = 200, max_tokens: int = 20000, batch_tokens: int = 512, lr: float = 1e-3,
                      weight_decay: float = 0.0, init: str = "ridge", ridge_tokens: int | None = None,
                      holdout: float = 0.1, seed: int = 0, bf16: bool = True, data_dir=None,
                      checkpoint_every: int = 10, select: str = "per_layer", progress: bool = True,
                      command: str | None = None, lm: CausalLM | None = None) -> TunedExits:
    """Train tuned exits for a causal LM and save them to ``out`` (see the module docstring); resumable.

    ``select="per_layer"``: each layer keeps the KL-trained translator or its start (ridge, or zero = logit lens),
    whichever has the lower held-out KL (held-out prompts are train-split prompts; the caches evaluate on cal/test);
    ``"last"`` keeps the trained ones. ``max_tokens``: trained positions of the KL stage (steps of about
    ``batch_tokens``); ``bf16``: autocast the
    frozen forward and the exit heads (evaluation is float32). Rerunning with the same settings resumes from
    ``out/checkpoint.pt`` (or returns the finished exits); a larger ``max_tokens`` continues a finished run; other
    settings in a used folder are refused.
    """
    if init not in ("ridge", "identity"):
        raise ValueError(f"init must be 'ridge' or 'identity', got {init!r}")
    if select not in ("per_layer", "last"):
        raise ValueError(f"select must be 'per_layer' or 'last', got {select!r}")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    t0 = time.time()
    out = Path(out)
    for name in (WEIGHTS_FILE, EXITS_FILE):  # the final files: a link or read-only one refused before training
        check_writable(out / name, what="tuned exits file")
    out.mkdir(parents=True, exist_ok=True)
    lm = lm or load_causal_lm(model_name)
    model = lm.model
    data_config = {"model": model_name, "prompt_sets": list(prompt_sets), "n_prompts": n_prompts, "seed": seed,
                   "bf16": bf16}
    config = {**data_config, "batch_tokens": batch_tokens, "lr": lr, "weight_decay": weight_decay, "init": init,
              "ridge_tokens": ridge_tokens, "holdout": holdout}
    sig = _signature(config)  # neither the budget (max_tokens) nor the selection: a rerun continues or reselects
    done = out / EXITS_FILE
    if done.exists():
        info = read_exits_record(out)
        if info.get("signature") != sig:
            raise ValueError(f"{out} holds exits trained with other settings ({info.get('config')}); choose another "
                             f"--out or delete it")
        if (info.get("finished") and info["training"]["positions_trained"] >= max_tokens
                and info["training"].get("select", "last") == select):
            return TunedExits.from_pretrained(out, model)

    seq_file = out / "sequences.npz"
    data_sig = _signature(data_config)
    if seq_file.exists():
        z = np.load(seq_file, allow_pickle=False)
        if str(z["signature"]) != data_sig:
            raise ValueError(f"{seq_file} was built with other settings; delete {out} or choose another --out")
        offs = z["offsets"]
        seqs = [{"ids": z["ids"][offs[i]:offs[i + 1]], "start": int(z["start"][i]), "example_id": str(e)}
                for i, e in enumerate(z["example_ids"])]
    else:
        seqs = training_sequences(lm, prompt_sets, n_prompts=n_prompts, seed=seed, data_dir=data_dir,
                                  bf16=bf16, progress=progress)
        lengths = np.array([len(s["ids"]) for s in seqs])
        arrays = {"ids": np.concatenate([s["ids"] for s in seqs]), "offsets": np.concatenate([[0], np.cumsum(lengths)]),
                  "start": np.array([s["start"] for s in seqs]),
                  "example_ids": np.array([s["example_id"] for s in seqs]), "signature": np.array(data_sig)}
        write_atomic(seq_file, lambda f: np.savez(f, **arrays))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(seqs))
    n_held = max(1, int(round(holdout * len(seqs))))
    held, train = [seqs[i] for i in np.sort(perm[:n_held])], [seqs[i] for i in np.sort(perm[n_held:])]

    exits = TunedExits(model)
    opt = torch.optim.AdamW(exits.parameters(), lr=lr, weight_decay=weight_decay)
    ckpt = out / CHECKPOINT_FILE
    torch.manual_seed(seed)
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False, map_location=next(model.parameters()).device)
        if state["signature"] != sig:
            raise ValueError(f"{ckpt} belongs to other settings; delete {out} or choose another --out")
        exits.load_state_dict(state["exits"])
        opt.load_state_dict(state["optimizer"])
        record = state["record"]
        print(f"resuming at step {record['steps']} ({record['tokens']} positions trained)", file=sys.stderr)
    else:
        record = {"steps": 0, "tokens": 0, "epoch": 0, "batch_in_epoch": 0, "loss": [], "train_wall_s": 0.0,
                  "eval_lens": evaluate_exits(model, LogitLens(model), held)}
        if init == "ridge":
            ridge_seqs = train if ridge_tokens is None else _take_tokens(train, ridge_tokens)
            record["ridge_positions"] = ridge_start(model, exits, ridge_seqs, batch_tokens=batch_tokens, bf16=bf16,
                                                    progress=progress)
        record["eval_start"] = evaluate_exits(model, exits, held)
        record["train_wall_s"] = time.time() - t0
        _save_state(out / START_FILE, exits)
        _save_checkpoint(ckpt, exits, opt, record, sig)

    t_resume = time.time() - record["train_wall_s"]
    bar = tqdm(total=max_tokens, initial=min(record["tokens"], max_tokens), disable=not progress, unit="tok",
               desc="tuned exits (KL)", file=sys.stderr)
    while record["tokens"] < max_tokens:
        order = np.random.default_rng(seed + 1 + record["epoch"]).permutation(len(train))
        batches = list(_batches(train, batch_tokens, order))
        for b in batches[record["batch_in_epoch"]:]:
            states, target = _states_and_targets(model, b, bf16)
            total = 0.0
            for layer in range(1, exits.layers):  # one backward per layer keeps one [n, V] graph alive at a time
                with torch.autocast(states.device.type, dtype=torch.bfloat16, enabled=bf16):
                    z = exits(layer, states[:, layer - 1])
                loss = _kl(target, z).mean()
                loss.backward()
                total += loss.item()
            opt.step()
            opt.zero_grad(set_to_none=True)
            record["steps"] += 1
            record["batch_in_epoch"] += 1
            record["tokens"] += len(states)
            record["loss"].append(total / (exits.layers - 1))
            bar.update(len(states))
            bar.set_postfix(kl=f"{record['loss'][-1]:.3f}")
            if record["steps"] % checkpoint_every == 0 or record["tokens"] >= max_tokens:
                record["train_wall_s"] = time.time() - t_resume
                _save_checkpoint(ckpt, exits, opt, record, sig)
            if record["tokens"] >= max_tokens:
                break
        else:
            record["epoch"] += 1
            record["batch_in_epoch"] = 0
    bar.close()
    record["eval_end"] = evaluate_exits(model, exits, held)
    selected = None
    if select == "per_layer":
        start = _start_exits(model, out, init, train, ridge_tokens, batch_tokens, bf16, progress)
        selected = _select_per_layer(exits, start, record["eval_start"], record["eval_end"])
    record["train_wall_s"] = time.time() - t_resume
    exits.info = {"model": lm.info(), "config": {**config, "max_tokens": max_tokens, "select": select}, "signature": sig,
                  "finished": True,
                  "training": {"positions_trained": record["tokens"], "steps": record["steps"],
                               "ridge_positions": record.get("ridge_positions"), "wall_s": record["train_wall_s"],
                               "train_sequences": len(train), "heldout_sequences": len(held),
                               "train_example_ids": sorted({s["example_id"] for s in train}),
                               "loss_curve": record["loss"], "select": select, "selected": selected},
                  "heldout": {"lens": record["eval_lens"], "start": record["eval_start"], "end": record["eval_end"],
                              "selected": _selected_eval(record["eval_start"], record["eval_end"], selected)},
                  "data": {"split": "train", "prompt_sets": list(prompt_sets)},
                  "command": command or " ".join(sys.argv), "versions": package_versions()}
    exits.save_pretrained(out)
    return exits.eval().requires_grad_(False)


def _save_state(path: Path, exits: TunedExits) -> None:
    from safetensors.torch import save

    write_atomic(path, save({k: v.detach().cpu().contiguous() for k, v in exits.state_dict().items()}))


def _start_exits(model, out: Path, init, train, ridge_tokens, batch_tokens, bf16, progress) -> TunedExits:
    """The translators the KL stage started from: saved in ``start.safetensors``, or rebuilt (the ridge start is
    deterministic: same data, same batches) for runs checkpointed before that file existed."""
    from safetensors.torch import load_file

    start = TunedExits(model)
    if (out / START_FILE).exists():
        start.load_state_dict(load_file(str(out / START_FILE)))
    elif init == "ridge":
        ridge_seqs = train if ridge_tokens is None else _take_tokens(train, ridge_tokens)
        ridge_start(model, start, ridge_seqs, batch_tokens=batch_tokens, bf16=bf16, progress=progress)
        _save_state(out / START_FILE, start)
    return start


@torch.no_grad()
def _select_per_layer(exits: TunedExits, start: TunedExits, eval_start: dict, eval_end: dict) -> list[str]:
    """Per layer, keep the trained translator or the start's, whichever had the lower held-out KL."""
    chosen = []
    for i, (ks, ke) in enumerate(zip(eval_start["kl"], eval_end["kl"])):
        if ks < ke:
            exits.translators[i].load_state_dict(start.translators[i].state_dict())
        chosen.append("start" if ks < ke else "trained")
    return chosen


def _selected_eval(eval_start: dict, eval_end: dict, selected) -> dict | None:
    if selected is None:
        return None
    pick = [s == "start" for s in selected]
    return {"layers": eval_end["layers"], "positions": eval_end["positions"],
            **{k: [a if p else b for a, b, p in zip(eval_start[k], eval_end[k], pick)] for k in ("kl", "agreement")}}


def _take_tokens(seqs: list[dict], n: int) -> list[dict]:
    out, count = [], 0
    for s in seqs:
        if count >= n:
            break
        out.append(s)
        count += len(s["ids"]) - s["start"]
    return out


def _save_checkpoint(path: Path, exits: TunedExits, opt, record: dict, sig: str) -> None:
    state = {"exits": exits.state_dict(), "optimizer": opt.state_dict(), "record": record, "signature": sig}
    write_atomic(path, lambda f: torch.save(state, f))
