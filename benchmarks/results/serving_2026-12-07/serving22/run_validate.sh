#!/bin/bash
# serving22 (copy of serving21/run_validate.sh): re-validation of memory-aware with wait=$TAG ("wait-expected") as its default (the candidate), on every cell earlier
# sections used; one process at a time. "memory-aware" below is the candidate; edf's code is unchanged.
R=benchmarks/results/serving_2026-12-07/serving22
R19=benchmarks/results/serving_2026-12-07/serving19
PY=${PY:-python}
$PY benchmarks/results/serving_2026-12-07/serving17/sweep8.py "fits,80+24 GB,48 GB,24 GB" memory-aware > $R/sweep8_$TAG.jsonl 2> $R/sweep8_$TAG.err
echo sweep8 done $(date -u)
$PY $R19/pools64.py gfdit:qwen-image 10 "80+24 GB" 0.6,0.8,1.0,1.2 > $R/pools64_$TAG.jsonl
$PY $R19/pools64.py gfdit:qwen-image 10 "24 GB" 0.6,0.8,1.0,1.2 >> $R/pools64_$TAG.jsonl
$PY $R19/pools64.py gfdit 60 "80+24 GB" 0.6,0.8,1.0,1.2 >> $R/pools64_$TAG.jsonl
$PY $R19/pools64.py gfdit 60 "24 GB" 0.6,0.8,1.0,1.2 >> $R/pools64_$TAG.jsonl
echo pools64 done $(date -u)
for POOL in "80+24 GB" "24 GB" "48 GB"; do
  for L in 0.6 0.8 1.0 1.2; do
    $PY $R19/seeds_mixed.py $L 0,1,2,3 memory-aware "$POOL"
  done
done > $R/seeds_pools_mixed_$TAG.jsonl
echo pools seeds done $(date -u)
for L in 0.6 0.8 1.0; do
  $PY $R19/seeds_mixed.py $L 0,1,2,3,4,5 memory-aware
done > $R/seeds_mixed_grid_$TAG.jsonl
echo grid done $(date -u)
$PY $R19/determinism.py > $R/determinism_$TAG.txt
echo all done $(date -u)
