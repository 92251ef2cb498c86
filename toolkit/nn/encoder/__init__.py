"""Torch side, encoders: multi-exit models, losses, training, collection, the real early-exit and cascade runtime,
pruning, probes and difficulty labels.
"""
