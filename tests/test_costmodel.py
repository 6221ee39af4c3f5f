"""The first-order model on hand-made numbers: node estimates, the two-stream simulation, device profiles."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from cfcompile.costmodel import PROFILES, DeviceProfile, StreamedGroup, estimate_costs, profile_for, resolve_profile, simulate
from cfcompile.costmodel.probe import fit_line

# 1 TFLOP/s, 100 GB/s memory, 10 GB/s H2D, no overheads: easy arithmetic
TOY = DeviceProfile("toy", matmul_tflops=1.0, memory_gbs=100.0, h2d_gbs=10.0, h2d_latency_us=0.0,
                    matmul_efficiency=1.0, memory_efficiency=1.0, kernel_overhead_us=0.0)


def capture(fn, *args):
    got = {}

    def backend(gm, example_inputs):
        got["gm"], got["inputs"] = gm, example_inputs
        return gm.forward

    torch._dynamo.reset()
    torch.compile(fn, backend=backend)(*args)
    return got["gm"], got["inputs"]


def test_node_estimates_are_rooflines_and_views_are_free():
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    gm, inputs = capture(lambda x, y: (x @ y).t().relu(), a, b)
    costs = estimate_costs(gm, inputs, TOY)
    by_name = {n.name: ms for n, ms in zip(gm.graph.nodes, costs.node_ms)}
    (mm,) = [k for k in by_name if "matmul" in k]
    # 2 * 1024^3 FLOP at 1 TFLOP/s = 2.147 ms; 12 MiB moved at 100 GB/s = 0.126 ms: compute bound
    assert by_name[mm] == pytest.approx(2 * 1024**3 / 1e12 * 1e3)
    (t,) = [k for k in by_name if k.startswith("t")]
    assert by_name[t] == 0.0
    (relu,) = [k for k in by_name if "relu" in k]
    assert by_name[relu] == pytest.approx(2 * 4 * 2**20 / 100e9 * 1e3)   # read 4 MiB, write 4 MiB
    assert costs.flops == 2 * 1024**3


def test_attention_is_one_fused_kernel():
    q = torch.randn(1, 2, 128, 64)
    gm, inputs = capture(lambda q, k, v: F.scaled_dot_product_attention(q, k, v) * 2, q, q.clone(), q.clone())
    costs = estimate_costs(gm, inputs, TOY)
    flops = 4 * 2 * 128 * 128 * 64
    assert costs.flops == flops
    sdpa = next(ms for n, ms in zip(gm.graph.nodes, costs.node_ms) if "scaled_dot" in n.name)
    assert sdpa == pytest.approx(flops / (1e12 * TOY.attention_efficiency) * 1e3)
    # no 128 x 128 score matrix: activations are q, k, v, the attention output and its double
    assert costs.peak_activation_bytes == 5 * q.numel() * 4
    # Ulysses over 2 ranks: half the compute, plus four all-to-alls of half the per-rank bytes
    link = dataclasses.replace(TOY, link_gbs=1.0, link_latency_us=0.0)
    two = estimate_costs(gm, inputs, link, sp_degree=2)
    per_rank_a2a = 4 * q.numel() * 4 / 2 / 2 / 1e9 * 1e3
    sdpa2 = next(ms for n, ms in zip(gm.graph.nodes, two.node_ms) if "scaled_dot" in n.name)
    assert sdpa2 == pytest.approx(flops / (1e12 * link.attention_efficiency) * 1e3 / 2 + per_rank_a2a)
    assert sum(two.collective_ms) == pytest.approx(per_rank_a2a)


def test_activation_liveness():
    x = torch.randn(256, 256)   # 256 KiB each

    def f(x):
        a = x + 1          # a, b alive together, then only c
        b = a * 2
        c = b.sum()
        return c

    gm, inputs = capture(f, x)
    costs = estimate_costs(gm, inputs, TOY)
    assert costs.peak_activation_bytes == 3 * 256 * 256 * 4        # x (an input, not a weight), a, b
    weightless = estimate_costs(gm, inputs, TOY, weight_inputs=[0])
    assert weightless.peak_activation_bytes == 2 * 256 * 256 * 4


def test_chains_break_where_inductor_writes_memory():
    """A norm's output read through another layout (rotary's pairs) and a tensor read on both sides of a matmul
    (the residual stream) are written and read back; a plain pointwise chain is not."""
    from cfcompile.costmodel.graph_costs import _materialized, _Op

    def op(i, ins, outs, eff="", reduction=False, in_lay=None, out_lay=None):
        return _Op(i, 1.0 if eff else 0.0, eff, [(k, 8) for k in ins], [(k, 8) for k in outs],
                   in_lay or [("a",)] * len(ins), out_lay or [("a",)] * len(outs), reduction)

    norm = [op(0, ["x"], ["var"], reduction=True), op(0, ["x", "var"], ["y"])]
    assert _materialized(norm + [op(1, ["y"], ["r"], in_lay=[("pairs",)])], {"r"}) == {"r", "y"}
    assert _materialized(norm + [op(1, ["y"], ["r"])], {"r"}) == {"r"}          # same layout: fused
    assert _materialized([op(0, ["x"], ["h"]), op(1, ["h"], ["q"], "matmul"), op(2, ["q", "h"], ["o"])],
                         {"o"}) == {"o", "h"}                                 # h read before and after a matmul
    assert _materialized([op(0, ["x"], ["h"]), op(1, ["h"], ["g"]), op(2, ["g"], ["q"], "matmul")],
                         {"q"}) == {"q", "g"}                                 # h fused into g


def cum(*ms):
    out = [0.0]
    for m in ms:
        out.append(out[-1] + m)
    return out


def test_copy_hidden_by_compute():
    # node 0..3: 2 ms each. Group "b" issued at the start (node 0), first read at node 2: 4 ms of cover, 1 ms copy.
    p = simulate([StreamedGroup("b", first=2, issue=0, bytes=10 * 10**6, copies=1)], cum(2, 2, 2, 2), TOY)
    (g,) = p.groups
    assert g.hidden and g.stall_ms == 0 and g.copy_ms == pytest.approx(1.0) and g.cover_ms == pytest.approx(4.0)
    assert p.step_ms == pytest.approx(8.0) and p.compute_ms == pytest.approx(8.0)


def test_copy_longer_than_compute_stalls_by_the_difference():
    p = simulate([StreamedGroup("b", first=2, issue=0, bytes=100 * 10**6, copies=1)], cum(2, 2, 2, 2), TOY)
    (g,) = p.groups
    assert not g.hidden and g.stall_ms == pytest.approx(10.0 - 4.0)
    assert p.step_ms == pytest.approx(8.0 + 6.0)


def test_copies_queue_on_one_stream():
    # Two copies of 5 ms issued together at the start; reads at 6 ms and 8 ms: the second waits for the first.
    groups = [StreamedGroup("a", 3, 0, 50 * 10**6, 1), StreamedGroup("b", 4, 0, 50 * 10**6, 1)]
    p = simulate(groups, cum(2, 2, 2, 2, 2), TOY)
    a, b = p.groups
    assert a.hidden and b.start_ms == pytest.approx(5.0) and b.stall_ms == pytest.approx(10.0 - 8.0)


def test_prediction_memory_and_spans():
    p = simulate([StreamedGroup("b:bf16", 2, 0, 100 * 10**6, 1)], cum(2, 2, 2, 2), TOY,
                 resident_bytes=10, arena_bytes=20, activation_bytes=30)
    assert p.peak_bytes == 60 and p.to_json()["groups"][0]["hidden"] is False
    spans = p.spans([("a", 0.0, 4.0), ("b", 4.0, 8.0)])
    stall = [s for s in spans if s.kind == "stall"]
    assert len(stall) == 1 and stall[0].start_ms == pytest.approx(4.0) and stall[0].end_ms == pytest.approx(10.0)
    block_b = next(s for s in spans if s.name == "b")
    assert block_b.start_ms == pytest.approx(10.0) and block_b.end_ms == pytest.approx(14.0)


def test_profiles_built_in_json_and_errors(tmp_path):
    assert profile_for("NVIDIA H100 80GB HBM3") is PROFILES["H100"]
    assert profile_for("NVIDIA GeForce RTX 4090") is PROFILES["RTX4090"]
    with pytest.raises(ValueError, match="no built-in device profile matches 'Voodoo2'"):
        profile_for("Voodoo2")
    assert PROFILES["H100"].copy_ms(55.1e9, copies=0) == pytest.approx(1000.0)
    assert resolve_profile(None, "cpu") is PROFILES["cpu"] and resolve_profile("A100", "cpu") is PROFILES["A100"]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({**TOY.to_json(), "name": "mine"}))
    mine = resolve_profile(str(path), "cpu")
    assert mine.name == "mine" and mine.h2d_gbs == 10.0 and mine.source == str(path)
    with pytest.raises(ValueError, match="neither a built-in profile name"):
        resolve_profile("nope.json", "cpu")
    path.write_text(json.dumps({"name": "x", "matmul_tflops": 1, "memory_gbs": 1, "h2d_gbs": 1, "speed": 9}))
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['speed'\]"):
        resolve_profile(str(path), "cpu")
    path.write_text(json.dumps({"name": "x", "matmul_tflops": 1, "memory_gbs": 1, "h2d_gbs": 0}))
    with pytest.raises(ValueError, match="h2d_gbs must be positive"):
        resolve_profile(str(path), "cpu")


def test_probe_line_fit():
    a, b = fit_line([1.0, 2.0, 4.0], [3.0, 5.0, 9.0])
    assert a == pytest.approx(1.0) and b == pytest.approx(2.0)


def test_wrap_around_prefetch_runs_in_the_previous_call():
    # 10 ms copy, 2 ms nodes. Without wrap-around it is issued at the start and stalls the read at node 2 by 6 ms.
    plain = simulate([StreamedGroup("b", first=2, issue=0, bytes=100 * 10**6, copies=1)], cum(2, 2, 2, 2), TOY)
    assert plain.step_ms == pytest.approx(14.0)
    # Issued at node 3 of the previous call (2 ms before its end): 4 ms more of cover, 4 ms stall left.
    wrapped = simulate([StreamedGroup("b", 2, 0, 100 * 10**6, 1, wrap_issue=3)], cum(2, 2, 2, 2), TOY)
    (g,) = wrapped.groups
    assert g.issue_ms == pytest.approx(-2.0) and g.stall_ms == pytest.approx(4.0)
    assert wrapped.step_ms == pytest.approx(12.0)


def test_collective_slowed_by_a_copy_on_a_shared_path():
    # node 1 is a 4 ms all-to-all (launched at node 1, waited at node 1, after it node 2); a 10 ms copy runs from 0.
    copy = [StreamedGroup("b", first=3, issue=0, bytes=100 * 10**6, copies=1)]
    cum_ = cum(2, 4, 2, 2)
    windows = [(1, 2, 4.0)]
    nvlink = simulate(copy, cum_, TOY, windows=windows)
    assert nvlink.step_ms == pytest.approx(10.0 + 2.0)          # the copy ends at 10, then the last node
    shared = dataclasses.replace(TOY, link_shares_h2d=True)
    pcie = simulate(copy, cum_, shared, windows=windows)
    # the copy covers the whole window: the all-to-all takes 1.95x (+3.8 ms), the copy 1.3x of the 4 ms (+1.2 ms)
    assert pcie.windows == ((2.0, pytest.approx(6.0 + 3.8)),)
    assert pcie.groups[0].done_ms == pytest.approx(11.2) and pcie.step_ms == pytest.approx(10.0 + 3.8)


def test_dead_buffers_stay_allocated_until_reused_like_inductor():
    """Inductor reuses a dead buffer for the next allocation of the same dtype and size: the buffer is held from
    its first tensor to the death of its last (A dies at 1, B of A's size reuses it at 3 -> held 0..4); a buffer
    of another dtype or size is not reused and is freed when its tensor dies (C)."""
    from cfcompile.costmodel.graph_costs import _pooled_live_bytes

    born = [(0, "A", "bf16", 100), (0, "C", "f32", 100), (2, "D", "bf16", 50), (3, "B", "bf16", 100)]
    end_of = {"A": 1, "C": 1, "D": 3, "B": 4}
    held = [7, 0, 0, 0, 0, 0]  # an input, held by the caller throughout
    assert _pooled_live_bytes(born, end_of, held, 6) == [207, 207, 157, 157, 107, 7]
    # without the later allocation of A's size, A's buffer is freed when A dies
    assert _pooled_live_bytes(born[:3], {"A": 1, "C": 1, "D": 3}, held, 6) == [207, 207, 57, 57, 7, 7]


def test_class_breakdown_adds_up_to_the_compute_estimate():
    from cfcompile.costmodel import PROFILES, estimate_costs
    from toy import toy

    m, x = toy()
    gm = torch.fx.symbolic_trace(m)
    costs = estimate_costs(gm, [x], PROFILES["H100"])
    classes = dict(costs.class_ms)
    assert set(classes) == {"matmul", "attention", "memory-bound"} and all(v > 0 for v in classes.values())
    assert sum(classes.values()) == pytest.approx(costs.total_ms)
