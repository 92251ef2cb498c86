"""Torch side, shared by every family: model-family adapters, batched inference, resumable collection parts, and
latency profiling.
"""
