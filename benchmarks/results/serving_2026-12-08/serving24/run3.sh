#!/bin/bash
# serving24, third batch (after run2.sh): the 80+24 GB pool (models that do not fit half the GPUs), one process at a time.
R=benchmarks/results/serving_2026-12-08/serving24
PY=${PY:-python}
for L in 1.0 1.2; do $PY $R/pred_error.py qwen8_80+24 $L 0,1,2,3,4,5,6,7 0,0.1,0.2; done > $R/qwen8_80+24.jsonl
echo qwen8_80+24 done $(date -u)
for L in 1.0 1.2; do $PY $R/pred_error.py mixed64_80+24 $L 0,1,2,3 0,0.1,0.2; done > $R/mixed64_80+24.jsonl
echo mixed64_80+24 done $(date -u)
