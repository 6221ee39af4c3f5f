"""Graphs of one model share its resident chunks on the device (hardening): a model compiled at two resolutions or
batch sizes holds its resident weights once, a later graph reads the chunks resident for an earlier one (and may
add to them), and the copies are freed with the last graph reading them."""

import gc
import weakref

import pytest
import torch

import cfcompile
from cfcompile.compiler.backend import compiled_graphs
from cfcompile.plan.search import BUDGET_HEADROOM, BudgetError
from cfcompile.runtime.arena import ARENAS, RESIDENTS
from toy import toy


def resident_ptrs(g) -> dict[str, tuple[int, int]]:
    """Group key -> (data_ptr, bytes) of each resident slot the graph's code reads."""
    keys = [p.key for p in g.plan.groups if p.resident_bytes]
    return {k: (t.data_ptr(), t.numel() * t.element_size()) for k, t in zip(keys, g.runtime.residents)}


def inner(e: BaseException) -> BaseException:
    """The backend's own exception inside Dynamo's BackendCompilerFailed."""
    return getattr(e, "inner_exception", None) or e.__cause__ or e


@pytest.mark.parametrize("shapes", [((2, 8, 16), (2, 64, 16)), ((1, 32, 16), (4, 32, 16))],
                         ids=["resolutions", "batch sizes"])
def test_two_shapes_hold_the_resident_chunks_once_and_free_them_with_the_last_graph(shapes):
    gc.collect()
    assert RESIDENTS.bytes() == 0 and ARENAS.bytes() == 0
    m, _ = toy()
    xs = [torch.randn(*s) for s in shapes]
    with torch.no_grad():
        refs = [m(x) for x in xs]
    cfcompile.offload(m, "cpu")
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.5}, dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(fn(xs[0]), refs[0])
        a = compiled_graphs()[-1]
        torch.testing.assert_close(fn(xs[1]), refs[1])     # a recompile: a second graph of the same weights
        b = compiled_graphs()[-1]
        assert a is not b
        pa, pb = a.plan, b.plan
        assert pa.total_resident_bytes > 0
        # the later graph reads exactly the chunks resident for the first: same ranges, same device bytes
        assert [g.resident_range for g in pa.groups] == [g.resident_range for g in pb.groups]
        assert resident_ptrs(a) == resident_ptrs(b)
        # one copy on the device, not two: the pool holds one model's resident bytes, and the plans say so
        assert RESIDENTS.bytes() == pa.total_resident_bytes == pb.total_resident_bytes
        assert b.prediction.resident_bytes == RESIDENTS.bytes()
        assert all(e.refs == 2 for e in RESIDENTS.entries.values())
        for _ in range(2):                                   # alternating calls still match eager
            torch.testing.assert_close(fn(xs[0]), refs[0])
            torch.testing.assert_close(fn(xs[1]), refs[1])
        buffers = [weakref.ref(e.buffer) for e in RESIDENTS.entries.values()]
    del a
    gc.collect()
    assert RESIDENTS.bytes() == pb.total_resident_bytes   # still read by the second graph
    del fn, b
    torch._dynamo.reset()
    gc.collect()
    assert RESIDENTS.bytes() == 0 and ARENAS.bytes() == 0
    assert all(r() is None for r in buffers)               # the memory itself is gone, not only the accounting


def test_a_later_graph_keeping_more_grows_the_one_copy_and_repoints_the_first():
    gc.collect()
    m, x = toy()
    small, wide = x[:, :8], torch.randn(2, 64, 16)
    with torch.no_grad():
        ref_small, ref_wide = m(small), m(wide)
    cfcompile.offload(m, "cpu")
    f1 = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.25})
    f2 = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.75})
    with torch.no_grad():
        torch.testing.assert_close(f1(small), ref_small)
        g1 = compiled_graphs()[-1]
        before = resident_ptrs(g1)
        torch.testing.assert_close(f2(wide), ref_wide)
        g2 = compiled_graphs()[-1]
        p1, p2 = g1.plan, g2.plan
        assert p2.total_resident_bytes > p1.total_resident_bytes
        # every byte the first graph keeps is kept by the second as well (it starts from what is held) ...
        for a, b in zip(p1.groups, p2.groups):
            assert a.resident_bytes == 0 or b.resident_range[0] <= a.resident_range[0] <= a.resident_range[1] <= \
                b.resident_range[1]
        # ... and the device holds the larger set once, not both sets
        assert RESIDENTS.bytes() == p2.total_resident_bytes < p1.total_resident_bytes + p2.total_resident_bytes
        after = resident_ptrs(g1)
        assert after != before                              # re-pointed at the grown copies
        mine = {k: v for k, v in resident_ptrs(g2).items() if k in after}
        assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in mine.items()}
        torch.testing.assert_close(f1(small), ref_small)
        torch.testing.assert_close(f2(wide), ref_wide)
    # a later graph with a smaller resident_fraction still reads all that is held: the share is a floor
    f3 = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096})
    with torch.no_grad():
        torch.testing.assert_close(f3(small), ref_small)
    p3 = compiled_graphs()[-1].plan
    assert p3.total_resident_bytes == RESIDENTS.bytes() == p2.total_resident_bytes
    assert p3.streamed_bytes == p2.streamed_bytes


def test_with_a_memory_budget_the_later_graph_counts_what_is_held():
    gc.collect()
    m, _ = toy()
    small, big = torch.randn(1, 8, 16), torch.randn(2, 96, 16)
    with torch.no_grad():
        refs = m(small), m(big)
    cfcompile.offload(m, "cpu")
    budget = 24 * 2**20
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "memory_budget": budget}, dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(fn(small), refs[0])
        a = compiled_graphs()[-1]
        torch.testing.assert_close(fn(big), refs[1])
        b = compiled_graphs()[-1]
    pa, pb = a.plan, b.plan
    assert pa.total_resident_bytes > 0 and pb.total_resident_bytes >= pa.total_resident_bytes
    assert RESIDENTS.bytes() == pb.total_resident_bytes            # one copy: the later graph's set includes the first
    for g in (a, b):                                               # each prediction is what is on the device
        pred = g.prediction
        assert pred.resident_bytes == g.plan.total_resident_bytes
        assert pred.peak_bytes <= budget * (1 - BUDGET_HEADROOM)
    assert b.prediction.resident_bytes == RESIDENTS.bytes()


def test_a_plain_budget_is_the_models_a_later_shape_takes_the_resident_chunks_back():
    """A plain memory_budget covers all graphs of one model (here two shapes; in a regional compile, the block
    graphs): a later graph that does not fit next to what the first keeps resident takes it back, the first is
    planned again on its next call, and the device never holds more than the budget."""
    gc.collect()
    m, _ = toy()
    small, big = torch.randn(1, 8, 16), torch.randn(8, 256, 16)
    cfcompile.offload(m, "cpu")
    # what the big graph needs alone (the error names it), then a budget between that and that plus what the small
    # graph keeps resident
    probe = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "memory_budget": "1KiB"})
    with pytest.raises(Exception) as e, torch.no_grad():
        probe(big)
    alone = inner(e.value).minimum_bytes
    del probe
    torch._dynamo.reset()
    gc.collect()
    assert RESIDENTS.bytes() == 0
    budget = alone + 64 * 1024
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "memory_budget": budget}, dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(fn(small), m(small))
        a = compiled_graphs()[-1]
        assert RESIDENTS.bytes() > 64 * 1024 / (1 - BUDGET_HEADROOM)   # too much to leave room for the big graph
        torch.testing.assert_close(fn(big), m(big))
        b = compiled_graphs()[-1]
        assert a.runtime.stale and not b.runtime.stale   # a gave its resident chunks back
        usage = a.runtime.budget.usage()
        assert usage["graphs"] == 2 and usage["peak_bytes"] <= budget
        # and its share of the arena: what the device really holds is within the budget too
        held = ARENAS.bytes() + RESIDENTS.bytes() + usage["activation_bytes"]
        assert held <= usage["peak_bytes"], (held, usage)
        torch.testing.assert_close(fn(small), m(small))                   # a, planned again within what b leaves
        assert a.runtime.budget.usage()["peak_bytes"] <= budget


def test_graphs_dropped_by_a_reset_hold_nothing_for_the_next_plan():
    """Compiled graphs may sit in reference cycles: after torch._dynamo.reset() they hold their resident chunks until
    the garbage collector runs. Planning collects first, so comparing settings one after another in one process (as the
    benchmarks do) is not skewed by what the previous setting kept resident."""
    gc.collect()   # what earlier tests left in cycles is not this test's
    assert RESIDENTS.bytes() == 0, "an earlier test's graphs are still alive and hold resident chunks"
    m, x = toy()
    cfcompile.offload(m, "cpu")
    gc.disable()   # no automatic collection in between: the planner's own is what is tested
    try:
        with torch.no_grad():
            torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.5})(x)
            torch._dynamo.reset()
            # Since issue 18 the compiled function no longer refers to itself, so a reset often frees its graph at
            # once; graphs still held in cycles (Dynamo's guards, graph breaks) are what the planner collects.
            torch.compile(m, backend="chunkflow", options={"chunk_size": 4096})(x)
    finally:
        gc.enable()
    assert compiled_graphs()[-1].plan.total_resident_bytes == 0 == RESIDENTS.bytes()
