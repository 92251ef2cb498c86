"""The tests are hermetic: without a data folder and with the hub offline (as the tests run, HF_HUB_OFFLINE=1), a
split is a clear FileNotFoundError naming the fix, never a hub request; tests that need the real data skip."""

from __future__ import annotations

import pytest

from toolkit.data import tasks as data
from toolkit.data import text2text


@pytest.fixture
def no_data_folder(monkeypatch):
    """No TOOLKIT_DATA_DIR and no ../shared/data to be found, and a hub that must not be called."""
    monkeypatch.delenv("TOOLKIT_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "default_data_dir", lambda: None)
    monkeypatch.setattr(text2text, "default_data_dir", lambda: None)

    def hub(*a, **k):
        raise AssertionError("the hub was called")

    monkeypatch.setattr(data, "_load_hub", hub)


def test_the_tests_run_with_the_hub_offline():
    assert data.hub_offline(), "tests/conftest.py sets HF_HUB_OFFLINE=1 so that no test reaches the hub"


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_no_data_folder_with_the_hub_offline_is_a_clear_error(no_data_folder, monkeypatch, var):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv(var, "1")
    with pytest.raises(FileNotFoundError, match="no data folder and the hub is offline") as e:
        data.load_split("sst2", "test")
    assert isinstance(e.value, data.DataError) and "TOOLKIT_DATA_DIR" in str(e.value)
    with pytest.raises(data.DataNotFound):
        text2text.load_seq2seq_split("sst2", "cal")
    with pytest.raises(data.DataNotFound, match="no data folder"):
        text2text.load_seq2seq_split("wmt21_en_de", "test")


def test_the_hub_is_still_the_fallback_when_online(no_data_folder, monkeypatch):
    """Online, a missing data folder still means the hub (the users' ordinary path): here the guard says so."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "0")
    assert not data.hub_offline()
    with pytest.raises(AssertionError, match="the hub was called"):
        data.load_split("sst2", "test")


def test_a_data_folder_that_is_not_there(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLKIT_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="file not found"):
        data.load_split("sst2", "test")
    with pytest.raises(FileNotFoundError, match="missing"):
        text2text.load_seq2seq_split("wmt21_en_de", "test")
