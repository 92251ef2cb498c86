"""The LLM fidelity benchmarks share one command line (benchmarks/llm_setup.fidelity_parser): the same options,
defaults and checks in both, refused before any model loads. Runs no benchmark."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = ("llm_cache_fidelity", "llm_calm_fidelity")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # puts benchmarks/ on sys.path, as when run
    return mod


def _options(help_text: str) -> str:
    """The options part of a ``--help`` text (after its usage and description)."""
    return help_text.split("\noptions:\n", 1)[1]


@pytest.mark.parametrize("name", SCRIPTS)
def test_fidelity_benchmarks_take_the_shared_options(name, capsys):
    mod = _script(name)
    from llm_setup import REPO, fidelity_parser

    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    shared = _options(fidelity_parser("").format_help())
    assert "--batch-size" in shared and "--tuned" in shared and shared in _options(capsys.readouterr().out)
    a = fidelity_parser("").parse_args([])
    assert (a.batch_size, a.threads, a.tuned) == (8, 1, str(REPO / "runs" / "llm" / "smollm2_tuned"))


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.parametrize("argv", [["--batch-size", "0"], ["--threads", "-1"], ["--batch-size", "two"]])
def test_fidelity_benchmarks_refuse_bad_counts_before_loading_a_model(name, argv, capsys, monkeypatch):
    mod = _script(name)
    monkeypatch.setattr(mod, "smollm2_with_exits", lambda *a: pytest.fail("loaded a model"))
    with pytest.raises(SystemExit) as e:
        mod.main(argv)
    assert e.value.code == 2 and f"argument {argv[0]}" in capsys.readouterr().err
