#!/bin/bash
# serving18: the runs, smallest first, one simulation process at a time. Run from the repository root.
set -x
R=benchmarks/results/serving_2026-12-07/serving18
PY=${PY:-python}
ALL=static-1,static-2,static-4,static-8,srtf,edf,edf-triage,memory-aware,memory-aware-notriage
# 1. Wan alone, 64 GPUs, 60 minutes, loads 0.6-1.0 (1.2 in serving17 seeds / serving16b), both profiles
$PY benchmarks/bench_serving.py --out $R/wan_64gpu_fits_60min --gpus 64 --profiles H100,H200 --mixes gfdit:wan \
    --pools fits --loads 0.6,0.8,1.0,1.2 --minutes 60 --policies $ALL > $R/wan_64gpu_fits_60min.log 2>&1
# 2. Wan alone on 64 x 48 / 24 GB, 60 minutes
$PY benchmarks/bench_serving.py --out $R/wan_64gpu_48gb_24gb_60min --gpus 64 --mixes gfdit:wan \
    --pools "48 GB,24 GB" --loads 0.6,0.8,1.0,1.2 --minutes 60 --policies $ALL > $R/wan_64gpu_48gb_24gb_60min.log 2>&1
# 3. Qwen-Image on 64 x 48 / 24 GB, H100 costs, every load
$PY benchmarks/bench_serving.py --out $R/qwen_64gpu_48gb_24gb --gpus 64 --mixes gfdit:qwen-image \
    --pools "48 GB,24 GB" --loads 0.6,0.8,1.0,1.2 --policies $ALL > $R/qwen_64gpu_48gb_24gb.log 2>&1
