"""The model-driven planner: residency under a count or a budget, issue points, chunk size, infeasible budgets."""

import dataclasses

import pytest

from cfcompile import ChunkFlowConfig
from cfcompile.costmodel import DeviceProfile
from cfcompile.costmodel.graph_costs import GraphCosts
from cfcompile.plan.layout import make_plan
from cfcompile.plan.search import BudgetError, plan_with_model, predict_plan

from test_plan import blocks, live_overlaps

# 1 GB/s of H2D = 1000 bytes per microsecond, copies free of latency: a 4 KiB block copies in 4.1 us.
PROFILE = DeviceProfile("unit", matmul_tflops=1.0, memory_gbs=1.0, h2d_gbs=1.0, h2d_latency_us=0.0)
SPAN = 10


def costs(block_ms: list[float], activations: int = 0) -> GraphCosts:
    """Node costs for `blocks(..., span=SPAN)`: block b's nodes share block_ms[b]."""
    ms = [m / SPAN for m in block_ms for _ in range(SPAN)] + [0.0]
    return GraphCosts("unit", tuple(ms), tuple([activations] * len(ms)), 0.0)


def streamed_by_block(plan):
    return [g.streamed_bytes for g in plan.groups]


def test_hidden_blocks_need_no_residency_and_stalls_are_fixed_first():
    # 6 blocks of 4 x 1 KiB; copies take 4.096 us. Blocks 0..4 compute 10 us, block 2 only 1 us.
    reads = blocks([[1024] * 4] * 6, span=SPAN)
    c = costs([0.010, 0.010, 0.001, 0.010, 0.010, 0.010])
    config = ChunkFlowConfig(chunk_size=1024, memory_budget=10**6, prefetch_depth=1, wrap_around=False)
    plan, pred = plan_with_model(reads, config, c, PROFILE)
    # Under a generous budget the search stops once nothing stalls; only blocks whose copy was exposed got chunks:
    # block 0 (nothing to hide its copy at the start) and block 3 (its copy runs under block 2's 1 us).
    assert pred.stall_ms == pytest.approx(0.0, abs=1e-9)
    resident = {g.key.split(":")[0]: g.resident_bytes for g in plan.groups}
    assert resident["blocks.0"] == 4096 and resident["blocks.3"] > 0
    assert resident["blocks.1"] == resident["blocks.2"] == resident["blocks.4"] == resident["blocks.5"] == 0
    assert pred.peak_bytes <= 10**6 and not live_overlaps(plan)
    # With wrap-around block 0's copy hides under the previous call's last block: it needs no residency
    wrapped, pw = plan_with_model(reads, dataclasses.replace(config, wrap_around=True), c, PROFILE)
    assert pw.stall_ms == pytest.approx(0.0, abs=1e-9)
    assert wrapped.groups[0].resident_bytes == 0 and wrapped.groups[0].streamed_bytes == 4096
    assert wrapped.total_resident_bytes < plan.total_resident_bytes and not live_overlaps(wrapped)


def test_resident_fraction_spreads_streamed_bytes_over_compute():
    # Blocks alternate heavy (20 us) and light (2 us) compute; copies of a block take 8 us. Half the chunks
    # resident: the model keeps more of the blocks that light blocks must hide, the fixed prefix does not.
    reads = blocks([[1024] * 8] * 8, span=SPAN)
    c = costs([0.020, 0.002] * 4)
    model, pred = plan_with_model(reads, ChunkFlowConfig(chunk_size=1024, resident_fraction=0.5), c, PROFILE)
    fixed = make_plan(reads, ChunkFlowConfig(chunk_size=1024, resident_fraction=0.5))
    assert sum(ch.resident for ch in model.chunks) == sum(ch.resident for ch in fixed.chunks) == 32
    assert pred.step_ms < predict_plan(fixed, c, PROFILE).step_ms
    s = streamed_by_block(model)
    # block k+1 is prefetched under block k: blocks after a heavy one stream more than blocks after a light one
    assert sum(s[1::2]) > sum(s[2::2])
    assert not live_overlaps(model)


def test_tight_budget_falls_back_to_one_block_at_a_time():
    reads = blocks([[4096] * 4] * 10, span=SPAN)      # 16 KiB blocks: double buffering needs 32 KiB of arena
    c = costs([0.004] * 10, activations=1000)
    plan, pred = plan_with_model(reads, ChunkFlowConfig(chunk_size=4096, memory_budget=25_000), c, PROFILE)
    assert plan.prefetch_depth == 0 and plan.total_arena_bytes == 16384 and pred.peak_bytes <= 25_000


@pytest.mark.parametrize("budget", [40_000, 60_000, 100_000])
def test_budget_respected_and_more_budget_never_slower(budget):
    reads = blocks([[4096] * 4] * 10, span=SPAN)
    c = costs([0.004] * 10, activations=1000)
    plan, pred = plan_with_model(reads, ChunkFlowConfig(chunk_size=4096, memory_budget=budget), c, PROFILE)
    assert pred.peak_bytes <= budget
    assert plan.total_resident_bytes + plan.total_arena_bytes + 1000 == pred.peak_bytes
    bigger, pred2 = plan_with_model(reads, ChunkFlowConfig(chunk_size=4096, memory_budget=budget + 10_000), c,
                                    PROFILE)
    assert pred2.step_ms <= pred.step_ms + 1e-9 and plan.memory_budget == budget


def test_infeasible_budget_names_the_minimum():
    reads = blocks([[4096] * 4] * 4, span=SPAN)
    c = costs([0.004] * 4, activations=5000)
    # needs 20.88 KiB as predicted, plus 5% headroom (measured peaks run up to 3.4% above the prediction)
    with pytest.raises(BudgetError, match=r"memory_budget 9.77 KiB is below .* 20.88 KiB .* at least 21.98 KiB") as e:
        plan_with_model(reads, ChunkFlowConfig(chunk_size=4096, memory_budget=10_000), c, PROFILE)
    plan, pred = plan_with_model(reads, ChunkFlowConfig(chunk_size=4096, memory_budget=e.value.minimum_bytes), c,
                                 PROFILE)  # the named minimum works
    assert pred.peak_bytes <= e.value.minimum_bytes * 0.95
    with pytest.raises(ValueError, match="memory_budget='auto' needs the free device memory"):
        plan_with_model(reads, ChunkFlowConfig(memory_budget="auto"), c, PROFILE)


def test_auto_depth_issues_earlier_only_where_it_helps():
    # A light block before a heavy copy: the copy of block 3 cannot hide under block 2 alone.
    reads = blocks([[1024] * 4] * 5, span=SPAN)
    c = costs([0.010, 0.010, 0.001, 0.010, 0.010])
    auto, pa = plan_with_model(reads, ChunkFlowConfig(chunk_size=1024), c, PROFILE)
    one, p1 = plan_with_model(reads, ChunkFlowConfig(chunk_size=1024, prefetch_depth=1), c, PROFILE)
    assert pa.step_ms < p1.step_ms
    anchors = {g.key.split(":")[0]: g.issue_before for g in auto.streamed}
    assert anchors["blocks.3"] == 1 and anchors["blocks.4"] == 3   # two ahead where needed, one elsewhere
    assert not live_overlaps(auto)


def test_chunk_size_searched_under_a_budget_and_deterministic():
    reads = blocks([[3000, 700, 5000, 256]] * 6, span=SPAN)
    c = costs([0.002] * 6)
    a = plan_with_model(reads, ChunkFlowConfig(memory_budget=60_000), c, PROFILE)
    b = plan_with_model(list(reversed(reads)), ChunkFlowConfig(memory_budget=60_000), c, PROFILE)
    assert a[0] == b[0] and a[0].fingerprint() == b[0].fingerprint() and a[1] == b[1]


def test_max_resident_fraction_caps_what_a_budget_keeps_resident():
    # Copies (16 us a block) far slower than compute (4 us): a generous budget keeps as much resident as it can.
    reads = blocks([[4096] * 4] * 10, span=SPAN)
    c = costs([0.004] * 10, activations=1000)
    config = ChunkFlowConfig(chunk_size=4096, memory_budget=10**6)
    free, _ = plan_with_model(reads, config, c, PROFILE)
    n = len(free.chunks)
    assert sum(ch.resident for ch in free.chunks) > n // 2          # the control: uncapped, most stays resident
    for cap in (0.0, 0.25, 0.5):
        plan, pred = plan_with_model(reads, dataclasses.replace(config, max_resident_fraction=cap), c, PROFILE)
        resident = sum(ch.resident for ch in plan.chunks)
        assert resident <= round(cap * n) and pred.peak_bytes <= 10**6 and not live_overlaps(plan)
        if cap == 0.0:   # streams everything: arena and activations only
            assert plan.total_resident_bytes == 0 and pred.resident_bytes == 0
        else:            # within the cap, the cost model still keeps what shortens the step
            assert resident == round(cap * n)


def test_max_resident_fraction_is_checked():
    with pytest.raises(ValueError, match=r"max_resident_fraction: expected a number in \[0, 1\], got 1.5"):
        ChunkFlowConfig(memory_budget="1GiB", max_resident_fraction=1.5)
    with pytest.raises(ValueError, match="caps what a memory_budget keeps resident; without a memory_budget pass "
                                         "resident_fraction instead"):
        ChunkFlowConfig(max_resident_fraction=0.5)
