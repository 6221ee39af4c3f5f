"""Two offloaded models in one process (hardening): their graphs share the streaming arena of the device and dtype
(sized for the larger, not the sum) and the copy stream; resident chunks are per model and add up across models."""

import gc

import pytest
import torch

import cfcompile
from cfcompile.compiler.backend import compiled_graphs
from cfcompile.runtime.arena import ARENAS, RESIDENTS
from toy import toy


def test_two_models_called_alternately_share_one_arena_and_match_eager():
    gc.collect()                                     # graphs of earlier tests release the arena
    assert ARENAS.bytes() == 0
    small, x = toy(d=64, blocks=4)
    big, _ = toy(d=96, blocks=3)
    with torch.no_grad():
        refs = small(x), big(x)
    cfcompile.offload(small, "cpu")
    cfcompile.offload(big, "cpu")
    f_small = torch.compile(small, backend="chunkflow", options={"chunk_size": 4096})
    f_big = torch.compile(big, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.25})
    with torch.no_grad():
        torch.testing.assert_close(f_small(x), refs[0])
        g_small = compiled_graphs()[-1]
        first_slot = g_small.runtime.slots[0].data_ptr()
        torch.testing.assert_close(f_big(x), refs[1])    # the larger graph grows the shared arena
        g_big = compiled_graphs()[-1]
        p_small, p_big = g_small.plan, g_big.plan
        assert p_big.total_arena_bytes > p_small.total_arena_bytes
        rt_small, rt_big = g_small.runtime, g_big.runtime
        assert rt_small.arenas["float32"].data_ptr() == rt_big.arenas["float32"].data_ptr()
        assert rt_small.slots[0].data_ptr() != first_slot          # the small model's slots were re-pointed
        assert ARENAS.bytes() == max(p_small.total_arena_bytes, p_big.total_arena_bytes)
        # resident weights are per model (different bytes): the big model's, none for the small one
        assert p_small.total_resident_bytes == 0 and p_big.total_resident_bytes > 0
        assert RESIDENTS.bytes() == p_big.total_resident_bytes and not rt_small.residents
        big_hosts = {g.host.data_ptr() for g in cfcompile.store_of(big).groups}
        assert {RESIDENTS.entries[k].group.host.data_ptr() for k in rt_big.held["residents"]} <= big_hosts
        # alternate calls: each overwrites the other's wrap-around copies in the shared arena, which are redone
        for _ in range(3):
            torch.testing.assert_close(f_small(x), refs[0])
            torch.testing.assert_close(f_big(x), refs[1])
            torch.testing.assert_close(f_big(x), refs[1])
            torch.testing.assert_close(f_small(x), refs[0])
        # each model still streams from its own host store
        assert {h.data_ptr() for h in rt_small.hosts} <= {g.host.data_ptr() for g in cfcompile.store_of(small).groups}
        assert {h.data_ptr() for h in rt_big.hosts} <= {g.host.data_ptr() for g in cfcompile.store_of(big).groups}
    del f_small, f_big, g_small, g_big, rt_small, rt_big
    torch._dynamo.reset()
    gc.collect()
    assert ARENAS.bytes() == 0 and RESIDENTS.bytes() == 0   # freed with the last graph of either model


def test_one_graph_reading_two_models_with_the_same_group_names_is_refused():
    a, x = toy(d=64, blocks=2)
    b, _ = toy(d=64, blocks=2)
    cfcompile.offload(a, "cpu")
    cfcompile.offload(b, "cpu")
    with pytest.raises(Exception, match=r"reads two offloaded models that both have a weight group 'embed:float32'"):
        with torch.no_grad():
            torch.compile(lambda t: b(a(t)), backend="chunkflow")(x)
