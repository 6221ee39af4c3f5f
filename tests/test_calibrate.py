"""Calibration: one timed call per block, estimates scaled to it, plan made again, graph recompiled if it changed."""

import json

import torch

import cfcompile
from cfcompile.compiler.backend import compiled_graphs
from cfcompile.compiler.calibrate import calibrated_costs
from cfcompile.costmodel.graph_costs import GraphCosts
from cfcompile.plan.layout import make_plan
from cfcompile import ChunkFlowConfig
from test_plan import blocks
from toy import toy


def test_intervals_between_waits_scale_their_nodes():
    reads = blocks([[1024]] * 3, span=10)       # streamed groups' first reads at nodes 0, 10, 20
    plan = make_plan(reads, ChunkFlowConfig(chunk_size=1024, wrap_around=False))
    costs = GraphCosts("x", tuple([0.1] * 31), tuple([0] * 31), 0.0)
    marks = [("start", -1, 0.0), ("before-wait", 0, 0.0), ("after-wait", 0, 1.0),    # 1 ms stall: not compute
             ("copy", 1, 0.5),                                                       # a synchronous copy
             ("before-wait", 1, 3.5), ("after-wait", 1, 3.5), ("before-wait", 2, 5.5), ("after-wait", 2, 5.5),
             ("end", -1, 8.6)]
    new, report = calibrated_costs(costs, plan, marks)
    # nodes 0-9: 3.5 - 1.0 - 0.5 = 2 ms measured vs 1 ms estimated; 10-19: 2 vs 1; 20-30: 3.1 vs 1.1
    assert [round(r["factor"], 6) for r in report["intervals"]] == [2.0, 2.0, round(3.1 / 1.1, 6)]
    # an interval with nothing estimated gets what was measured, spread over its nodes
    zero = GraphCosts("x", tuple([0.0] * 10 + [0.1] * 21), tuple([0] * 31), 0.0)
    spread, rep = calibrated_costs(zero, plan, marks)
    assert rep["intervals"][0]["factor"] is None and abs(sum(spread.node_ms[:10]) - 2.0) < 1e-9
    assert abs(new.total_ms - 7.1) < 1e-9 and abs(report["measured_compute_ms"] - 7.1) < 1e-9


def test_calibration_replans_and_recompiles(tmp_path):
    # A profile that thinks compute is very slow: every copy looks hidden and nothing needs to be resident.
    profile = tmp_path / "slow.json"
    profile.write_text(json.dumps(dict(name="slow", matmul_tflops=1e-7, memory_gbs=1e-5, h2d_gbs=0.0005,
                                       h2d_latency_us=0.0, kernel_overhead_us=0.0)))
    m, x = toy()
    with torch.no_grad():
        ref = m(x)
    cfcompile.offload(m, "cpu")
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "memory_budget": "64MiB",
                                                        "profile": str(profile), "calibrate": True})
    with torch.no_grad():
        first = fn(x)
        g = compiled_graphs()[-1]
        before = g.plan
        assert before.total_resident_bytes == 0 and g.calibration is None
        second = fn(x)          # timed per block; then re-planned with the measured (fast) compute
        report = g.calibration
        assert report["measured_compute_ms"] > 0 and report["intervals"]
        # wall-clock on a shared CPU: only that the measurement, not the (absurdly slow) estimate, is used
        assert report["measured_compute_ms"] < report["estimated_compute_ms"]
        assert report["plan_changed"] and g.plan.total_resident_bytes > 0
        assert g.prediction.step_ms == report["predicted_after_ms"]
        third = fn(x)           # the recompiled graph
    for out in (first, second, third):
        torch.testing.assert_close(out, ref)


def test_another_graph_running_between_the_warm_up_and_the_timed_call_does_not_mark_it():
    """A pipeline under `cfcompile.apply(..., calibrate=True)`: the text encoder's graph warms up, the transformer's
    graphs run, then the encoder's timed call. Every graph's slots are views of one shared arena, so waits of the
    others (the same slot addresses) marked the encoder's timing when it started after the warm-up, and calibration
    failed on marks without a start (TypeError in `calibrated_costs`)."""
    a, x = toy()
    b, _ = toy(d=96, blocks=3)
    with torch.no_grad():
        refs = a(x), b(x)
    cfcompile.offload(a, "cpu")
    cfcompile.offload(b, "cpu")
    fa = torch.compile(a, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.0,
                                                         "calibrate": True})
    fb = torch.compile(b, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.0})
    with torch.no_grad():
        torch.testing.assert_close(fb(x), refs[1])     # the larger arena first: a's slots then share its addresses
        torch.testing.assert_close(fa(x), refs[0])     # warm-up
        g_a = compiled_graphs()[-1]
        torch.testing.assert_close(fb(x), refs[1])     # waits on the same arena addresses
        torch.testing.assert_close(fa(x), refs[0])     # timed; re-planned from it
        torch.testing.assert_close(fa(x), refs[0])
    report = g_a.calibration
    assert report is not None and report["intervals"]
    assert all(r["measured_ms"] >= 0 for r in report["intervals"])
