"""Device profiles: what the first-order model needs to know about a GPU.

Built-in profiles give planning offline; numbers are dense bf16 peaks from vendor sheets with the H2D bandwidth
measured or typical for the link. The H100 entry's H2D figure is the one measured on our H100 machine
(benchmarks/RESULTS.md, 2026-11-23).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
    name: str
    matmul_tflops: float        # dense bf16/fp16 peak, TFLOP/s
    memory_gbs: float           # device memory bandwidth, GB/s
    h2d_gbs: float              # pinned host -> device copy bandwidth for large copies, GB/s
    h2d_latency_us: float = 10.0  # fixed cost per copy (launch + DMA setup)
    matmul_efficiency: float = 0.7  # share of peak large matmuls reach
    memory_efficiency: float = 0.8  # share of peak bandwidth memory-bound kernels reach
    kernel_overhead_us: float = 4.0  # per-kernel launch/tail cost

    def copy_ms(self, nbytes: int, copies: int = 1) -> float:
        return nbytes / (self.h2d_gbs * 1e9) * 1e3 + copies * self.h2d_latency_us / 1e3


PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (
    DeviceProfile("H100", matmul_tflops=989, memory_gbs=3350, h2d_gbs=54.7),
    DeviceProfile("H200", matmul_tflops=989, memory_gbs=4800, h2d_gbs=51.4),
    DeviceProfile("A100", matmul_tflops=312, memory_gbs=2039, h2d_gbs=24.0),
    DeviceProfile("L40S", matmul_tflops=362, memory_gbs=864, h2d_gbs=24.0),
    DeviceProfile("RTX4090", matmul_tflops=165, memory_gbs=1008, h2d_gbs=24.0),
    DeviceProfile("cpu", matmul_tflops=0.2, memory_gbs=20, h2d_gbs=10.0, h2d_latency_us=1.0,
                  kernel_overhead_us=20.0),
)}


def profile_for(device_name: str) -> DeviceProfile:
    """The built-in profile whose name appears in ``device_name`` (e.g. 'NVIDIA H100 80GB HBM3')."""
    key = device_name.replace(" ", "").upper()
    for name in sorted(PROFILES, key=len, reverse=True):
        if name.upper() in key:
            return PROFILES[name]
    raise ValueError(f"no built-in device profile matches {device_name!r}; known: {', '.join(PROFILES)}. "
                     f"Pass a DeviceProfile of your own.")
