#!/bin/bash
# The GPU runs the open issues wait for, in priority order (edit as they land). One device command runs at most
# 10 minutes: pass the steps that fit, e.g.  bash benchmarks/gpu_pending.sh check lora  then  ... pipe  then  ...
# Each step has its own timeout and writes under $OUT/<step>/ (the benchmarks rewrite their JSON after every row).
# Setup on this machine first (the GPU machines have torch 2.11 but no diffusers):
#   echo /.whl/ >> .git/info/exclude && python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 -d .whl diffusers==0.42.1 importlib_metadata peft==0.21.2
# and carry [".whl"]. lora-before compares with the code before sessions 13-14's binding changes: also
#   echo /.old/ >> .git/info/exclude && mkdir .old && git archive 4e2b1da cfcompile | tar -x -C .old   (carry ".old")
#
#   issue 18: check                   issue 15: lora, lora-before, regional512, regional1024, regional-wan
#   issue 17: pipe, pipe-wan, cogvideox, sana, hunyuan, hunyuan-budgets, generate
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target .site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD/.site:$PWD PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; python3 -c "import torch; print(torch.__version__)"; } \
    > "$OUT/device.txt" 2>&1
step() {   # step NAME SECONDS COMMAND...: the command under a timeout, its log and JSON in $OUT/NAME
    local name=$1 t=$2; shift 2
    echo "== $name $(date +%T)"; mkdir -p "$OUT/$name"
    OUT=$OUT/$name timeout "$t" "$@" > "$OUT/$name/log.txt" 2>&1
    echo "rc=$? $(date +%T)"; tail -4 "$OUT/$name/log.txt"
}
LORA=(python3 benchmarks/bench_lora.py --model flux --height 512 --width 512 --rank 64 --resident-fraction 0.5
      --regional --iters 5)
REGIONAL=(--configs regional-budget:12GiB,budget:12GiB,regional:0,chunkflow:0 --iters 5)
HY=(--model hunyuan-video --height 544 --width 960 --frames 61 --iters 5)
for s in "$@"; do case $s in
  check) step check 300 python3 benchmarks/gpu_check.py --long 100 ;;
  lora) step lora 280 "${LORA[@]}" ;;
  lora-before) PYTHONPATH=$PWD/.site:$PWD/.old:$PWD step lora-before 280 "${LORA[@]}" ;;
  regional512) step regional512 560 python3 benchmarks/bench_offload.py --model flux --height 512 --width 512 "${REGIONAL[@]}" ;;
  regional1024) step regional1024 580 python3 benchmarks/bench_offload.py --model flux "${REGIONAL[@]}" ;;
  regional-wan) step regional-wan 580 python3 benchmarks/bench_offload.py --model wan \
      --configs regional-budget:24GiB,budget:24GiB,regional:0,chunkflow:0 --iters 3 ;;
  pipe) step pipe 580 python3 benchmarks/bench_pipeline.py --pipeline flux --warmup-calls 3 \
      --configs apply:12GiB,group-offload,apply:9GiB,apply-cal:12GiB ;;
  pipe-wan) step pipe-wan 580 python3 benchmarks/bench_pipeline.py --pipeline wan --steps 4 \
      --configs apply:24GiB,group-offload ;;
  cogvideox) step cogvideox 580 python3 benchmarks/bench_offload.py --model cogvideox-5b --height 480 --width 720 \
      --frames 49 --batch 2 --configs inductor,chunkflow:0,chunkflow:0.5,budget:6GiB,budget:8GiB ;;
  sana) step sana 400 python3 benchmarks/bench_offload.py --model sana-1600m --height 1024 --width 1024 --batch 2 \
      --configs inductor,chunkflow:0,chunkflow:0.5,budget:1GiB,budget:2GiB ;;
  hunyuan) step hunyuan 580 python3 benchmarks/bench_offload.py "${HY[@]}" --configs inductor,chunkflow:0,chunkflow:0.5 ;;
  hunyuan-budgets) step hunyuan-budgets 580 python3 benchmarks/bench_offload.py "${HY[@]}" \
      --configs budget:8GiB,budget:16GiB ;;
  generate) step generate 400 python3 -m cfcompile generate --pipeline flux --random-weights \
      --prompt "a lighthouse at dusk" --memory-budget 16GiB --steps 8 --out "$OUT/generate/flux.png" ;;
  *) echo "unknown step $s (see the header)"; exit 2 ;;
esac; done
