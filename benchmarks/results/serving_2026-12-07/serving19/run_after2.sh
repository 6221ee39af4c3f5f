#!/bin/bash
# serving19, after the placement change: 64-GPU memory pools (seed 0), then the "before" rows for seeds 4-5 at 0.6-1.0
# from a git archive of 05ea4b3 (BEFORE=its path). One process at a time.
R=benchmarks/results/serving_2026-12-07/serving19
PY=${PY:-python}
$PY $R/pools64.py gfdit 60 "80+24 GB" 0.6,0.8,1.0,1.2 > $R/pools64_after.jsonl
$PY $R/pools64.py gfdit 60 "24 GB" 0.6,0.8,1.0,1.2 >> $R/pools64_after.jsonl
$PY $R/pools64.py gfdit:qwen-image 10 "24 GB" 0.6,0.8,1.0,1.2 >> $R/pools64_after.jsonl
$PY $R/pools64.py gfdit:qwen-image 10 "80+24 GB" 0.6,0.8,1.0,1.2 >> $R/pools64_after.jsonl
for L in 0.6 0.8 1.0; do
  PYTHONPATH=$BEFORE $PY $R/seeds_mixed.py $L 4,5 memory-aware,memory-aware-notriage
done > $R/seeds_mixed_grid_before_s45.jsonl
