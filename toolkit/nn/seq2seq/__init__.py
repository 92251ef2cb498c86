"""Torch side, encoder-decoders: models, training, and generation with per-step statistics.
"""
