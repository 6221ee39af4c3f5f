"""Measure a GPU's profile: H2D bandwidth and per-copy latency as chunkflow copies, matmul and memory throughput.

About a second on an H100. H2D copies go from ``cudaHostRegister``'ed memory through a UVA view on a side stream,
back to back, at several sizes; a least-squares line ``time = latency + bytes / bandwidth`` over them is the
size dependence the model uses. Matmul throughput is the harmonic mean over DiT-shaped bf16 matmuls (one big GEMM
would overstate what a DiT's mix reaches). Efficiencies are measured against the built-in peak of the same GPU
family when there is one (else the measured throughput is the peak and the efficiency 1): `profiles.from_probe`
turns these measurements into a profile.
"""

from __future__ import annotations

import torch

from ..pinned import cuda_view, pin, unpin

_COPY_SIZES = (2**20, 4 * 2**20, 16 * 2**20, 64 * 2**20)
_MATMULS = ((4096, 3072, 3072), (4096, 3072, 12288), (1024, 3072, 3072), (4096, 5120, 5120))


def _time_ms(fn, reps: int, stream=None) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    best = float("inf")
    for _ in range(3):
        start.record(stream)
        for _ in range(reps):
            fn()
        end.record(stream)
        end.synchronize()
        best = min(best, start.elapsed_time(end) / reps)
    return best


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares ``y = a + b * x``: (a, b)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def probe_device(device) -> dict:
    """The measurements of ``device``: name, h2d_gbs, h2d_latency_ms, matmul_tflops, memory_gbs."""

    device = torch.device(device)
    name = torch.cuda.get_device_name(device)
    with torch.cuda.device(device):
        n = max(_COPY_SIZES)
        host = torch.empty(n, dtype=torch.uint8)
        pin(host)
        try:
            src = cuda_view(host, host.data_ptr(), n, device)
            dst = torch.empty(n, dtype=torch.uint8, device=device)
            stream = torch.cuda.Stream(device)
            times = []
            with torch.cuda.stream(stream):
                for size in _COPY_SIZES:
                    reps = max(2, (64 * 2**20) // size)
                    times.append(_time_ms(lambda s=size: dst[:s].copy_(src[:s], non_blocking=True), reps, stream))
        finally:
            unpin(host.data_ptr())
        latency_ms, ms_per_byte = fit_line([float(s) for s in _COPY_SIZES], times)
        h2d_gbs = 1 / ms_per_byte / 1e6

        # DiT-shaped matmuls (tokens x hidden x hidden / MLP): the mean throughput, not one big GEMM's best
        rates = []
        for m, k, n in _MATMULS:
            a = torch.randn(m, k, device=device, dtype=torch.bfloat16)
            b = torch.randn(k, n, device=device, dtype=torch.bfloat16)
            rates.append(2 * m * k * n / _time_ms(lambda: a @ b, 10) / 1e9)
        mm_tflops = len(rates) / sum(1 / r for r in rates)   # harmonic mean: time-weighted for equal FLOPs
        x = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)
        y = torch.empty_like(x)
        mem_gbs = 2 * x.numel() / _time_ms(lambda: y.copy_(x), 10) / 1e6
    return dict(name=name, h2d_gbs=h2d_gbs, h2d_latency_ms=latency_ms, matmul_tflops=mm_tflops, memory_gbs=mem_gbs)
