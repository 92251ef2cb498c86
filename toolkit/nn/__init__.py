"""The torch side: model families, losses, training, inference helpers, collection of every cache kind, the runtime
(real early exit, cascades), pruning and probes. Needs the ``nn`` extra: ``pip install "toolkit[nn]"``.

Modules are imported on use (``from toolkit.nn.collect import collect``); importing this package loads nothing.
"""
