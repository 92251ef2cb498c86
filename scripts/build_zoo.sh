#!/usr/bin/env bash
# Zoo v2 on this machine's CPU: the cpu recipe profile (toolkit.zoo.recipes.SCHEDULE_CPU: MiniLM members only, fp32,
# small fixed epoch budgets; the cascades borrow the shipped multi-exit MPNet's L12 exit) and the jobs of
# toolkit.zoo.jobs.CPU_PRIORITY (MRPC's cascade and cascade_da for seeds 42, 43, 44, then SST-2's, SST-2's
# minilm6_me, then CoLA and RTE, then AG News), one after another, set by set. Resumable: a set whose caches
# are already in data/ (built here or merged from a GPU run with `python scripts/gpu_zoo.py --merge OUT/data`) is
# skipped, a finished run folder is reused, an interrupted run resumes from its last checkpoint. Days on 2 shared
# cores; minutes on a GPU (scripts/gpu_zoo.py). Log: runs/zoo-v2.log; per-job status and logs: runs/zoo-logs/.
#   nice -n 19 bash scripts/build_zoo.sh                       # everything still missing
#   nice -n 19 bash scripts/build_zoo.sh --task sst2 --seed 43  # a part (any scripts/gpu_zoo.py option)
#   bash scripts/build_zoo.sh --tiny                           # same path in minutes (runs/tiny-data, not data/)
#   python scripts/gpu_zoo.py . --data data --plan --device cpu # the remaining job list with CPU estimates
# The v1 sets (objective comparison, slenderized, probes, t2t) are rebuilt with `toolkit zoo --set ... --seed 42`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
if [ "${1:-}" = "--tiny" ]; then
  shift
  exec python scripts/gpu_zoo.py runs/tiny-zoo --tiny --device cpu --workers 0 --runs runs/tiny \
    --task rte --set minilm6_me cascade_da --seed 42 "$@"
fi
python scripts/gpu_zoo.py . --data data --logs runs/zoo-logs --runs runs --device cpu --workers 0 "$@" \
  2>&1 | tee -a runs/zoo-v2.log
toolkit zoo --check 2>&1 | tee -a runs/zoo-v2.log
