#!/usr/bin/env bash
# Reproduce the README's results table, 5 seeds per row and method, public split:
#   cora:          configs/cora.yaml with WERank on and off
#   citeseer:      configs/citeseer.yaml (BGRL + WERank's validation-chosen config) with WERank on and off
#   citeseer-bgrl: configs/citeseer-bgrl.yaml (plain BGRL's own validation-chosen config)
# then regenerate the table from the run folders (kept under results/paper/; checkpoints are ignored).
#   JOBS=2 bash scripts/results_table.sh        (JOBS runs in parallel, one torch thread each)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/paper}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-"0 1 2 3 4"}
jobs_list=()
for spec in cora:true cora:false citeseer:true citeseer:false citeseer-bgrl:false; do
  cfg=${spec%%:*} werank=${spec##*:}
  for seed in $SEEDS; do
    dir="$OUT/$cfg/werank-$werank/seed$seed"
    [ -f "$dir/report.json" ] && continue          # finished runs are kept (resumable)
    if [ -f "$dir/checkpoint.pt" ]; then
      jobs_list+=("python3 train.py --resume $dir")
    else
      jobs_list+=("python3 train.py --config configs/$cfg.yaml --run-dir $dir --force --set seed=$seed --set werank.enabled=$werank --set threads=1 --set train.progress=none")
    fi
  done
done
if [ ${#jobs_list[@]} -gt 0 ]; then
  printf '%s\n' "${jobs_list[@]}" | xargs -P "$JOBS" -I{} sh -c '{} > /dev/null'
fi
[ "${UPDATE:-1}" = 1 ] && python3 -m bgrl_werank.results "$OUT" --update README.md --marker results
