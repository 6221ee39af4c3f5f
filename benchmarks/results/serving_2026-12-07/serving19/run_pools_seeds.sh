#!/bin/bash
# serving19: both models on 64 x 80+24 GB and 64 x 24 GB (H100 costs), 60 min, seeds 0-3, after 56e6557. One at a time.
R=benchmarks/results/serving_2026-12-07/serving19
PY=${PY:-python}
for POOL in "80+24 GB" "24 GB"; do
  for L in 0.6 0.8 1.0 1.2; do
    $PY $R/seeds_mixed.py $L 0,1,2,3 edf,edf-triage,memory-aware "$POOL"
  done
done > $R/seeds_pools_mixed.jsonl
