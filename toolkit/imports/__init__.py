"""Bring existing runs in: other tools' logs and records to classification caches, with no new inference.

- :func:`import_lm_eval` (:mod:`.lmeval`): lm-evaluation-harness ``--log_samples`` files, one cascade stage per run;
- :func:`import_chat_logprobs` (:mod:`.logprobs`): OpenAI-style chat-completion records with ``top_logprobs``
  (also vLLM's), label words to classes.

torch-free (the analysis side); tokens are counted with the ``tokenizers`` package when a tokenizer is at hand.
"""

from toolkit.imports.lmeval import LMEvalRun, import_lm_eval, read_lm_eval
from toolkit.imports.logprobs import import_chat_logprobs, read_chat_logprobs
from toolkit.imports.records import RecordError

__all__ = ["LMEvalRun", "RecordError", "import_chat_logprobs", "import_lm_eval", "read_chat_logprobs", "read_lm_eval"]
