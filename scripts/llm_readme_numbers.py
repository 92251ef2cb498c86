"""The SmolLM2 numbers of docs/results/llm.md: a command line over :func:`toolkit.zoo.llm_numbers.render`.

Run: python scripts/llm_readme_numbers.py [--readme] [data folder]   (--readme: write them into docs/results/llm.md
between the llm-numbers markers; tests/test_llm_shipped.py checks that the page is current)
"""

import sys

from toolkit.zoo import llm_numbers, readme


def main(argv) -> int:
    write = "--readme" in argv
    args = [a for a in argv if a != "--readme"]
    text = llm_numbers.render(*args)
    print(text)
    return readme.write(llm_numbers.SECTION, text) if write else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
