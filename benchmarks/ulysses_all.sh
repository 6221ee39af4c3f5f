#!/usr/bin/env bash
# Issue 4's 2-GPU runs (and issue 5's `elastic`), one device call per workload and path: Ulysses degree 2 through
# chunkflow over NVLink (`nvlink`) or with NCCL_P2P_DISABLE=1 (`pcie`: collectives share the PCIe path with the
# weight copies). Results go into one $OUT/ulysses_<workload>_<path>.tgz (the device tool returns at most 8 files).
#
#   bash benchmarks/ulysses_all.sh flux1024 pcie   # Flux 512x512 = 1024 image tokens: small per-GPU work (1.28x case)
#   bash benchmarks/ulysses_all.sh flux4096 pcie   # Flux 1024x1024
#   bash benchmarks/ulysses_all.sh qwen pcie       # Qwen-Image 1024x1024
#   bash benchmarks/ulysses_all.sh wan pcie        # Wan 2.1 480x832x17 (7800 tokens)
#   bash benchmarks/ulysses_all.sh wan81 pcie      # Wan 2.1 480x832x81 (32760 tokens): large per-GPU work (49% case)
#   bash benchmarks/ulysses_all.sh elastic nvlink  # issue 5: a Flux step over a logical group vs diffusers' CP,
#                                                  # group formation and all-to-all vs NCCL
#   (the path defaults to both, nvlink then pcie: only for a short workload, one path is 5 to 8 minutes)
#
# Why this shape: on the H200 a real-size model takes ~2 minutes to compile per config and process (rehearsal of
# 2026-11-23, benchmarks/RESULTS.md), so the configs of a workload are split into groups (';'), each group one
# torchrun pair; the pairs compile in parallel and take turns on the GPUs for timing (CFCOMPILE_BENCH_LOCK).
# Host memory bounds the pairs: pinned weights are 24 GB per process for Flux, 28.6 for Wan, 41 for Qwen-Image.
# `budget:layerwise` needs `layerwise` before it in its group. CONFIG_GROUPS="a,b;c" replaces a workload's configs and
# EXTRA adds arguments (EXTRA="--tiny --device cpu" runs it on the CPU). DEADLINE (seconds per path, default 540) bounds each
# path; every row measured by then is kept. BENCH_DIST_BACKEND=gloo rehearses it on one GPU (times mean nothing).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.}
DEADLINE=${DEADLINE:-540}
ITERS=10
case "${1:-}" in
  flux1024) ARGS=(--model flux --height 512 --width 512)
            GROUPS_="layerwise,budget:layerwise;inductor,chunkflow:0.5;chunkflow:0.25,budget:12GiB" ;;
  flux4096) ARGS=(--model flux --height 1024 --width 1024)
            GROUPS_="layerwise,budget:layerwise;inductor,chunkflow:0;chunkflow:0.5,budget:16GiB" ;;
  qwen)     ARGS=(--model qwen-image --height 1024 --width 1024)
            GROUPS_="layerwise,budget:layerwise;inductor,chunkflow:0.5" ;;
  wan)      ARGS=(--model wan --height 480 --width 832 --frames 17)
            GROUPS_="layerwise,budget:layerwise;inductor,chunkflow:0;chunkflow:0.5,budget:12GiB" ;;
  wan81)    ARGS=(--model wan --height 480 --width 832 --frames 81) ITERS=5
            GROUPS_="inductor,chunkflow:0;layerwise,chunkflow:0.25" ;;
  elastic)  ;;
  *) echo "usage: $0 flux1024|flux4096|qwen|wan|wan81|elastic [nvlink|pcie ...]" >&2; exit 2 ;;
esac
GROUPS_=${CONFIG_GROUPS:-${GROUPS_:-}}   # CONFIG_GROUPS="a,b;c" replaces a workload's configs; EXTRA="--tiny --device cpu" adds args
workload=$1; shift
paths=("$@"); [ ${#paths[@]} -eq 0 ] && paths=(nvlink pcie)
export CFCOMPILE_BENCH_LOCK=${CFCOMPILE_BENCH_LOCK:-/tmp/cfcompile-gpu.lock}
touch "$CFCOMPILE_BENCH_LOCK"
status=0
for path in "${paths[@]}"; do
  case "$path" in
    nvlink) env=(NCCL_P2P_DISABLE=0) ;;
    pcie)   env=(NCCL_P2P_DISABLE=1) ;;
    *) echo "unknown path $path: nvlink or pcie" >&2; exit 2 ;;
  esac
  dir="$OUT/ulysses_${workload}_$path"
  mkdir -p "$dir"
  if [ "$workload" = elastic ]; then
    env "${env[@]}" OUT="$dir" timeout "$DEADLINE" torchrun --standalone --nproc-per-node 2 \
      benchmarks/bench_elastic_step.py --model flux --height 1024 --width 1024 > "$dir/step.txt" 2>&1 || status=1
    tail -16 "$dir/step.txt"
    env "${env[@]}" OUT="$dir" timeout 120 torchrun --standalone --nproc-per-node 2 \
      benchmarks/bench_elastic.py > "$dir/log.txt" 2>&1 || status=1
    grep -v "^W1\|Warning\|warn" "$dir/log.txt" | tail -30
  else
    IFS=';' read -ra groups <<< "$GROUPS_"
    pids=()
    for i in "${!groups[@]}"; do
      env "${env[@]}" OUT="$dir" timeout "$DEADLINE" torchrun --standalone --nproc-per-node 2 \
        benchmarks/bench_ulysses.py "${ARGS[@]}" ${EXTRA:-} --iters "$ITERS" --configs "${groups[$i]}" --tag "_g$i" \
        > "$dir/log_g$i.txt" 2>&1 &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || status=1; done
    for i in "${!groups[@]}"; do grep "^\[\|^{\|Error" "$dir/log_g$i.txt" | cut -c1-400 | tail -12; done
  fi
  (cd "$OUT" && tar czf "ulysses_${workload}_$path.tgz" "ulysses_${workload}_$path" && rm -rf "ulysses_${workload}_$path")
done
exit "$status"
