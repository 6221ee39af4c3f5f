#!/bin/bash
# serving23: serving18's grid (serving18/run_all.sh, run_all2.sh, run_all3.sh) on the current code, one simulation
# process at a time, 64-GPU cells first, then 8 GPUs. Run from the repository root (or SRC= a checkout of the commit
# to simulate, outputs still under this folder). Difference from serving18: Qwen-Image on 64 x H100 / H200 (fits)
# runs every policy here (serving18 ran edf, edf-triage, memory-aware and took the rest from serving16b).
set -x
R=${R:-benchmarks/results/serving_2026-12-08/serving23}
SRC=${SRC:-.}
PY=${PY:-python}
B="$PY $SRC/benchmarks/bench_serving.py"
ALL=static-1,static-2,static-4,static-8,srtf,edf,edf-triage,memory-aware,memory-aware-notriage
# 64 GPUs, 10-minute traces
$B --out $R/qwen_64gpu_fits --gpus 64 --profiles H100,H200 --mixes gfdit:qwen-image --pools fits \
    --policies $ALL > $R/qwen_64gpu_fits.log 2>&1
$B --out "$R/qwen_64gpu_80+24gb" --gpus 64 --mixes gfdit:qwen-image --pools "80+24 GB" \
    --policies static-1,static-2,static-4,static-8,srtf,edf,edf-triage,memory-aware > "$R/qwen_64gpu_80+24gb.log" 2>&1
$B --out $R/qwen_64gpu_48gb_24gb --gpus 64 --mixes gfdit:qwen-image --pools "48 GB,24 GB" \
    --policies $ALL > $R/qwen_64gpu_48gb_24gb.log 2>&1
$B --out $R/qwen_64gpu_48gb_24gb_h200 --gpus 64 --pool-profiles H200 --mixes gfdit:qwen-image \
    --pools "48 GB,24 GB" --policies $ALL > $R/qwen_64gpu_48gb_24gb_h200.log 2>&1
# 64 GPUs, 60-minute traces
$B --out $R/mixed_64gpu_60min --gpus 64 --profiles H100,H200 --mixes gfdit \
    --pools "fits,48 GB,24 GB,80+24 GB" --minutes 60 --policies $ALL > $R/mixed_64gpu_60min.log 2>&1
$B --out $R/wan_64gpu_fits_60min --gpus 64 --profiles H100,H200 --mixes gfdit:wan --pools fits \
    --loads 0.6,0.8,1.0,1.2 --minutes 60 --policies $ALL > $R/wan_64gpu_fits_60min.log 2>&1
$B --out $R/wan_64gpu_48gb_24gb_60min --gpus 64 --mixes gfdit:wan --pools "48 GB,24 GB" \
    --loads 0.6,0.8,1.0,1.2 --minutes 60 --policies $ALL > $R/wan_64gpu_48gb_24gb_60min.log 2>&1
# 8 GPUs
$B --out $R/qwen_8gpu_all --gpus 8 --profiles H100,H200 --pool-profiles H100,H200 --mixes gfdit:qwen-image \
    --pools "fits,48 GB,24 GB,80+24 GB" --policies $ALL > $R/qwen_8gpu_all.log 2>&1
echo done
