import pytest
import torch
import torch.fx as fx
from torch._subclasses import FakeTensorMode

import cfcompile.runtime  # noqa: F401
from cfcompile.costmodel import PROFILES, DeviceProfile, predict, profile_for
from cfcompile.costmodel.timeline import node_ms

# 1 TFLOP/s, 100 GB/s memory, 10 GB/s H2D, no overheads: easy arithmetic
TOY = DeviceProfile("toy", matmul_tflops=1.0, memory_gbs=100.0, h2d_gbs=10.0, h2d_latency_us=0.0,
                    matmul_efficiency=1.0, memory_efficiency=1.0, kernel_overhead_us=0.0)


def graph_with(copy_bytes: int, matmuls: int) -> tuple[fx.Graph, dict]:
    """prefetch(0) ; `matmuls` x mm(1024^3) ; wait(0) ; mm reading the weight."""
    g = fx.Graph()
    with FakeTensorMode() as mode:
        slot, src, x = (g.placeholder(n) for n in ("slot", "src", "x"))
        slot.meta["val"] = mode.from_tensor(torch.empty(1024 * 1024))
        src.meta["val"] = mode.from_tensor(torch.empty(1024 * 1024))
        x.meta["val"] = mode.from_tensor(torch.empty(1024, 1024))
        g.call_function(torch.ops.cfcompile.prefetch_.default, (slot, [], src, [0], [0], [1024], 0, True))
        h = x
        for _ in range(matmuls):
            h = g.call_function(torch.ops.aten.mm.default, (h, x))
            h.meta["val"] = torch.empty(1024, 1024)
        g.call_function(torch.ops.cfcompile.wait_.default, (slot, 0, True))
        w = g.call_function(torch.ops.aten.view.default, (slot, [1024, 1024]))
        w.meta["val"] = torch.empty(1024, 1024)
        y = g.call_function(torch.ops.aten.mm.default, (h, w))
        y.meta["val"] = torch.empty(1024, 1024)
        g.output(y)
    return g, {0: (copy_bytes, 1)}


def test_matmul_estimate_is_a_roofline():
    g, _ = graph_with(0, 1)
    mm = next(n for n in g.nodes if n.target is torch.ops.aten.mm.default)
    # 2 * 1024^3 FLOP at 1 TFLOP/s = 2.147 ms; 12 MiB moved at 100 GB/s = 0.126 ms: compute bound
    assert node_ms(mm, TOY) == pytest.approx(2 * 1024**3 / 1e12 * 1e3)
    view = next(n for n in g.nodes if n.target is torch.ops.aten.view.default)
    assert node_ms(view, TOY) == 0.0


def test_copy_hidden_by_compute():
    g, copies = graph_with(10 * 10**6, 2)       # 1 ms copy under 2 x 2.15 ms of matmuls
    p = predict(g, TOY, copies)
    (grp,) = p.groups
    assert grp.hidden and grp.stall_ms == 0
    assert grp.copy_ms == pytest.approx(1.0) and grp.cover_ms == pytest.approx(2 * 2.147, rel=1e-3)
    assert p.step_ms == pytest.approx(3 * 2.147, rel=1e-3)


def test_copy_longer_than_compute_stalls_by_the_difference():
    g, copies = graph_with(100 * 10**6, 2)      # 10 ms copy, 4.29 ms to hide it
    p = predict(g, TOY, copies)
    (grp,) = p.groups
    assert not grp.hidden
    assert grp.stall_ms == pytest.approx(10.0 - 2 * 2.147, rel=1e-3)
    assert p.step_ms == pytest.approx(10.0 + 2.147, rel=1e-3)  # the last mm runs after the copy


def test_profiles():
    assert profile_for("NVIDIA H100 80GB HBM3") is PROFILES["H100"]
    assert profile_for("NVIDIA GeForce RTX 4090") is PROFILES["RTX4090"]
    with pytest.raises(ValueError, match="no built-in device profile matches 'Voodoo2'"):
        profile_for("Voodoo2")
    assert PROFILES["H100"].copy_ms(54.7e9, copies=0) == pytest.approx(1000.0)
