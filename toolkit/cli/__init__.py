"""The ``toolkit`` command: one module per subcommand, each with ``register(subparsers)`` and ``run(args)``.

Analysis commands (``info``, ``sweep``, ``route``, ``plot``, ``import``) need only the plain install; model commands (``collect``,
``train``, ``difficulty``, ``probe``, ``predict``, ``train-t2t``, ``generate``, ``zoo``, ``llm-train-exits``,
``llm-collect``, ``llm-classify``, ``llm-generate``, ``profile``) need the ``nn`` extra and
import torch only when they run. ``toolkit COMMAND --help`` describes each.
"""

from __future__ import annotations

import argparse
import os
import sys

from toolkit.cli import (
    collect,
    difficulty,
    generate,
    import_runs,
    info,
    llm_classify,
    llm_collect,
    llm_generate,
    llm_train_exits,
    plot,
    predict,
    probe,
    profile,
    route,
    sweep,
    train,
    train_t2t,
    upgrade,
    zoo,
)
from toolkit.cli._common import Parser

NN_PACKAGES = {"torch", "transformers", "accelerate", "safetensors", "sklearn", "datasets", "gguf"}
COMMANDS = (collect, train, difficulty, probe, info, sweep, plot, predict, train_t2t, generate, route, zoo, upgrade,
            llm_train_exits, llm_collect, llm_classify, llm_generate, import_runs, profile)
RESUMABLE = {"collect", "generate", "train", "train-t2t", "difficulty", "zoo", "llm-train-exits", "llm-collect",
             "llm-classify"}

EPILOG = """examples:
  toolkit train --task sst2 --model all-MiniLM-L6-v2 --objective joint --out runs/sst2/minilm6_me --bf16
  toolkit collect --model runs/sst2/minilm6_me/final --task sst2 --split test --out sst2-test.parquet
  toolkit collect --model runs/sst2/minilm2/final --model runs/sst2/minilm6/final --model runs/sst2/mpnet/final \\
      --task sst2 --split cal --out data/sst2/cascade-cal.parquet
  toolkit info data/sst2/minilm6_me-test.parquet
  toolkit sweep data/sst2/minilm6_me-test.parquet --score max_prob
  toolkit sweep data/sst2/cascade-test.parquet --reference all --json
  toolkit plot data/sst2/cascade-test.parquet --rule risk --delta 0.01 --out sst2-cascade.pdf
  toolkit generate --model swift=Helsinki-NLP/opus-mt-en-de --model super=facebook/wmt19-en-de \\
      --task wmt21_en_de --split test --out wmt-en-de.parquet
  toolkit route data/sst2/t2t-test.parquet --score energy --how mean
  toolkit llm-generate --policy smollm2-selfspec.json --input prompts.txt --out outputs.tsv
"""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="toolkit", description="Collect every exit's logits once; analyse early exit, cascades and "
               "Swift/Super routing offline.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from toolkit import __version__

    p.add_argument("--version", action="version", version=f"toolkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    a = build_parser().parse_args(argv)
    try:
        return a.fn(a)
    except KeyboardInterrupt:
        print(f"toolkit {a.command}: interrupted; " + ("finished chunks/checkpoints are kept: rerun the same command "
              "to resume" if a.command in RESUMABLE else "nothing was written"), file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in NN_PACKAGES:
            raise
        print(f"toolkit {a.command}: needs the torch side ({e.name} is not installed): "
              f"pip install -e '.[nn]' in the toolkit checkout (adaptive-inference-toolkit[nn])", file=sys.stderr)
        return 2
    except (ValueError, KeyError, FileNotFoundError, OSError) as e:
        print(f"toolkit {a.command}: error: {e}", file=sys.stderr)
        return 2
