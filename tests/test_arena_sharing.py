"""Graphs of one model that run one after another share one streaming arena per device and dtype (hardening)."""

import gc

import torch

import cfcompile
from cfcompile.compiler.backend import compiled_graphs
from cfcompile.runtime.arena import ARENAS, RESIDENTS
from toy import toy


def test_graphs_share_the_arena_and_it_grows_to_the_largest():
    m, x = toy()
    small, big = x[:, :8], torch.randn(2, 64, 16)
    with torch.no_grad():
        refs = {8: m(small), 64: m(big), 32: m(x)}
    cfcompile.offload(m, "cpu")
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096}, dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(fn(small), refs[8])
        a = compiled_graphs()[-1]
        torch.testing.assert_close(fn(big), refs[64])        # a recompile: a second graph
        b = compiled_graphs()[-1]
        assert a is not b
        ka, kb = a.runtime.arenas["float32"], b.runtime.arenas["float32"]
        assert ka.data_ptr() == kb.data_ptr()                 # one arena, not two
        assert ARENAS.bytes() == max(a.plan.total_arena_bytes, b.plan.total_arena_bytes)
        # alternating calls: each graph's wrap-around copies are spoiled by the other's and redone at its start
        for _ in range(3):
            torch.testing.assert_close(fn(small), refs[8])
            torch.testing.assert_close(fn(big), refs[64])


def test_growth_repoints_earlier_graphs_and_the_arena_is_freed_with_the_last_graph():
    gc.collect()  # graphs of earlier tests (reference cycles) release the arena
    assert ARENAS.bytes() == 0
    m, x = toy()
    with torch.no_grad():
        ref_small, ref_wide = m(x[:, :4]), m(x)
    cfcompile.offload(m, "cpu")
    # the second graph reads the first one's resident chunks (one copy per model), so it streams the same bytes, but
    # three blocks ahead instead of one: the arena has to grow
    f1 = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.5,
                                                        "prefetch_depth": 1})
    f2 = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "prefetch_depth": 3})
    with torch.no_grad():
        torch.testing.assert_close(f1(x[:, :4]), ref_small)
        g1 = compiled_graphs()[-1]
        before = g1.runtime.slots[0].data_ptr()
        torch.testing.assert_close(f2(x), ref_wide)
        g2 = compiled_graphs()[-1]
        assert g2.plan.total_arena_bytes > g1.plan.total_arena_bytes
        assert g1.runtime.arenas["float32"].data_ptr() == g2.runtime.arenas["float32"].data_ptr()
        assert g1.runtime.slots[0].data_ptr() != before   # re-pointed at the grown arena
        torch.testing.assert_close(f1(x[:, :4]), ref_small)
    del f1, f2, g1, g2
    torch._dynamo.reset()
    gc.collect()
    assert ARENAS.bytes() == 0 and RESIDENTS.bytes() == 0


def test_private_arena_option():
    m, x = toy()
    with torch.no_grad():
        ref = m(x)
    cfcompile.offload(m, "cpu")
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "shared_arena": False})
    with torch.no_grad():
        torch.testing.assert_close(fn(x), ref)
    assert ARENAS.bytes() == 0
