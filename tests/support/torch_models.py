"""Tiny torch models and model folders from configs (random, seeded weights; no download).

torch and transformers are imported inside the functions, so a test module that skips without torch can import
this module first.
"""

from __future__ import annotations

from conftest import tiny_config

V = 97  # vocabulary of :func:`tiny_llama`
M = 18  # new tokens the decoding tests generate per prompt


def tiny_llama(layers=6, damp_from=3, seed=0, dtype=None, attn="sdpa"):
    """A random Llama (float64 unless ``dtype`` says otherwise); layers from ``damp_from`` on are damped so that
    shallow exits often agree with the last; queries and keys are scaled up so that attention is sharp and depends
    on positions (at the default init it is almost uniform, and a wrong position would go unnoticed)."""
    import torch
    import transformers

    dtype = torch.float64 if dtype is None else dtype
    cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                   bos_token_id=None, eos_token_id=None, pad_token_id=None,
                                   attn_implementation=attn)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(cfg).to(dtype).eval()
    with torch.no_grad():
        for lay in model.model.layers:
            lay.self_attn.q_proj.weight.mul_(8.0)
            lay.self_attn.k_proj.weight.mul_(8.0)
        for lay in model.model.layers[damp_from:]:
            lay.self_attn.o_proj.weight.mul_(0.2)
            lay.mlp.down_proj.weight.mul_(0.2)
    return model


def prompts_of(lengths, seed=1):
    """Random prompts (token id lists over :data:`V`) of the given lengths."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, V, (n,), generator=g).tolist() for n in lengths]


def multi_exit_model_dir(tmp_path_factory, tokenizer_dir, arch, layers, exit_layers=None, seed=0, scale=40.0):
    """A saved tiny multi-exit encoder (``arch`` of :func:`conftest.tiny_config`, ``layers`` layers) with the toy
    tokenizer; its exit heads are scaled by ``scale`` so that confidences vary across exits."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from toolkit.nn.encoder.models import MultiExitModel

    torch.manual_seed(seed)
    enc = tmp_path_factory.mktemp(f"{arch}-enc")
    AutoModel.from_config(tiny_config(arch, layers)).save_pretrained(enc)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(enc)
    m = MultiExitModel.from_backbone(enc, num_labels=2, exit_layers=exit_layers, seed=seed)
    with torch.no_grad():  # spread the heads so that confidences vary across exits
        for h in m.heads:
            h.weight.mul_(scale)
    d = tmp_path_factory.mktemp(f"{arch}-me")
    m.save_pretrained(d)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(d)
    return d
