"""Last-prompt-position states of SmolLM2 for the LLM classifier caches (background job; resumable)."""
import sys

from toolkit.nn.causal_lm import load_causal_lm
from toolkit.nn.llm_collect import prompt_states

JOBS = [("sst2_label", "test", None), ("sst2_label", "cal", 300), ("sst2_label", "train", 500),
        ("agnews_topic", "test", 600), ("agnews_topic", "cal", 300), ("agnews_topic", "train", 500)]

if __name__ == "__main__":
    lm = load_causal_lm("SmolLM2-135M-Instruct")
    for ps, split, limit in JOBS:
        out = f"runs/llm/states/{ps}-{split}.npz"
        st = prompt_states(lm, ps, split, out, limit=limit)
        print(ps, split, st["states"].shape, file=sys.stderr, flush=True)
