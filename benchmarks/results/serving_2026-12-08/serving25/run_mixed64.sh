#!/bin/bash
# serving25 step 2: the two best candidates of step 1 on both models, 64 x H100 (serving24's mixed64), seeds 0-15.
# edf / edf-triage / memory-aware as before come from serving24's mixed64.jsonl + mixed64_s8-15.jsonl (their code is
# unchanged: the wake-up event is only emitted for a policy that sets wake_on_overrun).
R=benchmarks/results/serving_2026-12-08/serving25
PY=${PY:-python}
P='wake-m0.7={"overrun":"wake","wait_margin":0.7};wake-m1.0={"overrun":"wake","wait_margin":1.0}'
for L in 1.0 1.2; do $PY $R/variants.py mixed64 $L 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 0,0.1,0.2 "$P"; done > $R/mixed64_candidates.jsonl
echo mixed64 done $(date -u)
