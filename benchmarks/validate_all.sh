#!/usr/bin/env bash
# The cost-model validation of benchmarks/RESULTS.md for one workload, packed for a GPU session: runs
# validate_costmodel.py (processes compile in parallel, take turns on the GPU), then packs the per-process rows and
# logs into one $OUT/<name>.tgz (the device tool returns at most 8 files) and keeps the merged JSON and the log.
#
#   bash benchmarks/validate_all.sh flux512   # Flux 512x512 (1024 image tokens)
#   bash benchmarks/validate_all.sh wan       # Wan 2.1 14B, 480x832, 17 frames
#   bash benchmarks/validate_all.sh flux      # Flux 1024x1024 (4096 image tokens), incl. budgets after the headroom
#   bash benchmarks/validate_all.sh qwen      # Qwen-Image 1024x1024
#   bash benchmarks/validate_all.sh sweep-flux8   # memory_budget against the swept chunk-size x residency boundary
#   (sweep-flux8 / sweep-flux16 / sweep-wan8 / sweep-wan12 / sweep-qwen16; configs from benchmarks/sweep_configs.py, H200 profile)
# DEADLINE (seconds, default 480) bounds the run; rows finished by then are kept.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.}
DEADLINE=${DEADLINE:-480}
RES=(--height 1024 --width 1024)
case "${1:-}" in
  flux512) MODEL=flux RES=(--height 512 --width 512)
           CONFIGS="inductor,chunkflow:0;chunkflow:1,chunkflow:0.25;chunkflow:0.75,budget:6GiB;chunkflow:0.5,budget:12GiB" ;;
  flux)    MODEL=flux
           CONFIGS="chunkflow:0.5:64MiB,budget:8GiB;chunkflow:0.5:4MiB,budget:16GiB;chunkflow:0.6,chunkflow:0.7" ;;
  wan)     MODEL=wan RES=(--height 480 --width 832 --frames 17)  # 3 processes: 28.6 GB of pinned host memory each
           CONFIGS="inductor,chunkflow:0,budget:8GiB;chunkflow:1,chunkflow:0.25,chunkflow:0.5;chunkflow:0.75,budget:16GiB" ;;
  qwen)    MODEL=qwen-image  # 2 processes: 41 GB of pinned host memory each (128 GiB machines)
           CONFIGS="chunkflow:0.5:64MiB,budget:12GiB;budget:24GiB,chunkflow:0.6" ;;
  # benchmarks/sweep_configs.py --budget B --profile <the H200 probe of 2026-11-23>: per chunk size (4/16/64 MiB) the
  # largest resident fraction predicted to fit, and one 0.02 above it
  sweep-flux8)  MODEL=flux
           CONFIGS="budget:8GiB,chunkflow:0.309:16MiB;chunkflow:0.285:4MiB,chunkflow:0.266:64MiB;chunkflow:0.305:4MiB,chunkflow:0.286:64MiB;chunkflow:0.289:16MiB" ;;
  sweep-flux16) MODEL=flux
           CONFIGS="budget:16GiB,chunkflow:0.7:16MiB;chunkflow:0.676:4MiB,chunkflow:0.602:64MiB;chunkflow:0.696:4MiB,chunkflow:0.622:64MiB;chunkflow:0.68:16MiB" ;;
  sweep-wan8)   MODEL=wan RES=(--height 480 --width 832 --frames 17)
           CONFIGS="budget:8GiB,chunkflow:0.223:16MiB,chunkflow:0.231:64MiB;chunkflow:0.188:4MiB,chunkflow:0.211:64MiB;chunkflow:0.208:4MiB,chunkflow:0.203:16MiB" ;;
  sweep-wan12)  MODEL=wan RES=(--height 480 --width 832 --frames 17)
           CONFIGS="budget:12GiB,chunkflow:0.375:16MiB,chunkflow:0.352:64MiB;chunkflow:0.348:4MiB,chunkflow:0.332:64MiB;chunkflow:0.368:4MiB,chunkflow:0.355:16MiB" ;;
  sweep-qwen16) MODEL=qwen-image  # 2 processes (41 GB pinned each); DEADLINE=540
           CONFIGS="budget:16GiB,chunkflow:0.391:4MiB,chunkflow:0.395:16MiB,chunkflow:0.364:64MiB;chunkflow:0.371:4MiB,chunkflow:0.375:16MiB,chunkflow:0.344:64MiB" ;;
  *) echo "usage: $0 flux512|flux|wan|qwen|sweep-flux8|sweep-flux16|sweep-wan8|sweep-wan12|sweep-qwen16" >&2; exit 2 ;;
esac
export CFCOMPILE_BENCH_LOCK=${CFCOMPILE_BENCH_LOCK:-/tmp/cfcompile-gpu.lock}
touch "$CFCOMPILE_BENCH_LOCK"
python3 benchmarks/validate_costmodel.py --model "$MODEL" "${RES[@]}" --stagger 20 --deadline "$DEADLINE" \
  --groups "$CONFIGS" 2>&1 | tee "$OUT/validate_$1.log"
status=${PIPESTATUS[0]}
(cd "$OUT" && tar czf "validate_$1.tgz" proc* && rm -rf proc*)
exit "$status"
