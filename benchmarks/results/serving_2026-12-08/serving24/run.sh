#!/bin/bash
# serving24: pred_error.py on every cell, one simulation process at a time. Run from the repository root.
R=benchmarks/results/serving_2026-12-08/serving24
PY=${PY:-python}
for L in 1.0 1.2; do $PY $R/pred_error.py qwen8 $L 0,1,2,3,4,5,6,7 0,0.1,0.2; done > $R/qwen8.jsonl
echo qwen8 done $(date -u)
for L in 1.0 1.2; do $PY $R/pred_error.py mixed64 $L 0,1,2,3,4,5,6,7 0,0.1,0.2; done > $R/mixed64.jsonl
echo mixed64 done $(date -u)
