"""``--batch`` and ``--profile-model`` of ``toolkit sweep`` and ``toolkit plot`` only mean something with
``--profile`` (they price a latency profile's model at the runtime's batches). Without it they were silently
ignored (the output in FLOPs, as if they had not been given); now the parser refuses them (exit 2, the command's
usage), before any file is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.cli import build_parser, main

PROFILE = Path(__file__).resolve().parents[1] / "benchmarks" / "latency_profile_cpu.json"


@pytest.mark.parametrize("command", [["sweep", "x.parquet"], ["plot", "x.parquet", "--out", "f.png"]],
                         ids=["sweep", "plot"])
@pytest.mark.parametrize("flags,needle", [
    (["--batch", "8"], "--batch prices the runtime's batches in predicted time and needs --profile PROFILE.json"),
    (["--batch", "1"], "--batch prices the runtime's batches"),  # given, so refused, even at its default value
    (["--profile-model", "m"], "--profile-model names the profile's models and needs --profile PROFILE.json"),
])
def test_profile_flags_without_a_profile_are_usage_errors(command, flags, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command, *flags])
    err = capsys.readouterr().err
    assert e.value.code == 2 and needle in err and f"usage: toolkit {command[0]}" in err
    assert "toolkit profile" in err  # how to make a profile


@pytest.mark.parametrize("argv,batch", [(["--profile", str(PROFILE)], 1), (["--profile", str(PROFILE), "--batch",
                                                                            "8"], 8), ([], None)])
def test_batch_defaults_to_one_with_a_profile(argv, batch):
    for command in (["sweep", "x.parquet"], ["plot", "x.parquet", "--out", "f.png"]):
        a = build_parser().parse_args([*command, *argv])
        assert a.batch == batch


@pytest.mark.parametrize("command", [["sweep", "x.parquet"], ["plot", "x.parquet", "--out", "f.png"]],
                         ids=["sweep", "plot"])
@pytest.mark.parametrize("flags", [[], ["--batch", "8"], ["--profile-model", "m"]], ids=["alone", "batch", "model"])
def test_an_empty_profile_path_is_a_usage_error(command, flags, capsys):
    """``--profile ''`` passed the check as a profile (not None), then sweep/plot skipped it as no profile (an empty
    string is false): ``--batch 8`` or ``--profile-model`` with it were silently ignored, the output in FLOPs."""
    with pytest.raises(SystemExit) as e:
        main([*command, "--profile", "", *flags])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--profile: an empty path" in err and f"usage: toolkit {command[0]}" in err
