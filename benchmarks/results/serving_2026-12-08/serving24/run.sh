#!/bin/bash
# serving24: pred_error.py on every cell, one simulation process at a time. Run from the repository root (R is
# relative to it; the runs here ran in a copy of the commit, their outputs copied back).
R=benchmarks/results/serving_2026-12-08/serving24
PY=${PY:-python}
for L in 1.0 1.2; do $PY $R/pred_error.py qwen8 $L 0,1,2,3,4,5,6,7 0,0.1,0.2; done > $R/qwen8.jsonl
echo qwen8 done $(date -u)
for L in 1.0 1.2; do $PY $R/pred_error.py mixed64 $L 0,1,2,3,4,5,6,7 0,0.1,0.2; done > $R/mixed64.jsonl
echo mixed64 done $(date -u)
# seeds 8-15 (after the above)
for L in 1.0 1.2; do $PY $R/pred_error.py qwen8 $L 8,9,10,11,12,13,14,15 0,0.1,0.2; done > $R/qwen8_s8-15.jsonl
for L in 1.0 1.2; do $PY $R/pred_error.py mixed64 $L 8,9,10,11,12,13,14,15 0,0.1,0.2; done > $R/mixed64_s8-15.jsonl
echo seeds 8-15 done $(date -u)
# diagnostic (after the above): memory-aware without its wait rule (the part that reads View.free_at)
D=edf-triage,memory-aware,memory-aware-wait-none
for L in 1.0 1.2; do $PY $R/pred_error.py qwen8 $L 0,1,2,3,4,5,6,7 0,0.1,0.2 $D; done > $R/qwen8_wait-none.jsonl
for L in 1.0 1.2; do $PY $R/pred_error.py mixed64 $L 0,1,2,3,4,5,6,7 0,0.1,0.2 $D; done > $R/mixed64_wait-none.jsonl
echo wait-none done $(date -u)
