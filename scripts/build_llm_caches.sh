#!/usr/bin/env bash
# Rebuild the shipped SmolLM2 caches (data/llm/, data/sst2/smollm2_*, data/agnews/smollm2_*) from the packaged GGUF
# and ../shared/data. Hours on 2 shared CPU cores. Every step is resumable (rerun after an interruption); states and
# decoded trajectories are kept under runs/llm so a larger --limit or another exit family reuses them.
#   bash scripts/build_llm_caches.sh exits      # tuned exits (train split only)
#   bash scripts/build_llm_caches.sh tokens     # per-token exit caches (needs the tuned exits)
#   bash scripts/build_llm_caches.sh classify   # zero-shot and probe classification caches (needs the tuned exits)
#   bash scripts/build_llm_caches.sh states     # only the classifiers' hidden states (no tuned exits needed)
#   bash scripts/build_llm_caches.sh lens       # only the token trajectories with the logit lens (no tuned exits)
#   bash scripts/build_llm_caches.sh manifest   # add the caches to data/MANIFEST.json (how made, numbers checked)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/llm data/llm
MODEL=SmolLM2-135M-Instruct
TUNED=runs/llm/smollm2_tuned
# prompt set, split, prompts (the first N of the split, file order)
TOKEN_SETS=("agnews_headline cal 40" "agnews_headline test 60" "sst2_sentiment cal 40" "sst2_sentiment test 60"
            "qnli_answer test 60")
LIMITS_SST2=(--split test --limit 400 --split cal --limit 200)
LIMITS_AGNEWS=(--split test --limit 400 --split cal --limit 200)
PROBE_TRAIN=300

tokens() {  # $1: exit families (lens | lens+tuned); a first pass on 16 prompts of each set, then the full counts
  for first in 16 0; do
    for spec in "${TOKEN_SETS[@]}"; do
      read -r ps split n <<<"$spec"
      [ "$first" -gt 0 ] && n=$first
      exits=(--exits lens)
      [ "$1" = "lens+tuned" ] && exits+=(--exits "tuned=$TUNED")
      toolkit llm-collect --model "$MODEL" --prompt-set "$ps" --split "$split" --limit "$n" "${exits[@]}" \
        --keep-parts --parts-dir runs/llm/parts --out "data/llm/smollm2_${ps}-${split}.parquet"
    done
  done
}

classify() {  # $1: exit families for the zero-shot caches
  exits=(--exits lens)
  [ "$1" = "lens+tuned" ] && exits+=(--exits "tuned=$TUNED")
  toolkit llm-classify --model "$MODEL" --prompt-set sst2_label "${LIMITS_SST2[@]}" "${exits[@]}" \
    --probe-train "$PROBE_TRAIN" --out-dir data/sst2
  toolkit llm-classify --model "$MODEL" --prompt-set agnews_topic "${LIMITS_AGNEWS[@]}" "${exits[@]}" \
    --probe-train "$PROBE_TRAIN" --out-dir data/agnews
}

manifest() {
  python - <<'PY'
from pathlib import Path

from toolkit.zoo.manifest import cache_entry, update_manifest

data = Path("data")
for path in sorted(data.glob("*/smollm2_*.parquet")):
    key = str(path.relative_to(data).with_suffix(""))
    why = "QNLI answers: a held-out evaluation set (no operating point is chosen on it)" if "qnli" in key else None
    update_manifest(data, key, cache_entry(path, test_only=why))
    print("manifest:", key)
PY
}

case "${1:-all}" in
  exits) toolkit llm-train-exits --model "$MODEL" --out "$TUNED" --prompts 120 --max-tokens 16000 --batch-tokens 256 ;;
  lens) tokens lens ;;
  states) classify lens ;;
  tokens) tokens lens+tuned ;;
  classify) classify lens+tuned ;;
  manifest) manifest ;;
  all) "$0" exits && "$0" tokens && "$0" classify && "$0" manifest ;;
  *) echo "unknown step $1" >&2; exit 2 ;;
esac
