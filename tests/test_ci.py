"""CI runs exactly what the README tells a new user to run, in a fresh virtual environment."""

import re

from conftest import REPO


def _readme_commands() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"\*\*(Main job|All tests)\*\*.*?```bash\n(.*?)\n```", text, flags=re.S)
    return dict(blocks)


def test_ci_runs_the_readme_test_command_in_a_fresh_environment():
    commands = _readme_commands()
    assert set(commands) == {"Main job", "All tests"}
    ci = (REPO / ".ci" / "run").read_text()
    lines = [ln for ln in ci.splitlines() if ln.startswith("pip install")]
    assert lines == [commands["All tests"]], "the README's test command and .ci/run differ"
    assert "python3 -m venv" in ci and "--system-site-packages" not in ci
    assert '"$rc" -eq 5' in ci  # pytest's "no tests collected" is a failure
    # both commands install the same way
    install = commands["All tests"].split(" && python -m pytest")[0]
    assert commands["Main job"].startswith(commands["All tests"].split(" && pip install --no-deps")[0])
    assert install.startswith("pip install torch==2.13.0 && ")
