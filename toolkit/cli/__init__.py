"""The ``toolkit`` command: one module per subcommand, each with ``register(subparsers)`` and ``run(args)``.

Analysis commands (``info``, ``sweep``, ``route``) need only the plain install; model commands (``collect``,
``train``, ``difficulty``, ``probe``, ``predict``, ``llm-generate``, ``train-t2t``, ``generate``, ``zoo``) need the ``nn`` extra and
import torch only when they run. ``toolkit COMMAND --help`` describes each.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import (
    collect,
    difficulty,
    generate,
    info,
    llm_generate,
    predict,
    probe,
    route,
    sweep,
    train,
    train_t2t,
    zoo,
)

NN_PACKAGES = {"torch", "transformers", "accelerate", "safetensors", "sklearn", "datasets", "gguf"}
COMMANDS = (collect, train, difficulty, probe, info, sweep, predict, llm_generate, train_t2t, generate, route, zoo)

EPILOG = """examples:
  toolkit collect --model all-MiniLM-L6-v2 --task sst2 --split test --out sst2-test.parquet --limit 100
  toolkit collect --model runs/sst2/minilm2/final --model runs/sst2/minilm6/final --model runs/sst2/mpnet/final \\
      --task sst2 --split cal --out data/sst2/cascade-cal.parquet
  toolkit train --task sst2 --model all-MiniLM-L6-v2 --objective joint --out runs/sst2/minilm6_me --bf16
  toolkit info data/sst2/minilm6_me-test.parquet
  toolkit sweep data/sst2/minilm6_me-test.parquet --score max_prob
  toolkit generate --model swift=Helsinki-NLP/opus-mt-en-de --model super=facebook/wmt19-en-de \\
      --task wmt21_en_de --split test --out wmt-en-de.parquet
  toolkit route data/sst2/t2t-test.parquet --score energy --how mean
  toolkit llm-generate --policy smollm2-selfspec.json --input prompts.txt --out outputs.tsv
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toolkit", description="Collect every exit's logits once; analyse early exit, "
                                "cascades and Swift/Super routing offline.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    a = build_parser().parse_args(argv)
    try:
        return a.fn(a)
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in NN_PACKAGES:
            raise
        print(f"toolkit {a.command}: needs the torch side ({e.name} is not installed): "
              f"pip install 'toolkit[nn]'", file=sys.stderr)
        return 2
    except (ValueError, KeyError, FileNotFoundError, OSError) as e:
        print(f"toolkit {a.command}: error: {e}", file=sys.stderr)
        return 2
