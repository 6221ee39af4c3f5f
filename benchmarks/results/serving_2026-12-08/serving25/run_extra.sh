#!/bin/bash
# serving25 step 4 (after the default changed): loads below 1.0, and serving20's bound cell (both models, 64 x 24 GB).
R=benchmarks/results/serving_2026-12-08/serving25
PY=${PY:-python}
NEW='wake-m1.0={"overrun":"wake","wait_margin":1.0}'
OLD='ma-old={"wait_margin":0,"overrun":"now"}'
for L in 0.6 0.8; do $PY $R/variants.py qwen8 $L 0,1,2,3,4,5,6,7 0,0.2 "edf;edf-triage;$OLD;$NEW"; done > $R/qwen8_low.jsonl
for L in 0.6 0.8; do $PY $R/variants.py qwen8_48 $L 0,1,2,3 0,0.2 "edf;edf-triage;$OLD;$NEW"; done > $R/qwen8_48_low.jsonl
echo low loads done $(date -u)
for L in 1.0 1.2; do $PY $R/variants.py mixed64_24 $L 0,1,2,3 0 "$OLD;$NEW"; done > $R/mixed64_24.jsonl
echo mixed64_24 done $(date -u)
