"""The torch side, by model kind: :mod:`.common` (families, batched inference, resumable collection, profiling),
:mod:`.encoder` (multi-exit models, training, collection, the real early-exit and cascade runtime, pruning, probes),
:mod:`.seq2seq` (models, training, generation) and :mod:`.causal` (causal LMs, exits, collection, real decoding).
Needs the ``nn`` extra: ``pip install -e ".[nn]"`` in the checkout (the distribution is
``adaptive-inference-toolkit``).

Modules are imported on use (``from toolkit.nn.encoder.collect import collect``); importing this package loads nothing.
"""
