"""The cache boundary: the three cache kinds, their files, fingerprints and identity, composition and upgrades.

Classification caches (:mod:`.classification`), Swift/Super generation caches (:mod:`.generation`) and per-token
LLM exit caches (:mod:`.tokens`) share one file format (:mod:`.io`) and one registry of kinds (:mod:`.kinds`).
:mod:`.identity` says when two caches are about the same task, examples, classes and models; :mod:`.compose`
builds cascades from caches; :mod:`.inputs` turns probabilities or log-probabilities into caches; :mod:`.upgrade`
rewrites old files. Numpy and pyarrow only: never torch.
"""
