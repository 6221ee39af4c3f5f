"""The benchmark helpers that turn profiler events into the collective-time numbers of benchmarks/RESULTS.md."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from common import collective_times, overlap_ms  # noqa: E402


def test_overlap_merges_the_covering_intervals():
    assert overlap_ms([(0, 10)], [(2, 4), (3, 6), (8, 20)]) == 6     # 2..6 and 8..10
    assert overlap_ms([(0, 10), (30, 40)], [(5, 35)]) == 10
    assert overlap_ms([(0, 10)], []) == 0


def test_collective_times_per_step():
    kernels = [("ncclDevKernel_SendRecv", 0, 100), ("Memcpy DtoD (Device -> Device)", 50, 250),
               ("triton_poi_fused_0", 100, 300), ("ncclDevKernel_SendRecv", 400, 500),
               ("ncclDevKernel_SendRecv", 1000, 1300)]
    r = collective_times(kernels, steps=2)
    assert r["collective_ms"] == pytest.approx(0.25)          # (100 + 100 + 300) us over 2 steps
    assert r["collective_under_copy_ms"] == pytest.approx(0.025)  # 50 us of the first one
    assert r["collectives_per_step"] == 1.5 and r["median_collective_us"] == 100
    assert r["copy_ms"] == pytest.approx(0.1)
