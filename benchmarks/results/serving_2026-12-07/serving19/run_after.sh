#!/bin/bash
# serving19, after the memory-aware placement change: one process at a time.
R=benchmarks/results/serving_2026-12-07/serving19
PY=${PY:-python}
$PY $R/seeds_mixed.py 1.2 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 memory-aware,memory-aware-notriage > $R/seeds_mixed_load1.2_after.jsonl
for L in 0.6 0.8 1.0; do
  $PY $R/seeds_mixed.py $L 0,1,2,3,4,5 edf,edf-triage,memory-aware,memory-aware-notriage
done > $R/seeds_mixed_grid_after.jsonl
$PY benchmarks/results/serving_2026-12-07/serving17/sweep8.py "fits,80+24 GB,48 GB,24 GB" memory-aware > $R/sweep8_after.jsonl 2> $R/sweep8_after.err
