"""The shipped SmolLM2 token caches as notebook 10 reads them: each (prompt set, split) cache, the AG News + SST-2
``cal`` and ``test`` concatenations (thresholds move from one to the other), QNLI's test cache (a transfer: no cal),
their prompt resamples and a table of what each cache holds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.analysis.llm.intervals import prompt_weights
from toolkit.caches.tokens import LLMTokenCache, concat_token_caches, load_llm_cache
from toolkit.zoo import catalogue

SETS = ("agnews_headline", "sst2_sentiment")  # prompt sets with a cal and a test cache
TRANSFER = "qnli_answer"  # test only


@dataclass(frozen=True, eq=False)
class SmolLM2Caches:
    """``parts[(prompt_set, split)]``: each cache of :data:`SETS`; ``cal``/``test``: their concatenations (task
    ``"agnews+sst2"``); ``qnli``: the transfer set's test cache."""

    parts: Mapping
    cal: LLMTokenCache
    test: LLMTokenCache
    qnli: LLMTokenCache

    def weights(self, *, n_boot: int, seed: int) -> dict[str, np.ndarray]:
        """Prompt resamples ``{"cal", "test", "qnli"}`` (:func:`~toolkit.analysis.llm.intervals.prompt_weights`,
        row 0 the data), each drawn with ``seed``."""
        return {k: prompt_weights(c.n_examples, n_boot=n_boot, seed=seed)
                for k, c in (("cal", self.cal), ("test", self.test), ("qnli", self.qnli))}

    def table(self) -> pd.DataFrame:
        """One row per cache: prompt set, split, prompts, generated tokens, max new tokens, share ended with EOS,
        and the full model's answer quality (the header's ``quality``)."""
        return pd.DataFrame([{"prompt set": c.meta["prompt_set"], "split": c.meta["split"], "prompts": c.n_examples,
                              "tokens": c.n_tokens, "max new tokens": c.meta["decoding"]["max_new_tokens"],
                              "ended with EOS": c.meta["decoding"]["ended_with_eos"], **dict(c.meta["quality"])}
                             for c in [*self.parts.values(), self.qnli]])


def smollm2_token_caches(data: str | Path | None = None) -> SmolLM2Caches:
    """Load the SmolLM2 token caches from ``data`` (default ``<data dir>/llm``, :func:`catalogue.data_dir`)."""
    folder = Path(data) if data is not None else catalogue.data_dir() / "llm"
    read = lambda p, s: load_llm_cache(folder / f"smollm2_{p}-{s}.parquet")  # noqa: E731
    parts = {(p, s): read(p, s) for p in SETS for s in catalogue.SPLITS}
    return SmolLM2Caches(parts, concat_token_caches([parts[p, "cal"] for p in SETS]),
                         concat_token_caches([parts[p, "test"] for p in SETS]), read(TRANSFER, "test"))
