#!/usr/bin/env bash
# Rebuild every shipped cache from the packaged weights and ../shared/data, in priority order (hours on 2 CPU cores;
# minutes on a GPU). Resumable: rerun after an interruption. Logs to runs/zoo.log.
#   bash scripts/build_zoo.sh            # everything
#   bash scripts/build_zoo.sh --tiny     # same path, minutes (writes to runs/tiny-data, not data/)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
if [ "${1:-}" = "--tiny" ]; then
  exec toolkit zoo --task rte --set minilm6_me cascade --out runs/tiny-data --runs runs/tiny --tiny
fi
{
  toolkit zoo --task sst2 --set minilm6_me cascade
  toolkit zoo --task sst2 --set minilm6_me_joint_sub minilm6_me_weighted_sub minilm6_me_two_stage_sub
  toolkit zoo --task sst2 --set minilm6_me_w50
  toolkit zoo --task rte mrpc cola agnews --set minilm6_me
  toolkit zoo --task agnews --set minilm6_me_w50
  toolkit zoo --task mrpc cola agnews rte --set cascade
  toolkit zoo --task sst2 --set t2t
  toolkit zoo --task sst2 --set mpnet_me
  toolkit zoo --task mrpc cola agnews rte --set mpnet_me
  toolkit zoo --check
} 2>&1 | tee -a runs/zoo.log
