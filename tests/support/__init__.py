"""Helpers the tests share that are not tests (imported explicitly, e.g. ``from support.torch_models import
tiny_llama``): tiny torch models and model folders built from configs, and lm-eval log writers. Random caches of
every kind live in :mod:`toolkit.testing`, which users can import too; no test module imports another."""
