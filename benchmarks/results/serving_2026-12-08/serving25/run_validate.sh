#!/bin/bash
# serving25 step 3: the chosen rule (NEW, a variants.py spec) on the other cells, one process at a time.
# 80+24 GB: edf / edf-triage / memory-aware as before come from serving24's *_80+24.jsonl (code unchanged for them).
# serving23 cells re-run under error: Qwen-Image 8 x 48 GB (loads 1.0 / 1.2, seeds 0-3) and 64 x 48 GB (load 1.2,
# seeds 0-1), every policy.
R=benchmarks/results/serving_2026-12-08/serving25
PY=${PY:-python}
NEW=${NEW:-'wake-m1.0={"overrun":"wake","wait_margin":1.0}'}
OLD='ma-old={"wait_margin":0,"overrun":"now"}'
for L in 1.0 1.2; do $PY $R/variants.py qwen8_80+24 $L 0,1,2,3,4,5,6,7 0,0.1,0.2 "$NEW"; done > $R/qwen8_80+24_new.jsonl
for L in 1.0 1.2; do $PY $R/variants.py mixed64_80+24 $L 0,1,2,3 0,0.1,0.2 "$NEW"; done > $R/mixed64_80+24_new.jsonl
echo 80+24 done $(date -u)
for L in 1.0 1.2; do $PY $R/variants.py qwen8_48 $L 0,1,2,3 0,0.1,0.2 "edf;edf-triage;$OLD;$NEW"; done > $R/qwen8_48.jsonl
echo qwen8_48 done $(date -u)
$PY $R/variants.py qwen64_48 1.2 0,1 0,0.2 "edf;edf-triage;$OLD;$NEW" > $R/qwen64_48.jsonl
echo qwen64_48 done $(date -u)
# after run_validate.sh: sigma 0.1 on the 64 x 48 GB Qwen-Image cell
$PY $R/variants.py qwen64_48 1.2 0,1 0.1 "edf;edf-triage;$OLD;$NEW" >> $R/qwen64_48.jsonl
echo qwen64_48 sigma 0.1 done $(date -u)
