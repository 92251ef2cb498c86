"""Torch side, causal LMs: models, exits (logit lens, tuned lens), collection, real early-exit decoding, and the
offline reference.
"""
