"""Decoder-only (causal) LMs for exit studies: loading, chat prompts, and every layer's hidden state.

Layer ``l`` (1-based) means the residual stream after decoder layer ``l``, before the final norm (for the last layer
too: Hugging Face's ``hidden_states[-1]`` is already normed, so states are taken with forward hooks on the decoder
layers instead). An exit maps such a state to next-token logits (:mod:`toolkit.nn.causal.exits`).

Prompts of one :class:`~toolkit.data.prompts.PromptSet` share their chat prefix (system prompt and instruction);
:func:`last_prompt_states` computes it once and runs only each example's remainder, right-padded, on a copy of the
prefix's KV cache.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from toolkit._api import check_batch
from toolkit.analysis.cost.causal import CausalLMDims
from toolkit.data.prompts import PromptSet
from toolkit.nn.encoder.models import model_origin, resolve_model


@dataclass
class CausalLM:
    """A causal LM with its tokenizer and what caches record about it."""

    model: PreTrainedModel
    tokenizer: object
    path: str  # what was asked for (name, folder or hub id)
    folder: str  # where the weights were loaded from
    origin: str  # e.g. "SmolLM2-135M-Instruct.Q4_1: Q4_1/Q8_0 GGUF weights ... dequantized to float32"

    @property
    def dims(self) -> CausalLMDims:
        return CausalLMDims.from_config(self.model.config.to_dict())

    @property
    def n_layers(self) -> int:
        return self.dims.layers

    def info(self) -> dict:
        """The header entry of caches and exits: path, origin and the cost model's dims."""
        from dataclasses import asdict

        return {"path": self.path, "folder": self.folder, "origin": self.origin, "dims": asdict(self.dims),
                "parameters": int(sum(p.numel() for p in self.model.parameters()))}


def load_causal_lm(name_or_path: str | os.PathLike, *, dtype=torch.float32, device=None) -> CausalLM:
    """Resolve (:func:`~toolkit.nn.encoder.models.resolve_model`), load in eval mode with frozen weights, eager attention."""
    folder = resolve_model(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="eager").eval()
    model.requires_grad_(False)
    if device is not None:
        model.to(device)
    tok = AutoTokenizer.from_pretrained(folder)
    return CausalLM(model, tok, str(name_or_path), str(folder), model_origin(folder))


def final_norm(model: PreTrainedModel) -> torch.nn.Module:
    """The norm applied before the LM head (Llama/Qwen/Mistral ``model.norm``, GPT-2 ``transformer.ln_f``)."""
    base = model.base_model
    for name in ("norm", "ln_f", "final_layer_norm"):
        if isinstance(getattr(base, name, None), torch.nn.Module):
            return getattr(base, name)
    raise ValueError(f"{type(model).__name__}: no final norm found (looked for norm, ln_f, final_layer_norm)")


def decoder_layers(model: PreTrainedModel) -> torch.nn.ModuleList:
    base = model.base_model
    for name in ("layers", "h"):
        if isinstance(getattr(base, name, None), torch.nn.ModuleList):
            return getattr(base, name)
    raise ValueError(f"{type(model).__name__}: no list of decoder layers found (looked for layers, h)")


@contextlib.contextmanager
def capture_layer_states(model: PreTrainedModel):
    """Within the block, every forward appends ``[batch, seq, L, H]`` (each decoder layer's output) to the list."""
    layers = decoder_layers(model)
    current: list = [None] * len(layers)
    captured: list[torch.Tensor] = []

    def hook(i):
        def fn(module, args, output):
            current[i] = output[0] if isinstance(output, tuple) else output
            if i == len(layers) - 1:
                captured.append(torch.stack(current, dim=2))
        return fn

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


# ------------------------------------------------------------------------------------------------- prompts
def encode_prompts(tokenizer, prompt_set: PromptSet, frame) -> list[np.ndarray]:
    """Chat-templated prompt ids (generation prompt appended) of every row of a split's frame."""
    b = frame["text_b"] if "text_b" in frame else [None] * len(frame)
    out = []
    for a, bb in zip(frame["text_a"], b):
        msgs = [{"role": "user", "content": prompt_set.user_message(a, None if bb is None or bb != bb else bb)}]
        ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)
        out.append(np.asarray(ids["input_ids"], dtype=np.int64))
    return out


def common_prefix_length(seqs: list[np.ndarray]) -> int:
    """Length of the token prefix every sequence shares (at most the shortest length minus one)."""
    n = min(len(s) for s in seqs) - 1
    first = seqs[0][:n]
    for s in seqs[1:]:
        diff = np.flatnonzero(s[:n] != first)
        if diff.size:
            n = int(diff[0])
            first = first[:n]
    return max(n, 0)


def _cache_kwarg(model) -> str:
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(output):
    return getattr(output, "cache", None) if getattr(output, "cache", None) is not None else output.past_key_values


@torch.inference_mode()
def last_prompt_states(model: PreTrainedModel, prompts: list[np.ndarray], *, batch_size: int = 16,
                       progress: bool = False, device=None) -> np.ndarray:
    """Every layer's state at each prompt's last position, ``[N, L, H]`` float32 (layers 1..L, pre-norm).

    The shared prefix runs once; each batch runs the prompts' remainders right-padded on a copy of its KV cache
    (right padding leaves earlier positions' states exact; the last real position of each row is read).
    """
    batch_size = check_batch(batch_size, name="batch_size")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    P = common_prefix_length(prompts)
    prefix = torch.as_tensor(prompts[0][:P], device=device)[None]
    kw = _cache_kwarg(model)
    with capture_layer_states(model):
        prefix_cache = _cache_of(model(input_ids=prefix, use_cache=True, logits_to_keep=1)) if P else None
    order = np.argsort([len(p) for p in prompts], kind="stable")
    out = None
    for s in tqdm(range(0, len(order), batch_size), disable=not progress, desc="prompt states", leave=False):
        rows = order[s:s + batch_size]
        rest = [prompts[r][P:] for r in rows]
        n = np.array([len(r) for r in rest])
        ids = torch.zeros((len(rows), int(n.max())), dtype=torch.long, device=device)
        mask = torch.zeros((len(rows), P + int(n.max())), dtype=torch.long, device=device)
        mask[:, :P] = 1
        for j, r in enumerate(rest):
            ids[j, :len(r)] = torch.as_tensor(r, device=device)
            mask[j, P:P + len(r)] = 1
        extra = {}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(rows))
            extra[kw] = cache
        with capture_layer_states(model) as cap:
            model(input_ids=ids, attention_mask=mask, use_cache=prefix_cache is not None, logits_to_keep=1,
                  **extra)
        states = cap[-1][torch.arange(len(rows)), torch.as_tensor(n - 1)].float().cpu().numpy()
        if out is None:
            out = np.empty((len(prompts), *states.shape[1:]), dtype=np.float32)
        out[rows] = states
    return out


@dataclass
class Trajectory:
    """One prompt's greedy continuation with every layer's state at each generated position."""

    tokens: np.ndarray  # [T] int64, end-of-sequence included when reached
    states: np.ndarray  # [T, L, H] float32: position t's states (the input is the previous token) predict token t
    final_logits: np.ndarray  # [T, V] float32 raw logits the greedy choice was made from (only if requested)


@torch.inference_mode()
def greedy_trajectory(model: PreTrainedModel, prompt: np.ndarray, max_new_tokens: int, *, eos_token_ids=None,
                      keep_logits: bool = True) -> Trajectory:
    """Greedy decoding of one prompt with ``generate`` (batch 1, no padding, KV cache), recording every layer's
    state at each position that predicts a generated token (the prompt's last position, then each new token)."""
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    ids = torch.as_tensor(prompt, device=device)[None]
    eos = eos_token_ids if eos_token_ids is not None else model.generation_config.eos_token_id
    # a clean config: plain argmax of the raw logits (no repetition penalty or other processors of the checkpoint)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, eos_token_id=eos,
                              pad_token_id=_pad_id(model, eos), return_dict_in_generate=True,
                              output_logits=keep_logits)
    with capture_layer_states(model) as cap:
        out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
    tokens = out.sequences[0, ids.shape[1]:].cpu().numpy()
    eos_set = set(eos if isinstance(eos, (list, tuple)) else [eos])
    hit = np.flatnonzero(np.isin(tokens, list(eos_set)))
    T = int(hit[0]) + 1 if hit.size else len(tokens)
    states = torch.cat([c[:, -1] for c in cap], 0)[:T].float().cpu().numpy()
    logits = torch.cat(out.logits, 0)[:T].float().cpu().numpy() if keep_logits else np.zeros((T, 0), np.float32)
    if len(states) != T:
        raise RuntimeError(f"captured {len(states)} decoding steps for {T} generated tokens")
    if keep_logits and not (logits.argmax(-1) == tokens[:T]).all():
        raise RuntimeError("greedy tokens differ from the argmax of the raw logits; a logits processor interfered")
    return Trajectory(tokens[:T].astype(np.int64), states, logits)


def _pad_id(model, eos) -> int:
    pad = model.generation_config.pad_token_id
    if pad is None:
        pad = eos[0] if isinstance(eos, (list, tuple)) else eos
    return int(pad)
