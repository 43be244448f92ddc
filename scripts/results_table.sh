#!/usr/bin/env bash
# Reproduce the README's results table: BGRL and BGRL + WERank on Cora and CiteSeer (public split),
# 5 seeds each, then regenerate the table from the run folders.
#   JOBS=2 bash scripts/results_table.sh        (JOBS runs in parallel, one torch thread each)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/paper}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-"0 1 2 3 4"}
jobs_list=()
for ds in cora citeseer; do
  for werank in true false; do
    for seed in $SEEDS; do
      dir="$OUT/$ds/werank-$werank/seed$seed"
      [ -f "$dir/report.json" ] && continue          # finished runs are kept (resumable)
      if [ -f "$dir/checkpoint.pt" ]; then
        jobs_list+=("python3 train.py --resume $dir")
      else
        jobs_list+=("python3 train.py --config configs/$ds.yaml --run-dir $dir --force --set seed=$seed --set werank.enabled=$werank --set threads=1 --set train.progress=none")
      fi
    done
  done
done
printf '%s\n' "${jobs_list[@]}" | xargs -P "$JOBS" -I{} sh -c '{} > /dev/null'
python3 -m bgrl_werank.results "$OUT" --update README.md --marker results
