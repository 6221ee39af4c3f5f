#!/bin/bash
# serving18, third batch (after run_all2.sh): both models (--mixes gfdit), 64 GPUs, a 60-minute trace, every pool.
set -x
R=benchmarks/results/serving_2026-12-07/serving18
PY=${PY:-python}
ALL=static-1,static-2,static-4,static-8,srtf,edf,edf-triage,memory-aware,memory-aware-notriage
$PY benchmarks/bench_serving.py --out "$R/mixed_64gpu_60min" --gpus 64 --profiles H100,H200 --mixes gfdit \
    --pools "fits,48 GB,24 GB,80+24 GB" --minutes 60 --policies $ALL > "$R/mixed_64gpu_60min.log" 2>&1
