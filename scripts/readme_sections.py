"""Generated sections of the results pages (docs/results/*.md): the library's :mod:`toolkit.zoo.readme`, kept importable here for the scripts
that write sections (``llm_readme_numbers.py``)."""

from toolkit.zoo.readme import README, current, markers, write  # noqa: F401
