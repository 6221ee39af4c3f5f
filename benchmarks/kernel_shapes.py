"""Measured bf16 matmul and attention throughput at the shapes DiTs run (to check the cost model's compute terms).

    python benchmarks/kernel_shapes.py --out shapes.json

The probe (`cfcompile.costmodel.probe`) times one large square matmul; a DiT step at few tokens runs matmuls whose
output has fewer tiles than the GPU has SMs. This measures both, with CUDA events (10 calls back to back, median of 20 after 5 warm-ups).
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F

# (K, N) of the linear layers: Flux (3072 wide, MLP 12288, single-block fused qkv+mlp 21504, proj_out 15360),
# Wan 2.1 14B (5120 wide, FFN 13824), Qwen-Image (3072 wide, FFN 12288)
LINEARS = [(3072, 3072), (3072, 9216), (3072, 12288), (12288, 3072), (3072, 21504), (15360, 3072),
           (5120, 5120), (5120, 13824), (13824, 5120)]
TOKENS = [256, 512, 1024, 1536, 4096, 4608, 7800, 8192]
# (heads, head dim, sequence)
ATTENTION = [(24, 128, 1536), (24, 128, 4608), (24, 128, 8192), (40, 128, 7800), (24, 128, 4352)]


def _time(fn, reps=20, warmup=5, calls=10) -> float:
    """Median over ``reps`` of the mean of ``calls`` back-to-back calls: queued as in a compiled graph, so the
    launch latency of one call is not counted (a first version timed single calls and measured it for small
    matmuls)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(calls):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / calls)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="kernel_shapes.json")
    args = ap.parse_args()
    dev, dt = torch.device("cuda"), torch.bfloat16
    rows = []
    big = torch.randn(8192, 8192, device=dev, dtype=dt)
    ms = _time(lambda: big @ big)
    rows.append(dict(kind="matmul", m=8192, k=8192, n=8192, ms=ms, tflops=2 * 8192 ** 3 / ms / 1e9))
    for k, n in LINEARS:
        w = torch.randn(n, k, device=dev, dtype=dt)
        for m in TOKENS:
            x = torch.randn(m, k, device=dev, dtype=dt)
            ms = _time(lambda: F.linear(x, w))
            rows.append(dict(kind="matmul", m=m, k=k, n=n, ms=ms, tflops=2 * m * k * n / ms / 1e9))
    for h, d, s in ATTENTION:
        q, kk, v = (torch.randn(1, h, s, d, device=dev, dtype=dt) for _ in range(3))
        ms = _time(lambda: F.scaled_dot_product_attention(q, kk, v))
        rows.append(dict(kind="attention", heads=h, head_dim=d, seq=s, ms=ms, tflops=4 * h * s * s * d / ms / 1e9))
    for r in rows:
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()})
    with open(args.out, "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
