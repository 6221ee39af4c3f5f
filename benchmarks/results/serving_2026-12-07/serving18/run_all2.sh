#!/bin/bash
# serving18, second batch (after run_all.sh), smallest first, one simulation process at a time.
set -x
R=benchmarks/results/serving_2026-12-07/serving18
PY=${PY:-python}
ALL=static-1,static-2,static-4,static-8,srtf,edf,edf-triage,memory-aware,memory-aware-notriage
# 4. Qwen-Image, 8 GPUs, every pool (H100 and H200 costs), every load and policy
$PY benchmarks/bench_serving.py --out $R/qwen_8gpu_all --gpus 8 --profiles H100,H200 --pool-profiles H100,H200 \
    --mixes gfdit:qwen-image --pools "fits,48 GB,24 GB,80+24 GB" --policies $ALL > $R/qwen_8gpu_all.log 2>&1
# 5. Qwen-Image on 64 x 48 / 24 GB, H200 costs, every load
$PY benchmarks/bench_serving.py --out $R/qwen_64gpu_48gb_24gb_h200 --gpus 64 --pool-profiles H200 \
    --mixes gfdit:qwen-image --pools "48 GB,24 GB" --policies $ALL > $R/qwen_64gpu_48gb_24gb_h200.log 2>&1
# 6. Qwen-Image, 64 x H100 / H200 (fits): the policies serving17 changed (edf-triage, memory-aware) and edf beside them
$PY benchmarks/bench_serving.py --out $R/qwen_64gpu_fits_triage --gpus 64 --profiles H100,H200 \
    --mixes gfdit:qwen-image --pools fits --policies edf,edf-triage,memory-aware > $R/qwen_64gpu_fits_triage.log 2>&1
# 7. Qwen-Image, 64 x 80+24 GB, H100 costs, every load
$PY benchmarks/bench_serving.py --out "$R/qwen_64gpu_80+24gb" --gpus 64 --mixes gfdit:qwen-image --pools "80+24 GB" \
    --policies static-1,static-2,static-4,static-8,srtf,edf,edf-triage,memory-aware > "$R/qwen_64gpu_80+24gb.log" 2>&1
