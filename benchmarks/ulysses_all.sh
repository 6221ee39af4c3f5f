#!/usr/bin/env bash
# Issue 4's 2-GPU runs, one device call each: Ulysses degree 2 through chunkflow over NVLink, then the same with
# NCCL_P2P_DISABLE=1 (collectives over PCIe, sharing the path with the weight copies; the second run's compiles
# mostly hit Inductor's cache), packed into one $OUT/ulysses_<mode>.tgz (the device tool returns at most 8 files).
#
#   bash benchmarks/ulysses_all.sh flux1024   # Flux 512x512 = 1024 image tokens: small per-GPU work (the 1.28x case)
#   bash benchmarks/ulysses_all.sh flux4096   # Flux 1024x1024: large per-GPU work (the 49% memory case)
#   bash benchmarks/ulysses_all.sh qwen       # Qwen-Image 1024x1024
#   bash benchmarks/ulysses_all.sh wan        # Wan 2.1 480x832x17
#   bash benchmarks/ulysses_all.sh elastic    # issue 5: a Flux step over a logical group vs diffusers' CP
#                                             # (bench_elastic_step.py), group formation and all-to-all vs NCCL
# DEADLINE (seconds per path, default 270) bounds each torchrun; rows written so far are kept.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.}
DEADLINE=${DEADLINE:-270}
case "${1:-}" in
  flux1024) ARGS=(--model flux --height 512 --width 512)
            CONFIGS="inductor,layerwise,budget:layerwise,chunkflow:0.5" ;;
  flux4096) ARGS=(--model flux --height 1024 --width 1024)
            CONFIGS="inductor,layerwise,budget:layerwise,chunkflow:0,chunkflow:0.5" ;;
  qwen)     ARGS=(--model qwen-image --height 1024 --width 1024)
            CONFIGS="inductor,layerwise,budget:layerwise,chunkflow:0.5" ;;
  wan)      ARGS=(--model wan --height 480 --width 832 --frames 17)
            CONFIGS="inductor,layerwise,budget:layerwise,chunkflow:0.5" ;;
  elastic)  ;;
  *) echo "usage: $0 flux1024|flux4096|qwen|wan|elastic" >&2; exit 2 ;;
esac
mkdir -p "$OUT/$1"
status=0
for path in nvlink pcie; do
  env=()
  [ "$path" = pcie ] && env=(NCCL_P2P_DISABLE=1)
  mkdir -p "$OUT/$1/$path"
  if [ "$1" = elastic ]; then
    env "${env[@]}" OUT="$OUT/$1/$path" timeout "$DEADLINE" torchrun --nproc-per-node 2 \
      benchmarks/bench_elastic_step.py --model flux --height 1024 --width 1024 > "$OUT/$1/$path/step.txt" 2>&1 || status=1
    tail -16 "$OUT/$1/$path/step.txt"
    cmd=(torchrun --nproc-per-node 2 benchmarks/bench_elastic.py)
  else
    cmd=(torchrun --nproc-per-node 2 benchmarks/bench_ulysses.py "${ARGS[@]}" --configs "$CONFIGS")
  fi
  env "${env[@]}" OUT="$OUT/$1/$path" timeout "$DEADLINE" "${cmd[@]}" > "$OUT/$1/$path/log.txt" 2>&1 || status=1
  grep -v "^W1\|Warning\|warn" "$OUT/$1/$path/log.txt" | tail -8
done
(cd "$OUT" && tar czf "ulysses_$1.tgz" "$1" && rm -rf "$1")
exit "$status"
