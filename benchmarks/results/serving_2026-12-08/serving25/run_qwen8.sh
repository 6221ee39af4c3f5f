#!/bin/bash
# serving25 step 1: candidate wait rules on Qwen-Image 8 x H100 (serving24's losing cell), seeds 0-15, one process.
R=benchmarks/results/serving_2026-12-08/serving25
PY=${PY:-python}
P='edf;edf-triage;ma-old={"wait_margin":0,"overrun":"now"};m0.7={"wait_margin":0.7};wake-m0.5={"overrun":"wake","wait_margin":0.5};wake-m0.7={"overrun":"wake","wait_margin":0.7};wake-m1.0={"overrun":"wake","wait_margin":1.0}'
for L in 1.0 1.2; do $PY $R/variants.py qwen8 $L 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 0,0.1,0.2 "$P"; done > $R/qwen8_candidates.jsonl
echo qwen8 done $(date -u)
