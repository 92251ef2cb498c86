"""Hostile-input and wrong-answer checks of the zoo's lineage records and run-folder clean-up (review of issue 29's
lineage, catalogue and temporaries code)."""

from __future__ import annotations

import pytest

from toolkit.zoo import lineage

GPU = "NVIDIA H100 80GB HBM3"  # what train_meta.json records as a GPU run's device (torch.cuda.get_device_name)


@pytest.mark.parametrize("command", ["scripts/gpu_zoo.py OUT --deadline 500", "scripts/gpu_zoo.py OUT --device cuda"])
def test_infer_build_of_a_gpu_runner_entry_is_v2(command):
    # train_meta.json's device is the GPU's name, never "cuda": a runner that found a GPU ran the v2 profile
    models = [{"name": "minilm-l2", "device": GPU}, {"name": "mpnet", "device": GPU}]
    assert lineage.infer_build("sst2/cascade-s42-test", {"command": command, "models": models}) == "v2"


def test_infer_build_of_a_runner_entry_without_device_or_profile_is_refused():
    with pytest.raises(ValueError, match=r"sst2/cascade-s42-test: .*record its build by hand"):
        lineage.infer_build("sst2/cascade-s42-test", {"command": "scripts/gpu_zoo.py OUT", "models": [{}]})
