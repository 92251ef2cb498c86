"""The causal-LM cost model against torch's FLOP counter on tiny models built from configs."""

import numpy as np
import pytest

from toolkit.analysis.cost.causal import (
    CausalLMDims,
    calm_token_flops,
    full_token_flops,
    head_flops,
    kv_projection_flops,
    layer_flops,
    prefill_flops,
    self_speculative_block_flops,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def tiny_llama(layers=3, heads=4, kv_heads=2, tied=True):
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=layers,
                                   num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=101,
                                   max_position_embeddings=64, tie_word_embeddings=tied)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval(), cfg


def counted(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


@pytest.mark.parametrize("kv_heads,tied", [(2, True), (4, False), (1, True)])
def test_decode_step_equals_flop_counter(kv_heads, tied):
    model, cfg = tiny_llama(kv_heads=kv_heads, tied=tied)
    model.config._attn_implementation = "eager"
    dims = CausalLMDims.from_config(cfg.to_dict())
    assert dims.kv_heads == kv_heads and dims.tied_embeddings == tied
    ids = torch.randint(0, 101, (1, 7))
    with torch.inference_mode():
        out = model(ids, use_cache=True)
        nxt = torch.randint(0, 101, (1, 1))
        got = counted(lambda: model(nxt, past_key_values=out.past_key_values, use_cache=True))
    assert got == full_token_flops(8, dims)  # the new token attends to 7 cached positions and itself


def test_prefill_equals_flop_counter():
    model, cfg = tiny_llama()
    model.config._attn_implementation = "eager"
    dims = CausalLMDims.from_config(cfg.to_dict())
    ids = torch.randint(0, 101, (1, 9))
    with torch.inference_mode():
        # logits_to_keep=1: the LM head at the last prompt position only, as a generate() prefill does
        got = counted(lambda: model(ids, use_cache=True, logits_to_keep=1))
    # eager attention scores every query against all 9 keys (the causal mask is added afterwards), so the counter
    # sees 9 attended positions per token where the cost model counts the causal i; the difference is exactly that
    causal_gap = dims.layers * 4 * dims.q_dim * (9 * 9 - 9 * 10 / 2)
    assert got == prefill_flops(9, dims) + causal_gap


def test_gpt2_plain_mlp_equals_flop_counter():
    cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=97, n_positions=64)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    model.config._attn_implementation = "eager"
    dims = CausalLMDims.from_config(cfg.to_dict())
    assert not dims.gated_mlp and dims.intermediate == 128
    with torch.inference_mode():
        out = model(torch.randint(0, 97, (1, 5)), use_cache=True)
        got = counted(lambda: model(torch.randint(0, 97, (1, 1)), past_key_values=out.past_key_values,
                                    use_cache=True))
    assert got == full_token_flops(6, dims)


def test_partial_layers_and_kv_propagation_by_hand():
    d = CausalLMDims(layers=4, hidden=8, heads=2, kv_heads=1, head_dim=4, intermediate=16, vocab=10)
    # one layer at context 3: 2*8*(8+2*4) + 2*8*8 + 4*8*3 + 6*8*16
    assert layer_flops(3, d) == 256 + 128 + 96 + 768
    # exit after layer 2 with exits checked at 1, 2, 3: two heads evaluated, two skipped layers propagated
    assert calm_token_flops(3, 2, d, checked_layers=[1, 2, 3]) == 2 * 1248 + 2 * 160 + 2 * 128
    assert calm_token_flops(3, 2, d, checked_layers=[1, 2, 3], propagate=False) == 2 * 1248 + 2 * 160
    # reaching the last layer: its own head counts once even when not listed as checked
    assert calm_token_flops(3, 4, d, checked_layers=[2]) == full_token_flops(3, d) + head_flops(d)
    assert kv_projection_flops(d) == 4 * 8 * 4


def test_self_speculative_block_by_hand():
    d = CausalLMDims(layers=4, hidden=8, heads=2, kv_heads=1, head_dim=4, intermediate=16, vocab=10)
    ctx, k, n = 5, 1, 2
    per = [float(layer_flops(ctx + j, d)) for j in (1, 2, 3)]
    draft = k * (per[0] + per[1]) + n * head_flops(d)
    verify = k * per[2] + (4 - k) * sum(per) + 3 * head_flops(d)
    assert self_speculative_block_flops(ctx, k, n, d) == draft + verify
    np.testing.assert_allclose(self_speculative_block_flops(np.array([5, 6]), k, n, d)[0], draft + verify)


def test_bad_dims_and_configs_are_refused():
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        CausalLMDims(layers=2, hidden=8, heads=3, kv_heads=2, head_dim=4, intermediate=8, vocab=5)
    with pytest.raises(ValueError, match="positive integer"):
        CausalLMDims(layers=0, hidden=8, heads=2, kv_heads=2, head_dim=4, intermediate=8, vocab=5)
    with pytest.raises(ValueError, match="not a decoder-only LM config"):
        CausalLMDims.from_config({"model_type": "bert", "hidden_size": 8})
    d = CausalLMDims(layers=2, hidden=8, heads=2, kv_heads=2, head_dim=4, intermediate=8, vocab=5)
    with pytest.raises(ValueError, match="exit_layer"):
        calm_token_flops(1, 3, d, checked_layers=[1])
    with pytest.raises(ValueError, match="draft_layer"):
        self_speculative_block_flops(1, 2, 1, d)
